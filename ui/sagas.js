// sagas.js — sagas: the definitions with their instances counted by status (GET /sagas); one
// saga's definition (GET /sagas/{name}: what starts it, its steps with their commands, replies,
// timeouts and compensations), its instances, filtered by status (GET /sagas/{name}/instances), and its parked inputs (GET
// /sagas/{name}/parked); one instance (GET /sagas/{name}/instances/{id}) as a timeline of what
// happened to it: steps, commands, replies, timeouts and compensations, in order.
import { get, enc } from './api.js';
import { h, table, num, time, problemBox } from './dom.js';

const STATUSES = ['running', 'compensating', 'completed', 'failed', 'compensation_failed'];

export function renderList(main) {
  const box = problemBox();
  const list = h('div', {});
  main.append(h('h1', {}, 'Sagas'), box, list);
  get('/sagas').then((sagas) => list.replaceChildren(table([
    { label: 'Saga', cell: (s) => h('a', { href: `#/saga/${enc(s.name)}` }, s.name) },
    ...STATUSES.map((st) => ({ label: st.replace('_', ' '), cell: (s) => num(s[st] ?? s.instances?.[st] ?? 0), class: 'n' })),
    { label: 'parked', cell: (s) => num(s.parked ?? 0), class: 'n' },
  ], sagas, { empty: 'No sagas yet (PUT /sagas/{name} defines one).' }))).catch((e) => box.show(e));
}

export function renderSaga(main, [name], query) {
  const box = problemBox();
  const status = STATUSES.includes(query.get('status')) ? query.get('status') : '';
  const list = h('div', {});
  const parked = h('div', {});
  const def = h('div', {});
  const cmd = (c) => (c ? `${c.type} → ${c.stream}` : '—');
  get(`/sagas/${enc(name)}`).then((s) => {
    const d = s.definition || {};
    def.replaceChildren(
      h('dl', { class: 'pairs' }, h('dt', {}, 'Starts on'), h('dd', {}, d.start_on || '—'), h('dt', {}, 'Instance id'), h('dd', {}, d.instance_id || '—')),
      table([
        { label: '#', cell: (_, i) => String(i + 1), class: 'n' },
        { label: 'Step', cell: (st) => st.name },
        { label: 'Command', cell: (st) => cmd(st.command) },
        { label: 'Succeeds on', cell: (st) => (st.success || []).join(', ') },
        { label: 'Fails on', cell: (st) => (st.failure || []).join(', ') },
        { label: 'Timeout', cell: (st) => (st.timeout_ms ? `${num(st.timeout_ms)} ms` : '—') },
        { label: 'Compensation', cell: (st) => cmd(st.compensation) },
      ], d.steps || [], { empty: 'No steps.', rowClass: () => 'step' }),
      h('details', {}, h('summary', {}, 'The definition as stored'), h('pre', {}, JSON.stringify(d, null, 2))));
  }).catch((e) => box.show(e));
  main.append(h('h1', {}, 'Saga ', h('code', {}, name)), box, h('h2', {}, 'Definition'), def, h('h2', {}, 'Instances'),
    h('nav', { class: 'tabs', 'aria-label': 'Instance status' }, ['', ...STATUSES].map((s) =>
      h('a', { href: `#/saga/${enc(name)}${s ? '?status=' + s : ''}`, 'aria-current': s === status ? 'page' : null }, s || 'all'))),
    list, h('h2', {}, 'Parked inputs'), parked);
  get(`/sagas/${enc(name)}/instances${status ? '?status=' + status : ''}`).then((xs) => list.replaceChildren(table([
    { label: 'Instance', cell: (i) => h('a', { href: `#/saga/${enc(name)}/${enc(i.id)}` }, i.id) },
    { label: 'Status', cell: (i) => i.status },
    { label: 'Step', cell: (i) => i.step || '' },
    { label: 'Started', cell: (i) => time(i.started) },
    { label: 'Ended', cell: (i) => time(i.ended) },
  ], xs, { empty: 'No instances.' }))).catch((e) => box.show(e));
  get(`/sagas/${enc(name)}/parked`).then((xs) => parked.replaceChildren(table([
    { label: 'Input', cell: (p) => h('code', { class: 'clip' }, JSON.stringify(p)) },
  ], Array.isArray(xs) ? xs : [], { empty: 'None.' }))).catch((e) => box.show(e));
}

export function renderInstance(main, [name, id]) {
  const box = problemBox();
  const body = h('div', {});
  main.append(h('h1', {}, 'Saga ', h('code', {}, name), ' instance ', h('code', {}, id)), box, body);
  get(`/sagas/${enc(name)}/instances/${enc(id)}`).then((i) => body.replaceChildren(
    h('dl', { class: 'pairs' }, h('dt', {}, 'Status'), h('dd', {}, i.status), h('dt', {}, 'Step'), h('dd', {}, i.step || '—')),
    h('details', {}, h('summary', {}, 'Context'), h('pre', {}, JSON.stringify(i.context, null, 2))),
    h('h2', {}, 'Timeline'),
    h('ol', { class: 'timeline' }, i.history.map((e) => h('li', { class: /Compensat/.test(e.type) ? 'compensation' : null },
      h('time', {}, time(e.time)), ' ', h('strong', {}, e.type), ` at ${num(e.position)} `,
      h('code', { class: 'clip' }, JSON.stringify(e.data))))))).catch((e) => box.show(e));
}
