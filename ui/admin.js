// admin.js — the Admin page: scavenge (GET /admin/scavenge for its progress, POST to start one;
// polled while it runs; or a dry run, POST ?dry_run=true, that only counts what one would give
// back), API keys (GET /admin/keys; POST /admin/keys, whose token is shown once
// and never again; DELETE /admin/keys/{id} to revoke) and the audit trail (the system stream
// $audit, newest first). The first key made turns keys on for the whole server: the page says so
// before making it.
import { get, call, enc } from './api.js';
import { h, table, num, bytes, time, problemBox, confirmAction, gate, lacksNote } from './dom.js';

export function render(main) {
  const box = problemBox();
  const scav = h('div', {});
  const keys = h('div', {});
  const made = h('div', { class: 'token', role: 'status' });
  const audit = h('div', {});
  const scavNote = lacksNote();
  const keysNote = lacksNote();
  const startBtn = gate(h('button', { type: 'button', onclick: () => start(false) }, 'Start a scavenge'), 'operate', scavNote);
  const dryBtn = gate(h('button', { type: 'button', onclick: () => start(true) }, 'Estimate reclaimable space'), 'operate', scavNote);
  const form = h('form', { class: 'filters', 'aria-label': 'New API key' },
    h('label', { for: 'key-role' }, 'Role'),
    h('select', { id: 'key-role', name: 'role' }, ['admin', 'operator', 'writer', 'reader', 'consumer'].map((r) => h('option', { value: r }, r))),
    h('label', { for: 'key-name' }, 'Name'), h('input', { id: 'key-name', name: 'name' }),
    h('label', { for: 'key-streams' }, 'Streams (comma-separated patterns; empty: all)'), h('input', { id: 'key-streams', name: 'streams' }),
    h('label', { for: 'key-expires' }, 'Expires (30d, 12h or a time; empty: never)'), h('input', { id: 'key-expires', name: 'expires' }),
    h('button', { type: 'submit' }, 'Create key'));
  main.append(h('h1', {}, 'Admin'), box,
    h('section', { 'aria-labelledby': 'h-scavenge' }, h('h2', { id: 'h-scavenge' }, 'Scavenge'), scav, h('div', { class: 'actions' }, startBtn, dryBtn), scavNote),
    h('section', { 'aria-labelledby': 'h-keys' }, h('h2', { id: 'h-keys' }, 'API keys'), keys, h('h3', {}, 'New key'), keysNote, gate(form, 'admin', keysNote), made),
    h('section', { 'aria-labelledby': 'h-audit' }, h('h2', { id: 'h-audit' }, 'Audit trail'), audit));
  let timer, stopped = false;

  let until = 0; // the run a start asked for: polled until it has finished
  async function scavenge() {
    try {
      const s = await get('/admin/scavenge');
      scav.replaceChildren(
        h('dl', { class: 'pairs' },
          h('dt', {}, 'State'), h('dd', { 'data-figure': 'scavenge' }, (s.running ? `running: ${num(s.segments_done)} of ${num(s.segments_total)} segments` : s.runs ? 'finished' : 'never run') + (s.runs || s.running ? (s.dry_run ? ' (dry run: nothing written)' : '') : '')),
          h('dt', {}, s.dry_run ? 'Reclaimable (estimated)' : 'Removed'), h('dd', { 'data-figure': 'reclaimable' }, s.runs || s.running ? `${num(s.events_removed)} events, ${bytes(s.bytes_reclaimable)}` : '—'),
          h('dt', {}, 'Runs'), h('dd', {}, num(s.runs)),
          h('dt', {}, 'Last run'), h('dd', {}, s.started ? `${time(s.started)} – ${time(s.finished)}: ${num(s.events_removed)} events removed, ${bytes(s.bytes_reclaimed)} reclaimed` : '—'),
          h('dt', {}, 'Reclaimed in all'), h('dd', {}, bytes(s.bytes_reclaimed_total)),
          s.error ? [h('dt', {}, 'Error'), h('dd', {}, s.error)] : null));
      startBtn.disabled = s.running || !!startBtn.dataset.lacks;
      dryBtn.disabled = s.running || !!dryBtn.dataset.lacks;
      if ((s.running || s.runs < until) && !stopped) timer = setTimeout(scavenge, 500);
    } catch (e) {
      box.show(e);
    }
  }
  async function start(dry) {
    try {
      const r = await call('POST', `/admin/scavenge${dry ? '?dry_run=true' : ''}`);
      until = r.body.runs + 1; // done once runs is past what the start answered
      scavenge();
    } catch (e) {
      box.show(e);
    }
  }
  async function loadKeys() {
    try {
      const list = await get('/admin/keys');
      keys.replaceChildren(table([
        { label: 'Id', cell: (k) => h('code', {}, k.id) },
        { label: 'Name', cell: (k) => k.name || '' },
        { label: 'Role', cell: (k) => k.role },
        { label: 'Streams', cell: (k) => (k.streams?.length ? k.streams.join(', ') : 'all') },
        { label: 'Expires', cell: (k) => (k.expires ? time(k.expires) : 'never') },
        { label: 'Created', cell: (k) => `${time(k.created)} by ${k.created_by}` },
        { label: 'State', cell: (k) => (k.revoked ? 'revoked' : 'live') },
        { label: 'Revoke', cell: (k) => (k.revoked ? '' : gate(h('button', { type: 'button', class: 'danger', onclick: () => revoke(k) }, 'Revoke…'), 'admin')) },
      ], list, { empty: 'No keys: the server checks nothing. Creating the first key turns keys on for every request.', rowClass: () => 'key' }));
    } catch (e) {
      box.show(e);
    }
  }
  async function revoke(k) {
    if (!(await confirmAction(`Revoke key ${k.id}${k.name ? ' (' + k.name + ')' : ''}? Requests with it are refused at once.`, 'Revoke'))) return;
    try {
      await call('DELETE', `/admin/keys/${enc(k.id)}`);
      loadKeys();
    } catch (e) {
      box.show(e);
    }
  }
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const spec = { role: form.role.value };
    if (form.name.value.trim()) spec.name = form.name.value.trim();
    if (form.streams.value.trim()) spec.streams = form.streams.value.split(',').map((s) => s.trim()).filter(Boolean);
    if (form.expires.value.trim()) spec.expires = form.expires.value.trim();
    try {
      const r = await call('POST', '/admin/keys', { body: spec });
      made.replaceChildren(h('p', {}, `Key ${r.body.id} made. Its token is shown this once: copy it now.`),
        h('code', { class: 'secret', 'data-token': '' }, r.body.token));
      form.reset();
      loadKeys();
      loadAudit();
    } catch (err) {
      box.show(err);
    }
  });
  async function loadAudit() {
    try {
      const there = await get('/streams?prefix=%24audit&system=true&limit=1');
      if (!there.some((s) => s.stream === '$audit')) {
        audit.replaceChildren(h('p', { class: 'empty' }, 'Nothing audited yet (the server audits once it has keys).'));
        return;
      }
      const events = await get(`/streams/${enc('$audit')}?direction=backward&limit=50`);
      audit.replaceChildren(table([
        { label: 'Time', cell: (e) => time(e.time) },
        { label: 'What', cell: (e) => e.type },
        { label: 'Who', cell: (e) => e.data.who },
        { label: 'From', cell: (e) => e.data.peer },
        { label: 'Request', cell: (e) => `${e.data.method} ${e.data.path}` },
        { label: 'Status', cell: (e) => String(e.data.status) },
        { label: 'Detail', cell: (e) => (e.data.reason ? `${e.data.reason}${e.data.permission ? ' (' + e.data.permission + ')' : ''} ×${e.data.count}` : '') },
      ], events, { caption: 'The latest 50 records' }));
    } catch (e) {
      box.show(e);
    }
  }
  scavenge();
  loadKeys();
  loadAudit();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
