// streams.js — the Streams page (GET /streams by prefix or category, paged with `after`, and
// GET /categories for the category list) and one stream's page: its events newest or oldest
// first, paged by the Link header (GET /streams/{s}), its metadata (GET .../metadata), its
// latest snapshot (GET ...?from=snapshot), and delete or tombstone (DELETE /streams/{s}) behind a
// confirmation that names the stream.
import { call, get, enc, nextLink } from './api.js';
import { h, table, num, time, link, streamHref, eventHref, problemBox, confirmAction, gate, lacksNote } from './dom.js';

const PAGE = 50;

export function renderList(main, _params, query) {
  const box = problemBox();
  const prefix = query.get('prefix') || '';
  const category = query.get('category') || '';
  const form = h('form', { class: 'filters', role: 'search' },
    h('label', { for: 'prefix' }, 'Name starts with'),
    h('input', { id: 'prefix', name: 'prefix', value: prefix, type: 'search' }),
    h('label', { for: 'category' }, 'Category'),
    h('select', { id: 'category', name: 'category' }, h('option', { value: '' }, 'any')),
    h('button', { type: 'submit' }, 'Show'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    const p = form.prefix.value.trim(), c = form.category.value;
    if (c) q.set('category', c);
    else if (p) q.set('prefix', p);
    location.hash = `#/streams${q.toString() ? '?' + q : ''}`;
  });
  const list = h('div', {});
  const more = h('button', { type: 'button', hidden: true }, 'Next page');
  main.append(h('h1', {}, 'Streams'), box, form, list, more);

  get('/categories?limit=1000').then((cats) => {
    for (const c of cats) form.category.append(h('option', { value: c.category, selected: c.category === category }, c.category));
  }).catch((e) => box.show(e));

  let after = '';
  const rows = [];
  async function page() {
    const q = new URLSearchParams({ limit: String(PAGE) });
    if (category) q.set('category', category);
    else if (prefix) q.set('prefix', prefix);
    if (after) q.set('after', after);
    try {
      const res = await call('GET', `/streams?${q}`);
      rows.push(...res.body);
      if (res.body.length) after = res.body.at(-1).stream;
      more.hidden = !nextLink(res.headers);
      list.replaceChildren(table([
        { label: 'Stream', cell: (r) => link(streamHref(r.stream), r.stream) },
        { label: 'Last revision', cell: (r) => num(r.revision), class: 'n' },
        { label: 'First position', cell: (r) => num(r.first_position), class: 'n' },
        { label: 'State', cell: (r) => (r.tombstone ? 'tombstoned' : r.deleted ? 'deleted' : 'live') },
      ], rows, { empty: 'No streams match.', caption: `${rows.length} streams${more.hidden ? '' : ' (more follow)'}` }));
    } catch (e) {
      box.show(e);
    }
  }
  more.addEventListener('click', page);
  page();
}

export function renderStream(main, [stream], query) {
  const box = problemBox();
  const backward = query.get('order') !== 'oldest';
  const s = enc(stream);
  const info = h('div', { class: 'info' });
  const events = h('div', {});
  const more = h('button', { type: 'button', hidden: true }, 'Next page');
  const order = h('a', { href: `${streamHref(stream)}?order=${backward ? 'oldest' : 'newest'}`, class: 'button' },
    backward ? 'Show oldest first' : 'Show newest first');
  const note = lacksNote();
  const del = (tombstone) => async () => {
    const ok = await confirmAction(tombstone
      ? `Tombstone the stream "${stream}"? It can never be written or read again.`
      : `Delete the stream "${stream}"? Its events leave every read; appending again starts it anew.`,
    tombstone ? `Tombstone ${stream}` : `Delete ${stream}`);
    if (!ok) return;
    try {
      await call('DELETE', `/streams/${s}${tombstone ? '?tombstone=true' : ''}`);
      location.hash = '#/streams';
    } catch (e) {
      box.show(e);
    }
  };
  main.append(h('h1', {}, 'Stream ', h('code', {}, stream)), box, info,
    h('div', { class: 'actions' }, order,
      h('a', { class: 'button', href: `#/tail?stream=${enc(stream)}` }, 'Live tail'),
      gate(h('button', { type: 'button', class: 'danger', onclick: del(false) }, 'Delete…'), 'operate', note),
      gate(h('button', { type: 'button', class: 'danger', onclick: del(true) }, 'Tombstone…'), 'operate', note)), note,
    h('h2', {}, backward ? 'Events, newest first' : 'Events, oldest first'), events, more);

  Promise.all([get(`/streams/${s}/metadata`), call('GET', `/streams/${s}?from=snapshot&limit=1`, { allow: [404, 410] })])
    .then(([meta, snap]) => {
      const sn = snap.status === 200 ? snap.body.snapshot : null;
      info.replaceChildren(h('dl', { class: 'pairs' },
        h('dt', {}, 'Deleted'), h('dd', {}, meta.tombstone ? 'tombstoned' : meta.deleted ? 'yes' : 'no'),
        h('dt', {}, 'Max age'), h('dd', {}, meta.max_age_s ? `${num(meta.max_age_s)} s` : 'none'),
        h('dt', {}, 'Max count'), h('dd', {}, meta.max_count ? num(meta.max_count) : 'none'),
        h('dt', {}, 'Truncate before'), h('dd', {}, meta.truncate_before ? num(meta.truncate_before) : 'none'),
        h('dt', {}, 'Custom metadata'), h('dd', {}, meta.custom ? h('code', {}, JSON.stringify(meta.custom)) : 'none'),
        h('dt', {}, 'Snapshot'), h('dd', {}, sn ? h('details', {}, h('summary', {}, `at revision ${sn.revision}, ${time(sn.time)}`), h('pre', {}, JSON.stringify(sn.state, null, 2))) : 'none')));
    }).catch((e) => box.show(e));

  const rows = [];
  let url = `/streams/${s}?limit=${PAGE}${backward ? '&direction=backward' : ''}`;
  async function page() {
    try {
      const res = await call('GET', url, { allow: [404] });
      if (res.status === 404) {
        events.replaceChildren(h('p', { class: 'empty' }, 'This stream has no events.'));
        return;
      }
      rows.push(...res.body);
      url = nextLink(res.headers);
      more.hidden = !url;
      events.replaceChildren(table([
        { label: 'Revision', cell: (e) => link(eventHref(stream, e.revision), String(e.revision)), class: 'n' },
        { label: 'Position', cell: (e) => num(e.position), class: 'n' },
        { label: 'Type', cell: (e) => e.type },
        { label: 'Time', cell: (e) => time(e.time) },
        { label: 'Correlation', cell: (e) => e.correlationid || '' },
        { label: 'Data', cell: (e) => h('code', { class: 'clip' }, JSON.stringify(e.data ?? e.data_base64 ?? null)) },
      ], rows, { rowClass: () => 'event' }));
    } catch (e) {
      box.show(e);
    }
  }
  more.addEventListener('click', page);
  page();
}
