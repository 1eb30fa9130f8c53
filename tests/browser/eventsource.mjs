// eventsource.mjs URL — a real browser (Debian chromium, driven by playwright-core) subscribes
// with EventSource to a running Factum server: history, the caught-up marker, then a live
// event appended while it listens; lastEventId carries the revision. Exits 0 when all held.
import { launch } from './chromium.mjs';

const url = process.argv[2];
const fail = (msg) => { console.error('eventsource: ' + msg); process.exit(1); };
const append = async (type) => {
  const r = await fetch(`${url}/streams/web-1`, {
    method: 'POST', headers: { 'Content-Type': 'application/cloudevents+json' },
    body: JSON.stringify({ type, data: { from: 'node' } }),
  });
  if (r.status !== 201) fail(`append answered ${r.status}`);
};

await append('Before');
await append('Before');
const browser = await launch();
try {
  const page = await browser.newPage();
  await page.goto(`${url}/`);
  // Subscribe in the page; resolve once history, caught-up and one live event arrived.
  const done = page.evaluate(() => new Promise((resolve, reject) => {
    const seen = [];
    const es = new EventSource('/streams/web-1');
    const take = (e) => {
      seen.push({ type: e.type, id: e.lastEventId, data: JSON.parse(e.data) });
      if (e.type === 'Live') { es.close(); resolve(seen); }
    };
    for (const t of ['Before', 'Live', 'caught-up']) es.addEventListener(t, take);
    es.onerror = () => { if (es.readyState === EventSource.CLOSED) reject(new Error('EventSource closed')); };
    setTimeout(() => reject(new Error('timed out: ' + JSON.stringify(seen))), 10000);
  }));
  // Give the page time to catch up, then append live.
  await new Promise((r) => setTimeout(r, 1000));
  await append('Live');
  const seen = await done;
  const kinds = seen.map((s) => s.type).join(',');
  if (kinds !== 'Before,Before,caught-up,Live') fail(`events were ${kinds}`);
  if (seen[0].id !== '0' || seen[1].id !== '1' || seen[3].id !== '2') fail(`ids were ${seen.map((s) => s.id)}`);
  if (seen[3].data.stream !== 'web-1' || seen[3].data.revision !== 2) fail(`live event ${JSON.stringify(seen[3].data)}`);
  console.log('eventsource: ok');
} finally {
  await browser.close();
}
