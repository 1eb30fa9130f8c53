// event.js — one event (GET /streams/{s}?from=R&limit=1): its CloudEvent attributes, its data
// pretty-printed and collapsible, and the timeline of its correlation id across streams (GET
// /all?correlation_id=X, served from the correlation index), with links to the event that caused
// it (the one whose id is its causationid) and to those it caused.
import { get, enc } from './api.js';
import { h, time, link, streamHref, eventHref, problemBox } from './dom.js';

const ATTRS = ['id', 'type', 'source', 'subject', 'time', 'datacontenttype', 'dataschema', 'correlationid', 'causationid', 'stream', 'revision', 'position', 'specversion'];

export function render(main, [stream, rev]) {
  const box = problemBox();
  const body = h('div', {});
  main.append(h('h1', {}, 'Event ', h('code', {}, `${stream}@${rev}`)), box, body);
  (async () => {
    try {
      const [ev] = await get(`/streams/${enc(stream)}?from=${rev}&limit=1`);
      if (!ev || String(ev.revision) !== rev) {
        body.append(h('p', { class: 'empty' }, 'No such event.'));
        return;
      }
      const extra = Object.keys(ev).filter((k) => !ATTRS.includes(k) && k !== 'data' && k !== 'data_base64');
      body.append(
        h('dl', { class: 'pairs' }, [...ATTRS, ...extra].filter((k) => ev[k] !== undefined).flatMap((k) => [
          h('dt', {}, k),
          h('dd', {}, k === 'stream' ? link(streamHref(ev.stream), ev.stream) : String(ev[k])),
        ])),
        h('details', { open: true, class: 'data' }, h('summary', {}, 'Data'),
          h('pre', {}, ev.data !== undefined ? JSON.stringify(ev.data, null, 2) : `base64: ${ev.data_base64}`)),
        h('details', { class: 'data' }, h('summary', {}, 'The whole CloudEvent'), h('pre', {}, JSON.stringify(ev, null, 2))));
      if (!ev.correlationid) return;
      const all = await get(`/all?correlation_id=${enc(ev.correlationid)}&limit=1000`);
      const cause = ev.causationid && all.find((e) => e.id === ev.causationid);
      const caused = all.filter((e) => e.causationid && e.causationid === ev.id);
      body.append(h('div', {},
        h('h2', {}, 'Caused by'),
        cause ? h('p', {}, link(eventHref(cause.stream, cause.revision), `${cause.type} in ${cause.stream}@${cause.revision}`), ' ', h('span', { class: 'id' }, cause.id))
          : h('p', { class: 'empty' }, ev.causationid ? `${ev.causationid} (not among the events of this correlation id)` : 'no causation id'),
        caused.length ? [h('h2', {}, 'Caused'), h('ul', {}, caused.map((e) => h('li', {}, link(eventHref(e.stream, e.revision), `${e.type} in ${e.stream}@${e.revision}`))))] : null,
        h('h2', {}, 'Correlation ', h('code', {}, ev.correlationid)),
        h('ol', { class: 'timeline', 'aria-label': 'Events with this correlation id, in log order' }, all.map((e) => h('li', { class: e.position === ev.position ? 'current' : null },
          h('time', {}, time(e.time)), ' ',
          link(eventHref(e.stream, e.revision), e.type), ' in ', link(streamHref(e.stream), e.stream), ` @${e.revision}`,
          e.position === ev.position ? h('strong', {}, ' (this event)') : null))),
        all.length === 1000 ? h('p', {}, 'The first 1,000 events are shown.') : null));
    } catch (e) {
      box.show(e);
    }
  })();
}
