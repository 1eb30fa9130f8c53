// overview.js — the server at a glance: health (ok, degraded with its damage, failed), version,
// uptime, events, streams and log size, connections and subscribers, and two live charts made from
// GET /metrics polled every 2 s: events appended per second and the mean fsync time of the
// interval. Uses GET /health, GET / and GET /metrics only.
import { get, call } from './api.js';
import { h, num, bytes, duration, chart, problemBox } from './dom.js';

// Prometheus text into {"name{labels}": value}.
export function parseMetrics(text) {
  const m = {};
  for (const line of text.split('\n')) {
    if (!line || line[0] === '#') continue;
    const sp = line.lastIndexOf(' ');
    m[line.slice(0, sp)] = Number(line.slice(sp + 1));
  }
  return m;
}
const sumOf = (m, prefix) => Object.entries(m).filter(([k]) => k === prefix || k.startsWith(prefix + '{')).reduce((a, [, v]) => a + v, 0);
const countOf = (m, prefix) => Object.keys(m).filter((k) => k.startsWith(prefix + '{')).length;

export function render(main) {
  const box = problemBox();
  const tiles = h('dl', { class: 'tiles' });
  const charts = h('div', { class: 'charts' });
  const healthEl = h('div', { class: 'health' });
  main.append(h('h1', {}, 'Overview'), box, healthEl, tiles, charts);
  const rate = [], fsync = [];
  let prev = null, timer = null, stopped = false;

  const tile = (label, value, id) => [h('div', { class: 'tile', 'data-figure': id }, h('dt', {}, label), h('dd', {}, value))];

  async function tick() {
    try {
      const [health, root, metricsText] = await Promise.all([
        call('GET', '/health', { allow: [503] }).then((r) => r.body),
        get('/'),
        get('/metrics'),
      ]);
      if (stopped) return;
      box.hide();
      const m = parseMetrics(metricsText);
      const now = performance.now() / 1000;
      if (prev) {
        const dt = now - prev.t;
        rate.push(Math.max(0, (m.factum_append_events_total - prev.events) / dt));
        const n = m.factum_fsync_duration_seconds_count - prev.fsyncs;
        fsync.push(n > 0 ? (m.factum_fsync_duration_seconds_sum - prev.fsyncSum) / n : 0);
        if (rate.length > 60) rate.shift(), fsync.shift();
      }
      prev = { t: now, events: m.factum_append_events_total, fsyncs: m.factum_fsync_duration_seconds_count, fsyncSum: m.factum_fsync_duration_seconds_sum };
      const started = m.process_start_time_seconds;
      healthEl.replaceChildren(
        h('span', { class: `badge ${health.status}` }, health.status),
        health.damaged_events ? ` ${num(health.damaged_events)} damaged events: ${health.damage.map((d) => `${d.file}@${d.offset} (${d.error})`).join(', ')}` : '',
        health.error ? ` writer stopped: ${health.error}` : '',
        health.cluster ? ` cluster node ${health.cluster.node}: ${health.cluster.role}, leader ${health.cluster.leader || 'none'}, lag ${num(health.cluster.lag)}` : '');
      tiles.replaceChildren(
        ...tile('Version', root.version, 'version'),
        ...tile('Uptime', started ? duration(Date.now() / 1000 - started) : '—', 'uptime'),
        ...tile('Events', num(m.factum_head_position), 'events'),
        ...tile('Streams', num(m.factum_streams), 'streams'),
        ...tile('Log size', bytes(m.factum_log_bytes), 'log-bytes'),
        ...tile('Reclaimable', m.factum_scavenge_dry_run === 1 ? (m.factum_scavenge_running ? 'estimating…' : bytes(m.factum_scavenge_reclaimable_bytes)) : 'not estimated (Admin)', 'reclaimable'),
        ...tile('Reclaimed by scavenges', bytes(m.factum_scavenge_reclaimed_bytes_total), 'reclaimed'),
        ...tile('Connections', num(m.factum_connections), 'connections'),
        ...tile('Subscribers', num(m.factum_subscribers), 'subscribers'),
        ...tile('Consumer groups', num(countOf(m, 'factum_group_in_flight')), 'groups'),
        ...tile('Parked messages', num(sumOf(m, 'factum_group_parked')), 'parked'),
        ...tile('Timers pending', num(m.factum_timers_pending), 'timers'),
        ...tile('Projections', num(countOf(m, 'factum_projection_position')), 'projections'));
      charts.replaceChildren(
        h('figure', {}, h('figcaption', {}, `Append rate: ${num(rate.at(-1) ?? 0)} events/s`), chart(rate, 'events appended per second')),
        h('figure', {}, h('figcaption', {}, `fsync latency: ${duration(fsync.at(-1) ?? 0)} mean`), chart(fsync, 'mean fsync seconds', duration)));
    } catch (e) {
      if (!stopped) box.show(e);
    }
    if (!stopped) timer = setTimeout(tick, 2000);
  }
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
