// tail.js — the live tail: new events of $all (GET /all?from=end, filtered by type and category
// on the server) or of one stream (GET /streams/{s}?from=end, type filtered here), as Server-
// Sent Events read through fetch so the key goes along. Rows are drawn on an animation frame at
// most every DRAW_MS, only the newest `keep` of what arrived meanwhile, and at most `keep` are
// kept: older rows are dropped, so a fast log (10,000 events/s: bench/ui.mjs) costs the page a
// bounded amount of work per second, whatever the rate. Pause stops the drawing, not the subscription: what arrives meanwhile
// is counted and its newest rows kept.
import { subscribe, enc } from './api.js';
import { h, time, link, streamHref, eventHref, problemBox, num } from './dom.js';

const DRAW_MS = 200;
const DRAW_ROWS = 100;

export function render(main, _params, query) {
  const box = problemBox();
  const stream = query.get('stream') || '';
  const type = query.get('type') || '';
  const category = query.get('category') || '';
  const keep = Math.min(Math.max(Number(query.get('keep')) || 500, 10), 5000);
  const form = h('form', { class: 'filters' },
    h('label', { for: 'tail-stream' }, 'Stream (empty: $all)'), h('input', { id: 'tail-stream', name: 'stream', value: stream }),
    h('label', { for: 'tail-type' }, 'Type'), h('input', { id: 'tail-type', name: 'type', value: type }),
    h('label', { for: 'tail-category' }, 'Category'), h('input', { id: 'tail-category', name: 'category', value: category, disabled: !!stream }),
    h('label', { for: 'tail-keep' }, 'Rows kept'), h('input', { id: 'tail-keep', name: 'keep', type: 'number', min: 10, max: 5000, value: keep }),
    h('button', { type: 'submit' }, 'Follow'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const k of ['stream', 'type', 'category', 'keep']) if (form[k].value && !form[k].disabled) q.set(k, form[k].value);
    location.hash = `#/tail?${q}`;
  });
  const state = h('span', { class: 'state', role: 'status' }, 'connecting');
  const counts = h('span', { class: 'counts' });
  const pause = h('button', { type: 'button', 'aria-pressed': 'false' }, 'Pause');
  const tbody = h('tbody', {});
  main.append(h('h1', {}, 'Live tail ', h('code', {}, stream || '$all')), box, form,
    h('div', { class: 'actions' }, pause, state, counts),
    h('table', { class: 'tail' }, h('thead', {}, h('tr', {}, ['Position', 'Stream', 'Revision', 'Type', 'Time', 'Data'].map((c) => h('th', { scope: 'col' }, c)))), tbody));

  let pending = [], paused = false, seen = 0, frame = 0, timer = 0, drawn = 0;
  const schedule = () => {
    if (frame || timer || paused) return;
    const wait = drawn + DRAW_MS - performance.now();
    if (wait <= 0) frame = requestAnimationFrame(draw);
    else timer = setTimeout(() => ((timer = 0), schedule()), wait);
  };
  const draw = () => {
    frame = 0;
    drawn = performance.now();
    if (paused || !pending.length) return;
    const rows = pending.slice(-Math.min(keep, DRAW_ROWS)).reverse().map((e) => h('tr', { class: 'event' },
      h('td', { class: 'n' }, num(e.position)), h('td', {}, link(streamHref(e.stream), e.stream)),
      h('td', { class: 'n' }, link(eventHref(e.stream, e.revision), String(e.revision))),
      h('td', {}, e.type), h('td', {}, time(e.time)),
      h('td', {}, h('code', { class: 'clip' }, JSON.stringify(e.data ?? e.data_base64 ?? null).slice(0, 200)))));
    pending = [];
    if (rows.length >= keep) tbody.replaceChildren(...rows);
    else tbody.prepend(...rows);
    while (tbody.rows.length > keep) tbody.lastElementChild.remove();
    counts.textContent = `${num(seen)} events received, ${num(tbody.rows.length)} rows kept`;
  };
  pause.addEventListener('click', () => {
    paused = !paused;
    pause.textContent = paused ? 'Resume' : 'Pause';
    pause.setAttribute('aria-pressed', String(paused));
    if (!paused) schedule();
    else counts.textContent = `${num(seen)} events received (paused)`;
  });

  const q = new URLSearchParams({ from: 'end' });
  if (!stream && type) q.set('type', type);
  if (!stream && category) q.set('category', category);
  const path = stream ? `/streams/${enc(stream)}?from=end` : `/all?${q}`;
  const stop = subscribe(path, (ev) => {
    if (ev.event === 'caught-up') {
      state.textContent = 'live';
      state.className = 'state live';
      return;
    }
    let e;
    try {
      e = JSON.parse(ev.data);
    } catch {
      return;
    }
    if (stream && type && e.type !== type) return;
    seen++;
    pending.push(e);
    if (pending.length >= 2 * keep) pending = pending.slice(-keep); // trimmed now and then, not per event
    schedule();
  }, (s, err) => {
    if (s === 'open') state.textContent = 'catching up';
    else if (s === 'closed') state.textContent = 'closed by the server';
    else if (s === 'error') {
      state.textContent = 'failed';
      box.show(err);
    }
  });
  return () => {
    stop();
    if (frame) cancelAnimationFrame(frame);
    clearTimeout(timer);
  };
}
