// timers.js — durable timers (GET /schedules?state=S, paged by its Link header): when each is
// due, the stream and event it will append, its state (pending, fired at a position, failed with
// the store's reason, cancelled); a pending one can be cancelled (DELETE /schedules/{id}).
import { call, enc, nextLink } from './api.js';
import { h, table, num, time, link, streamHref, problemBox, confirmAction, gate, lacksNote } from './dom.js';

const STATES = ['pending', 'fired', 'failed', 'cancelled'];

export function render(main, _params, query) {
  const box = problemBox();
  const state = STATES.includes(query.get('state')) ? query.get('state') : 'pending';
  const tabs = h('nav', { class: 'tabs', 'aria-label': 'Timer states' }, STATES.map((s) =>
    h('a', { href: `#/timers?state=${s}`, 'aria-current': s === state ? 'page' : null }, s)));
  const list = h('div', {});
  const more = h('button', { type: 'button', hidden: true }, 'Next page');
  const note = lacksNote();
  main.append(h('h1', {}, 'Timers'), box, tabs, list, note, more);
  const rows = [];
  let url = `/schedules?state=${state}&limit=100`;

  async function cancel(t) {
    if (!(await confirmAction(`Cancel timer ${t.id}? Its ${t.event?.type || ''} event will not be appended to "${t.stream}".`, 'Cancel timer'))) return;
    try {
      await call('DELETE', `/schedules/${enc(t.id)}`);
      const row = list.querySelector(`tr[data-id="${CSS.escape(t.id)}"]`);
      if (row) row.remove();
      const i = rows.indexOf(t);
      if (i >= 0) rows.splice(i, 1);
      draw();
    } catch (e) {
      box.show(e);
    }
  }
  const draw = () => {
    list.replaceChildren(table([
      { label: 'Id', cell: (t) => h('code', {}, t.id) },
      { label: 'Due', cell: (t) => time(t.at) },
      { label: 'Stream', cell: (t) => link(streamHref(t.stream), t.stream) },
      { label: 'Event type', cell: (t) => t.event?.type || '' },
      { label: 'State', cell: (t) => (t.state === 'fired' ? `fired at ${num(t.position)}` : t.state === 'failed' ? `failed: ${t.error}` : t.state) },
      ...(state === 'pending' ? [{ label: 'Cancel', cell: (t) => gate(h('button', { type: 'button', class: 'danger', onclick: () => cancel(t) }, 'Cancel…'), 'operate', note) }] : []),
    ], rows, { empty: `No ${state} timers.` }));
    for (const [i, tr] of [...list.querySelectorAll('tbody tr')].entries()) tr.dataset.id = rows[i].id;
  };
  async function page() {
    try {
      const res = await call('GET', url);
      rows.push(...res.body);
      url = nextLink(res.headers);
      more.hidden = !url;
      draw();
    } catch (e) {
      box.show(e);
    }
  }
  more.addEventListener('click', page);
  page();
}
