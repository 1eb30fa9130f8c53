// groups.js — consumer groups: the list with each one's lag, in flight, retrying, parked and
// delivery rate (GET /groups), and one group (GET /groups/{g}) with its settings, its figures
// and its parked messages (GET /groups/{g}/parked) with payload, reason and attempts: replay
// the chosen or all (POST /groups/{g}/parked/replay), or delete one (DELETE
// /groups/{g}/parked/{id}). The figures refresh every 2 s. A form makes a group (PUT
// /groups/{g}) or edits one's settings (the same PUT; a group's source cannot change).
import { get, call, enc } from './api.js';
import { h, table, num, duration, time, link, eventHref, problemBox, confirmAction, poll, gate, lacksNote } from './dom.js';

const sourceText = (s) => (s?.stream ? `stream ${s.stream}` : s?.category ? `category ${s.category}` : s?.all ? `$all${s.all.types ? ' types ' + s.all.types.join(',') : ''}${s.all.categories ? ' categories ' + s.all.categories.join(',') : ''}` : JSON.stringify(s));
const lag = (st) => `${st.lag_events !== undefined ? num(st.lag_events) + ' events' : num(st.lag_positions) + ' positions'}, ${duration(st.lag_seconds)}`;

const list_ = (v) => v.split(',').map((x) => x.trim()).filter(Boolean);
const field = (id, label, input) => [h('label', { for: id }, label), Object.assign(input, { id })];

// The form of a group's definition: empty to make one, or filled with g's settings to edit it
// (its name and source fixed). Submits PUT /groups/{name}; done(name) after it is written.
function groupForm(g, box, done) {
  const src = g?.source || {};
  const kind = src.stream !== undefined ? 'stream' : src.all ? 'all' : 'category';
  const f = h('form', { class: 'filters group-form', 'aria-label': g ? `Settings of group ${g.name}` : 'New consumer group' },
    ...field('g-name', 'Name', h('input', { name: 'name', required: true, value: g?.name, readonly: !!g })),
    ...field('g-kind', 'Source', h('select', { name: 'kind', disabled: !!g },
      ['category', 'stream', 'all'].map((k) => h('option', { value: k, selected: k === kind }, k === 'all' ? '$all' : k)))),
    ...field('g-from', 'Stream or category (for $all: types, then categories, below)', h('input', { name: 'from', value: src.stream ?? src.category ?? '', disabled: !!g })),
    ...field('g-types', '$all: types (comma-separated; empty: all)', h('input', { name: 'types', value: src.all?.types?.join(', ') ?? '', disabled: !!g })),
    ...field('g-cats', '$all: categories (comma-separated; empty: all)', h('input', { name: 'cats', value: src.all?.categories?.join(', ') ?? '', disabled: !!g })),
    g ? null : field('g-start', 'Start (earliest, latest, a position or a time)', h('input', { name: 'start', value: 'earliest' })),
    ...field('g-strategy', 'Strategy', h('select', { name: 'strategy' },
      ['round_robin', 'by_stream'].map((k) => h('option', { value: k, selected: k === (g?.strategy || 'round_robin') }, k)))),
    ...field('g-ack', 'Ack timeout (ms)', h('input', { name: 'ack', type: 'number', min: 100, max: 3600000, value: g?.ack_timeout_ms ?? 30000 })),
    ...field('g-max', 'Max deliveries', h('input', { name: 'max', type: 'number', min: 1, max: 1000, value: g?.max_deliveries ?? 10 })),
    ...field('g-rmin', 'Retry: first delay (ms)', h('input', { name: 'rmin', type: 'number', min: 0, value: g?.retry?.min_delay_ms ?? 1000 })),
    ...field('g-rmax', 'Retry: longest delay (ms)', h('input', { name: 'rmax', type: 'number', min: 0, value: g?.retry?.max_delay_ms ?? 60000 })),
    h('button', { type: 'submit' }, g ? 'Save settings' : 'Create group'));
  f.addEventListener('submit', async (e) => {
    e.preventDefault();
    const name = f.name.value.trim();
    const def = {
      source: f.kind.value === 'all'
        ? { all: { ...(list_(f.types.value).length ? { types: list_(f.types.value) } : {}), ...(list_(f.cats.value).length ? { categories: list_(f.cats.value) } : {}) } }
        : { [f.kind.value]: f.from.value.trim() },
      strategy: f.strategy.value,
      ack_timeout_ms: Number(f.ack.value),
      max_deliveries: Number(f.max.value),
      retry: { min_delay_ms: Number(f.rmin.value), max_delay_ms: Number(f.rmax.value) },
    };
    if (g) def.source = g.source;
    const start = f.start?.value.trim();
    if (start) def.start = /^\d+$/.test(start) ? Number(start) : start;
    try {
      await call('PUT', `/groups/${enc(name)}`, { body: def });
      done(name);
    } catch (err) {
      box.show(err);
    }
  });
  return f;
}

export function renderList(main) {
  const box = problemBox();
  const list = h('div', {});
  const note = lacksNote();
  const form = gate(groupForm(null, box, (name) => (location.hash = `#/group/${enc(name)}`)), 'operate', note);
  main.append(h('h1', {}, 'Consumer groups'), box, list,
    h('details', { class: 'define' }, h('summary', {}, 'New group'), note, form));
  return poll(async () => {
    const groups = await get('/groups');
    list.replaceChildren(table([
      { label: 'Group', cell: (g) => link(`#/group/${enc(g.name)}`, g.name) },
      { label: 'Source', cell: (g) => sourceText(g.source) },
      { label: 'Status', cell: (g) => g.status },
      { label: 'Lag', cell: (g) => lag(g.stats) },
      { label: 'Members', cell: (g) => `${num(g.stats.push_members)} push, ${num(g.stats.waiting_pulls)} pulls waiting` },
      { label: 'In flight', cell: (g) => num(g.stats.in_flight), class: 'n' },
      { label: 'Retrying', cell: (g) => num(g.stats.retrying), class: 'n' },
      { label: 'Parked', cell: (g) => num(g.stats.parked), class: 'n' },
      { label: 'Deliveries/s', cell: (g) => num(g.stats.delivery_rate), class: 'n' },
    ], groups, { empty: 'No consumer groups yet (PUT /groups/{name} makes one).' }));
  }, box);
}

export function renderGroup(main, [name]) {
  const box = problemBox();
  const g = enc(name);
  const info = h('div', {});
  const parked = h('div', {});
  const replayChosen = h('button', { type: 'button' }, 'Replay chosen');
  const replayAll = h('button', { type: 'button' }, 'Replay all');
  const note = h('span', { class: 'notice', role: 'status' });
  const lack = lacksNote();
  const settings = h('details', { class: 'define' }, h('summary', {}, 'Edit settings'));
  gate(replayChosen, 'operate', lack), gate(replayAll, 'operate', lack);
  main.append(h('h1', {}, 'Consumer group ', h('code', {}, name)), box, info, settings,
    h('h2', {}, 'Parked messages'), h('div', { class: 'actions' }, replayChosen, replayAll, note), lack, parked);

  async function replay(ids) {
    try {
      const r = await call('POST', `/groups/${g}/parked/replay`, { body: ids ? { delivery_ids: ids } : {} });
      note.textContent = `${r.body.replayed} replayed`;
      await load();
    } catch (e) {
      box.show(e);
    }
  }
  replayChosen.addEventListener('click', () => {
    const ids = [...parked.querySelectorAll('input[type=checkbox]:checked')].map((c) => c.value);
    if (ids.length) replay(ids);
  });
  replayAll.addEventListener('click', async () => {
    if (await confirmAction(`Replay every parked message of group "${name}"?`, 'Replay all')) replay(null);
  });

  async function load() {
    const [grp, list] = await Promise.all([get(`/groups/${g}`), get(`/groups/${g}/parked`)]);
    const st = grp.stats;
    if (settings.children.length === 1) /* once: a refresh must not undo what is being typed */
      settings.append(gate(groupForm(grp, box, () => ((note.textContent = 'settings saved'), load())), 'operate', lack));
    info.replaceChildren(h('dl', { class: 'pairs' },
      h('dt', {}, 'Source'), h('dd', {}, sourceText(grp.source)),
      h('dt', {}, 'Status'), h('dd', {}, grp.status, grp.last_error ? ` at ${grp.last_error.position ?? grp.last_error.revision}: ${grp.last_error.message}` : ''),
      h('dt', {}, 'Strategy'), h('dd', {}, grp.strategy || '—'),
      h('dt', {}, 'Lag'), h('dd', {}, lag(st)),
      h('dt', {}, 'Members'), h('dd', { 'data-figure': 'members' }, `${num(st.push_members)} push connected, ${num(st.waiting_pulls)} pulls waiting`),
      h('dt', {}, 'In flight'), h('dd', { 'data-figure': 'in-flight' }, num(st.in_flight)),
      h('dt', {}, 'Retrying'), h('dd', {}, num(st.retrying)),
      h('dt', {}, 'Parked'), h('dd', { 'data-figure': 'parked' }, num(st.parked), st.parked ? ` (oldest ${duration(st.oldest_parked_seconds)})` : ''),
      h('dt', {}, 'Delivered / redelivered / acked'), h('dd', {}, `${num(st.delivered)} / ${num(st.redelivered)} / ${num(st.acked)}`),
      h('dt', {}, 'Rates'), h('dd', {}, `${num(st.delivery_rate)} deliveries/s, ${num(st.redelivery_rate)} redeliveries/s`)));
    const chosen = new Set([...parked.querySelectorAll('input[type=checkbox]:checked')].map((c) => c.value));
    parked.replaceChildren(table([
      { label: 'Choose', cell: (p) => h('input', { type: 'checkbox', value: p.delivery_id, checked: chosen.has(p.delivery_id), 'aria-label': `choose ${p.delivery_id}` }) },
      { label: 'Id', cell: (p) => p.delivery_id },
      { label: 'Event', cell: (p) => (p.event ? link(eventHref(p.event.stream, p.event.revision), `${p.event.type} ${p.event.stream}@${p.event.revision}`) : 'gone') },
      { label: 'Attempts', cell: (p) => num(p.attempts), class: 'n' },
      { label: 'Reason', cell: (p) => p.reason },
      { label: 'Parked at', cell: (p) => time(p.parked_at) },
      { label: 'Payload', cell: (p) => h('code', { class: 'clip' }, JSON.stringify(p.event?.data ?? null)) },
      { label: 'Delete', cell: (p) => gate(h('button', { type: 'button', class: 'danger', onclick: () => del(p.delivery_id) }, 'Delete…'), 'operate') },
    ], list, { empty: 'No parked messages.', rowClass: () => 'parked' }));
  }
  async function del(id) {
    if (!(await confirmAction(`Delete parked message ${id} of group "${name}"? It will not be delivered again.`, 'Delete'))) return;
    try {
      await call('DELETE', `/groups/${g}/parked/${enc(id)}`);
      await load();
    } catch (e) {
      box.show(e);
    }
  }
  return poll(load, box);
}
