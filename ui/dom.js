// dom.js — the few DOM helpers every page uses: h() builds elements (text is always set as
// text, never parsed as HTML), tables, numbers and times for people, a confirmation dialog,
// the error box of a page, a small SVG chart, and gate() for controls the key may not use.
import { lacks } from './api.js';

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}

export const clear = (el) => {
  el.replaceChildren();
  return el;
};

// A table: cols [{label, cell(row) -> Node|string, class}], rows; an empty-state text.
export function table(cols, rows, { empty = 'Nothing here.', caption, rowClass } = {}) {
  if (!rows.length) return h('p', { class: 'empty' }, empty);
  return h('table', {},
    caption ? h('caption', {}, caption) : null,
    h('thead', {}, h('tr', {}, cols.map((c) => h('th', { scope: 'col', class: c.class }, c.label)))),
    h('tbody', {}, rows.map((r, i) => h('tr', { class: rowClass ? rowClass(r) : null }, cols.map((c) => h('td', { class: c.class }, c.cell(r, i)))))));
}

const numFormat = new Intl.NumberFormat('en-US', { maximumFractionDigits: 2 }); // made once: toLocaleString makes one per call
export const num = (n) => (n === null || n === undefined ? '—' : numFormat.format(Number(n)));
export function bytes(n) {
  if (n === null || n === undefined) return '—';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) (n /= 1024), i++;
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
}
export function duration(s) {
  if (s === null || s === undefined || Number.isNaN(s)) return '—';
  if (s < 1) return `${(s * 1000).toFixed(s < 0.01 ? 2 : 0)} ms`;
  if (s < 120) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 120) return `${m} min`;
  const hr = Math.floor(m / 60);
  return hr < 48 ? `${hr} h ${m % 60} min` : `${Math.floor(hr / 24)} d ${hr % 24} h`;
}
export const time = (t) => (t ? t.replace('T', ' ').replace(/\.(\d{3})\d*Z$/, '.$1Z') : '—');
export const link = (href, text) => h('a', { href }, text);
export const streamHref = (s) => `#/stream/${encodeURIComponent(s)}`;
export const eventHref = (s, rev) => `#/event/${encodeURIComponent(s)}/${rev}`;

// The page's error box: every failed request is shown, with its status and the server's detail.
export function problemBox() {
  const box = h('div', { class: 'problem', role: 'alert', hidden: true });
  box.show = (e) => {
    box.hidden = false;
    box.replaceChildren(h('strong', {}, e.status ? `${e.status} ${e.problem.title || ''}` : 'Error'), ' ',
      e.problem?.detail || e.message);
  };
  box.hide = () => (box.hidden = true);
  return box;
}

// Asks a yes/no question in a modal dialog; resolves true when the user confirmed.
export function confirmAction(question, action = 'Confirm') {
  return new Promise((resolve) => {
    const dlg = h('dialog', { class: 'confirm', 'aria-label': 'Confirm' });
    const done = (v) => {
      dlg.close();
      dlg.remove();
      resolve(v);
    };
    dlg.append(h('p', {}, question),
      h('div', { class: 'buttons' },
        h('button', { type: 'button', class: 'quiet', onclick: () => done(false) }, 'Cancel'),
        h('button', { type: 'button', class: 'danger', onclick: () => done(true) }, action)));
    dlg.addEventListener('cancel', () => done(false));
    document.body.append(dlg);
    dlg.showModal();
  });
}

// A line chart of values (the last `keep`), as SVG, with its label for screen readers.
export function chart(values, label, fmt = num) {
  const W = 300, H = 60;
  const max = Math.max(...values, 0) || 1;
  const pts = values.map((v, i) => `${((i / Math.max(values.length - 1, 1)) * W).toFixed(1)},${(H - (v / max) * (H - 4) - 2).toFixed(1)}`);
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.setAttribute('class', 'chart');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', `${label}: ${values.length ? fmt(values[values.length - 1]) : 'no data yet'} (peak ${fmt(max)})`);
  const line = document.createElementNS(ns, 'polyline');
  line.setAttribute('points', pts.join(' '));
  svg.append(line);
  return svg;
}

// Runs fn now and again `ms` after each run ends, showing its errors in box, until the returned
// function is called (the page's stop); stop.now() runs it again at once.
export function poll(fn, box, ms = 2000) {
  let timer, stopped = false;
  const tick = async () => {
    clearTimeout(timer);
    try {
      await fn();
    } catch (e) {
      if (!stopped) box.show(e);
    }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  const stop = () => {
    stopped = true;
    clearTimeout(timer);
  };
  stop.now = tick;
  tick();
  return stop;
}

// Disables el (a button, or a form's controls) when this tab's key lacks perm, with the reason
// as its title and in a note beside it (note: an element to put the reason in; false: none,
// for buttons repeated on every row of a table). Never enables what the page disabled.
export function gate(el, perm, note) {
  lacks(perm).then((why) => {
    if (!why) return;
    const controls = el.tagName === 'FORM' ? [...el.elements] : [el];
    for (const c of controls) {
      c.disabled = true;
      c.title = why;
    }
    el.dataset.lacks = perm;
    if (note) note.textContent = `Disabled: ${why}.`;
  });
  return el;
}

// A note for gate(): empty until a reason fills it.
export const lacksNote = () => h('p', { class: 'lacks', role: 'note' });
