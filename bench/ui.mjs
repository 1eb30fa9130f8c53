// bench/ui.mjs URL — `make bench`, the dashboard (issue 20), against a server that holds the
// streams bench/ui.sh made. Prints, same run:
//  - GET /streams pages over HTTP (first, after the middle, a category, the categories): p50 and
//    p99 of 50 asks each, as a client on loopback sees them;
//  - the streams page in Debian's chromium: the listing request's time by the browser's
//    Resource Timing, and how long after the navigation the table was drawn;
//  - the live tail of $all while appends run at a target rate (default 10,000 events/s, in
//    batches of 100), beside the same page idle: frames drawn per second (requestAnimationFrame),
//    long tasks (PerformanceObserver 'longtask': main-thread work over 50 ms), the events the page
//    received per second and the rows it kept (bounded by "Rows kept", 500).
import { launch } from '../tests/browser/chromium.mjs';

const url = process.argv[2];
const RATE = Number(process.env.TAIL_RATE || 10000);
const SECONDS = Number(process.env.TAIL_SECONDS || 10);
const ms = (x) => x.toFixed(2);
const pct = (v, p) => v.slice().sort((a, b) => a - b)[Math.min(v.length - 1, Math.floor((v.length * p) / 100))];

async function timed(path, n = 50) {
  const t = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const r = await fetch(url + path);
    const body = await r.text();
    if (r.status !== 200) throw new Error(`${path}: ${r.status} ${body.slice(0, 200)}`);
    t.push(performance.now() - t0);
  }
  return `p50 ${ms(pct(t, 50))} ms, p99 ${ms(pct(t, 99))} ms`;
}

const first = await (await fetch(`${url}/streams?limit=50`)).json();
const streams = Number((await (await fetch(`${url}/metrics`)).text()).match(/^factum_streams (\d+)/m)[1]);
console.log(`dashboard over ${streams.toLocaleString('en-US')} streams (HTTP on loopback, 50 asks each):`);
const mid = `c10-${String(Math.floor(streams / 2)).padStart(7, '0')}`;
console.log(`  GET /streams?limit=50                 ${await timed('/streams?limit=50')}`);
console.log(`  GET /streams?after=MIDDLE&limit=50     ${await timed(`/streams?after=${mid}&limit=50`)}`);
console.log(`  GET /streams?category=c13&limit=50    ${await timed('/streams?category=c13&limit=50')}`);
console.log(`  GET /categories                       ${await timed('/categories')}`);
if (first.length !== 50) throw new Error(`the first page has ${first.length} streams`);

const browser = await launch();
try {
  const page = await (await browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
  const t0 = Date.now();
  await page.goto(`${url}/ui/#/streams`);
  await page.locator('tbody tr').nth(49).waitFor();
  const drawn = Date.now() - t0;
  const res = await page.evaluate(() => performance.getEntriesByType('resource').filter((e) => /\/streams\?/.test(e.name)).map((e) => e.responseEnd - e.requestStart));
  console.log(`  streams page in chromium: GET /streams ${ms(res[0])} ms (Resource Timing), table of 50 drawn ${drawn} ms after the navigation`);

  // The live tail: the page's own figures over SECONDS, idle, then under appends.
  await page.addInitScript(() => {
    window.__bench = { frames: 0, long: [] };
    const tick = () => {
      window.__bench.frames++;
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
    new PerformanceObserver((l) => l.getEntries().forEach((e) => window.__bench.long.push(e.duration))).observe({ type: 'longtask', buffered: true });
  });
  await page.goto('about:blank'); // a new document, so the script above runs in it
  await page.goto(`${url}/ui/#/tail`);
  await page.locator('.state.live').waitFor();
  const sample = async () => {
    const a = await page.evaluate(() => ({ frames: window.__bench.frames, long: window.__bench.long.length, counts: document.querySelector('.counts').textContent }));
    const t = performance.now();
    return { ...a, t };
  };
  const seen = (c) => Number((/^([\d,]+) events received/.exec(c) || [0, '0'])[1].replace(/,/g, ''));
  const measure = async (load) => {
    const a = await sample();
    let appended = 0;
    const until = performance.now() + SECONDS * 1000;
    if (load) {
      // RATE events/s in batches of 100, from 4 concurrent senders, each paced to its share.
      const event = (i) => ({ type: 'Tick', data: { n: i, note: 'live tail bench' } });
      const batch = Array.from({ length: 100 }, (_, i) => event(i));
      const body = JSON.stringify(batch);
      await Promise.all([0, 1, 2, 3].map(async (s) => {
        const every = (4 * 100 * 1000) / RATE; // ms between this sender's batches
        let next = performance.now();
        while (performance.now() < until) {
          const r = await fetch(`${url}/streams/tick-${s}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body });
          await r.text();
          if (r.status !== 201) throw new Error(`append: ${r.status}`);
          appended += 100;
          next += every;
          const wait = next - performance.now();
          if (wait > 0) await new Promise((ok) => setTimeout(ok, wait));
        }
      }));
    } else {
      await new Promise((ok) => setTimeout(ok, SECONDS * 1000));
    }
    await new Promise((ok) => setTimeout(ok, 500)); // what is in flight reaches the page
    const b = await sample();
    const long = await page.evaluate((from) => window.__bench.long.slice(from), a.long);
    const secs = (b.t - a.t) / 1000;
    const rows = await page.locator('table.tail tbody tr').count();
    return { fps: (b.frames - a.frames) / secs, appended, received: seen(b.counts) - seen(a.counts), long: long.length, longest: long.length ? Math.max(...long) : 0, longSum: long.reduce((x, y) => x + y, 0), rows };
  };
  const idle = await measure(false);
  const busy = await measure(true);
  const line = (name, m) => `  ${name}: ${m.fps.toFixed(1)} frames/s, ${m.long} long tasks (longest ${ms(m.longest)} ms, ${ms(m.longSum)} ms in all), ${m.received.toLocaleString('en-US')} of ${m.appended.toLocaleString('en-US')} appended events received, ${m.rows} rows kept`;
  console.log(`live tail of $all in chromium, ${SECONDS} s each, same run (appends: ${Math.round(busy.appended / SECONDS).toLocaleString('en-US')} events/s, asked ${RATE.toLocaleString('en-US')}):`);
  console.log(line('idle          ', idle));
  console.log(line('under appends ', busy));
  console.log(`  frames/s under appends / idle: ${(busy.fps / idle.fps).toFixed(2)}`);
} finally {
  await browser.close();
}
