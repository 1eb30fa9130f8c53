// cors.mjs FACTUM_URL PAGE_PORT — a real browser (Debian chromium, driven by playwright-core)
// calls a Factum server from pages of two other origins served here on PAGE_PORT: the server
// was started with --cors-origin http://localhost:PAGE_PORT, so a page of that origin may
// append (after a preflight) and subscribe with EventSource; a page of http://127.0.0.1:PAGE_PORT
// may not: its fetch fails, and a no-cors "simple" POST, which a browser sends without asking,
// is refused by the server and writes nothing. Exits 0 when all held.
import http from 'node:http';
import { launch } from './chromium.mjs';

const [factum, pagePort] = [process.argv[2], Number(process.argv[3])];
const fail = (msg) => { console.error('cors: ' + msg); process.exit(1); };
const pages = http.createServer((req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/html' });
  res.end('<!doctype html><title>another origin</title>');
});
await new Promise((resolve) => pages.listen(pagePort, resolve));

const browser = await launch();
try {
  const page = await browser.newPage();
  // The listed origin: a JSON append needs a preflight, then the answer is readable.
  await page.goto(`http://localhost:${pagePort}/`);
  const listed = await page.evaluate(async (url) => {
    const r = await fetch(`${url}/streams/cors-1`, {
      method: 'POST', headers: { 'Content-Type': 'application/cloudevents+json' },
      body: JSON.stringify({ type: 'FromPage', data: { ok: true } }),
    });
    const body = await r.json();
    const seen = await new Promise((resolve, reject) => {
      const es = new EventSource(`${url}/streams/cors-1`);
      es.addEventListener('FromPage', (e) => { es.close(); resolve(e.lastEventId); });
      es.onerror = () => { es.close(); reject(new Error('EventSource failed')); };
      setTimeout(() => reject(new Error('EventSource timed out')), 10000);
    });
    return { status: r.status, revision: body.revision ?? body.next_expected_revision, seen };
  }, factum);
  if (listed.status !== 201) fail(`listed origin: append answered ${listed.status}`);
  if (listed.seen !== '0') fail(`listed origin: EventSource saw id ${listed.seen}`);

  // An unlisted origin: the fetch fails in the page, and nothing is written.
  await page.goto(`http://127.0.0.1:${pagePort}/`);
  const unlisted = await page.evaluate(async (url) => {
    let fetchError = null;
    try {
      await fetch(`${url}/streams/cors-1`, {
        method: 'POST', headers: { 'Content-Type': 'application/cloudevents+json' },
        body: JSON.stringify({ type: 'Forged', data: {} }),
      });
    } catch (e) { fetchError = String(e); }
    // A "simple" request goes out without a preflight; the page cannot read the answer.
    await fetch(`${url}/streams/cors-1`, {
      method: 'POST', mode: 'no-cors', headers: { 'Content-Type': 'text/plain' },
      body: JSON.stringify({ type: 'Forged', data: {} }),
    }).catch(() => {});
    return { fetchError };
  }, factum);
  if (!unlisted.fetchError) fail('unlisted origin: the cross-origin fetch succeeded');

  const all = await (await fetch(`${factum}/streams/cors-1`)).json();
  const types = (all.events ?? all).map((e) => e.type).join(',');
  if (types !== 'FromPage') fail(`stream holds ${types}`);
  console.log('cors: ok');
} finally {
  await browser.close();
  pages.close();
}
