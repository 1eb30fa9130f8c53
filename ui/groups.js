// groups.js — consumer groups: the list with each one's lag, in flight, retrying, parked and
// delivery rate (GET /groups), and one group (GET /groups/{g}) with its settings, its figures
// and its parked messages (GET /groups/{g}/parked) with payload, reason and attempts: replay
// the chosen or all (POST /groups/{g}/parked/replay), or delete one (DELETE
// /groups/{g}/parked/{id}). The figures refresh every 2 s.
import { get, call, enc } from './api.js';
import { h, table, num, duration, time, link, eventHref, problemBox, confirmAction, poll } from './dom.js';

const sourceText = (s) => (s?.stream ? `stream ${s.stream}` : s?.category ? `category ${s.category}` : s?.all ? `$all${s.all.types ? ' types ' + s.all.types.join(',') : ''}${s.all.categories ? ' categories ' + s.all.categories.join(',') : ''}` : JSON.stringify(s));
const lag = (st) => `${st.lag_events !== undefined ? num(st.lag_events) + ' events' : num(st.lag_positions) + ' positions'}, ${duration(st.lag_seconds)}`;

export function renderList(main) {
  const box = problemBox();
  const list = h('div', {});
  main.append(h('h1', {}, 'Consumer groups'), box, list);
  return poll(async () => {
    const groups = await get('/groups');
    list.replaceChildren(table([
      { label: 'Group', cell: (g) => link(`#/group/${enc(g.name)}`, g.name) },
      { label: 'Source', cell: (g) => sourceText(g.source) },
      { label: 'Status', cell: (g) => g.status },
      { label: 'Lag', cell: (g) => lag(g.stats) },
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
  main.append(h('h1', {}, 'Consumer group ', h('code', {}, name)), box, info,
    h('h2', {}, 'Parked messages'), h('div', { class: 'actions' }, replayChosen, replayAll, note), parked);

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
    info.replaceChildren(h('dl', { class: 'pairs' },
      h('dt', {}, 'Source'), h('dd', {}, sourceText(grp.source)),
      h('dt', {}, 'Status'), h('dd', {}, grp.status, grp.last_error ? ` at ${grp.last_error.position ?? grp.last_error.revision}: ${grp.last_error.message}` : ''),
      h('dt', {}, 'Strategy'), h('dd', {}, grp.strategy || '—'),
      h('dt', {}, 'Lag'), h('dd', {}, lag(st)),
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
      { label: 'Delete', cell: (p) => h('button', { type: 'button', class: 'danger', onclick: () => del(p.delivery_id) }, 'Delete…') },
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
