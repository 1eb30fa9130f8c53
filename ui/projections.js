// projections.js — SQL projections (GET /projections, polled every 2 s): status, position, lag,
// rate, the last error with the position of the event that caused it; reset behind a
// confirmation (POST /projections/{name}/reset); and a query console (POST
// /projections/{name}/query with sql, params and min_position) whose rows show as a table.
import { get, call, enc } from './api.js';
import { h, table, num, duration, problemBox, confirmAction, poll, gate, lacksNote } from './dom.js';

export function render(main) {
  const box = problemBox();
  const list = h('div', {});
  const names = h('select', { id: 'q-name', name: 'name' });
  const result = h('div', { role: 'status' });
  const form = h('form', { class: 'console', 'aria-label': 'Query a projection' },
    h('label', { for: 'q-name' }, 'Projection'), names,
    h('label', { for: 'q-sql' }, 'SQL (read only)'), h('textarea', { id: 'q-sql', name: 'sql', rows: 3 }, 'SELECT 1'),
    h('label', { for: 'q-params' }, 'Parameters (JSON array or object)'), h('input', { id: 'q-params', name: 'params' }),
    h('label', { for: 'q-min' }, 'min_position'), h('input', { id: 'q-min', name: 'min', type: 'number', min: 0 }),
    h('button', { type: 'submit' }, 'Run'));
  const note = lacksNote();
  const queryNote = lacksNote();
  main.append(h('h1', {}, 'Projections'), box, list, note, h('h2', {}, 'Query'), queryNote, gate(form, 'read-all', queryNote), result);
  let known = '';

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const q = { sql: form.sql.value };
    try {
      if (form.params.value.trim()) q.params = JSON.parse(form.params.value);
      if (form.min.value) q.min_position = Number(form.min.value);
      const r = await call('POST', `/projections/${enc(names.value)}/query`, { body: q });
      result.replaceChildren(table(r.body.columns.map((c, i) => ({ label: c, cell: (row) => JSON.stringify(row[i]) })), r.body.rows, { empty: 'No rows.' }));
    } catch (err) {
      box.show(err.status ? err : { problem: { detail: `parameters: ${err.message}` }, message: err.message });
    }
  });
  async function reset(p) {
    if (!(await confirmAction(`Reset projection "${p.name}"? Its read model is rebuilt from the first event.`, `Reset ${p.name}`))) return;
    try {
      await call('POST', `/projections/${enc(p.name)}/reset`);
      stop.now();
    } catch (e) {
      box.show(e);
    }
  }
  const stop = poll(async () => {
    const ps = await get('/projections');
    list.replaceChildren(table([
      { label: 'Projection', cell: (p) => p.name },
      { label: 'Status', cell: (p) => (p.rebuilding ? `${p.status} (rebuilding)` : p.status) },
      { label: 'Position', cell: (p) => num(p.position), class: 'n' },
      { label: 'Lag', cell: (p) => `${num(p.lag_events)} events, ${duration(p.lag_seconds)}` },
      { label: 'Events/s', cell: (p) => num(p.events_per_second), class: 'n' },
      { label: 'Applied', cell: (p) => num(p.applied), class: 'n' },
      { label: 'Last error', cell: (p) => (p.last_error ? `at position ${p.last_error.position}: ${p.last_error.message}` : '') },
      { label: 'Reset', cell: (p) => gate(h('button', { type: 'button', class: 'danger', onclick: () => reset(p) }, 'Reset…'), 'operate', note) },
    ], ps, { empty: 'No projections yet (PUT /projections/{name} defines one).' }));
    const n = ps.map((p) => p.name).join();
    if (n !== known) names.replaceChildren(...ps.map((p) => h('option', { value: p.name }, p.name))), (known = n);
  }, box);
  return stop;
}
