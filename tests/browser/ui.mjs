// ui.mjs URL SHOTS — the dashboard in a real browser (Debian chromium, driven by playwright-core)
// against a fresh Factum server. For each page: data made here through the HTTP API, the page
// opened, what it shows asserted; no console error on any page (but the 401s and 403s the auth
// steps provoke); axe-core finds no serious or critical accessibility violation; a screenshot of
// each page is written to SHOTS. Exits 0 with "ui: ok" when everything held.
import { readFileSync, mkdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { launch } from './chromium.mjs';

const [url, shots] = process.argv.slice(2);
rmSync(shots, { recursive: true, force: true }); // this run's pictures only
mkdirSync(shots, { recursive: true });
const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const fail = (msg) => {
  throw new Error(msg);
};
let token = '';
async function api(method, path, body, status) {
  const headers = { 'Content-Type': 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  const r = await fetch(url + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  if (status && r.status !== status) fail(`${method} ${path}: ${r.status} (wanted ${status}) ${text}`);
  return text ? JSON.parse(text) : null;
}

const browser = await launch();
const errors = [];
let expected = null; // the refusals a step provokes on purpose: 'status of 401', ...
const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
const page = await context.newPage();
page.setDefaultTimeout(30000); // generous: CI machines are shared and slow under load
page.on('console', (m) => {
  if (m.type() !== 'error') return;
  if (expected && m.text().includes(expected)) return;
  errors.push(`${page.url()}: ${m.text()}`);
});
page.on('pageerror', (e) => errors.push(`${page.url()}: ${e.message}`));

const step = async (name, fn) => {
  try {
    await fn();
  } catch (e) {
    await page.screenshot({ path: `${shots}/failed-${name}.png`, fullPage: true }).catch(() => {});
    throw new Error(`${name}: ${e.message}`);
  }
};
const shot = async (name) => {
  await page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
  await page.evaluate(axeSource);
  const res = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  const bad = res.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  if (bad.length) fail(`accessibility (${name}): ${bad.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target).join(' ')})`).join('; ')}`);
};
const go = async (hash) => {
  await page.goto(`${url}/ui/${hash}`);
};
const texts = (sel) => page.locator(sel).allInnerTexts();

try {
  // ---- data, through the API ----
  await api('POST', '/streams/order-1', [
    { id: 'o1-placed', type: 'OrderPlaced', correlationid: 'corr-1', data: { orderId: 'o1', total: 5 } },
    { id: 'o1-paid', type: 'OrderPaid', correlationid: 'corr-1', causationid: 'o1-placed', data: { orderId: 'o1' } },
    { id: 'o1-shipped', type: 'OrderShipped', correlationid: 'corr-1', causationid: 'o1-paid', data: { orderId: 'o1' } },
  ], 201);
  await api('POST', '/streams/payment-1', { id: 'p1-taken', type: 'PaymentTaken', correlationid: 'corr-1', causationid: 'o1-placed', data: { amount: 5 } }, 201);
  await api('POST', '/streams/order-2', { type: 'OrderPlaced', data: { orderId: 'o2', total: 7 } }, 201);
  const { version } = await api('GET', '/', undefined, 200);

  await step('overview', async () => {
    await page.goto(`${url}/`); // a browser at / is sent to the dashboard
    if (!page.url().endsWith('/ui/')) fail(`/ led to ${page.url()}`);
    await page.getByRole('heading', { name: 'Overview' }).waitFor();
    await page.locator('[data-figure=version] dd', { hasText: version }).waitFor();
    await page.locator('.badge.ok').waitFor();
    const events = Number((await page.locator('[data-figure=events] dd').innerText()).replace(/,/g, ''));
    if (!(events >= 5)) fail(`events shows ${events}`);
    const streams = Number((await page.locator('[data-figure=streams] dd').innerText()).replace(/,/g, ''));
    if (!(streams >= 3)) fail(`streams shows ${streams}`); // order-1, order-2, payment-1 (and no system stream yet)
    await page.locator('figcaption', { hasText: 'Append rate' }).waitFor();
    await page.locator('svg.chart polyline[points*=","]').first().waitFor({ state: 'attached' }); // two samples drawn
    await shot('overview');
  });

  await step('streams', async () => {
    await go('#/streams');
    await page.getByRole('link', { name: 'payment-1' }).waitFor();
    const all = await texts('tbody tr td:first-child');
    for (const s of ['order-1', 'order-2', 'payment-1']) if (!all.includes(s)) fail(`listing lacks ${s}: ${all}`);
    await page.getByLabel('Category').selectOption('order');
    await page.getByRole('button', { name: 'Show' }).click();
    await page.waitForFunction(() => location.hash === '#/streams?category=order');
    await page.locator('caption', { hasText: '2 streams' }).waitFor();
    const order = await texts('tbody tr td:first-child');
    if (order.join() !== 'order-1,order-2') fail(`category order lists ${order}`);
    await shot('streams');
  });

  await step('stream', async () => {
    await go('#/stream/order-1');
    await page.locator('tr.event').nth(2).waitFor();
    let types = await texts('tr.event td:nth-child(3)');
    if (types.join() !== 'OrderShipped,OrderPaid,OrderPlaced') fail(`newest first: ${types}`);
    await page.getByRole('link', { name: 'Show oldest first' }).click();
    await page.getByRole('heading', { name: 'Events, oldest first' }).waitFor();
    await page.locator('tr.event').nth(2).waitFor();
    types = await texts('tr.event td:nth-child(3)');
    if (types.join() !== 'OrderPlaced,OrderPaid,OrderShipped') fail(`oldest first: ${types}`);
    await shot('stream');
  });

  await step('event', async () => {
    await go('#/event/payment-1/0');
    await page.getByRole('heading', { name: /Correlation/ }).waitFor();
    const line = await texts('.timeline li');
    const want = ['OrderPlaced in order-1', 'OrderPaid in order-1', 'OrderShipped in order-1', 'PaymentTaken in payment-1'];
    if (line.length !== 4 || want.some((w, i) => !line[i].includes(w))) fail(`timeline: ${line.join(' | ')}`);
    if (!line[3].includes('(this event)')) fail(`this event not marked: ${line[3]}`);
    await shot('event');
    await page.getByRole('link', { name: 'OrderPlaced in order-1@0' }).click(); // the cause
    await page.waitForFunction(() => location.hash === '#/event/order-1/0');
    await page.getByRole('heading', { name: 'Caused', exact: true }).waitFor();
    const caused = await texts('h2:text-is("Caused") + ul li');
    if (caused.join() !== 'OrderPaid in order-1@1,PaymentTaken in payment-1@0') fail(`caused: ${caused}`);
  });

  await step('delete', async () => {
    await go('#/stream/order-2');
    await page.locator('tr.event').first().waitFor();
    await page.getByRole('button', { name: 'Delete…' }).click();
    const dialog = page.getByRole('dialog');
    if (!(await dialog.innerText()).includes('"order-2"')) fail(`the confirmation does not name the stream: ${await dialog.innerText()}`);
    await dialog.getByRole('button', { name: 'Delete order-2' }).click();
    await page.waitForFunction(() => location.hash === '#/streams');
    const r = await fetch(`${url}/streams/order-2`);
    if (r.status !== 404) fail(`order-2 after the delete: ${r.status}`);
  });

  await step('tail', async () => {
    await go('#/tail?type=Wanted');
    await page.locator('.state.live').waitFor();
    await api('POST', '/streams/tail-1', { type: 'Unwanted', data: {} }, 201);
    await api('POST', '/streams/tail-1', { type: 'Wanted', data: { n: 1 } }, 201);
    await page.locator('tr.event', { hasText: 'Wanted' }).waitFor();
    const types = await texts('tr.event td:nth-child(4)');
    if (types.join() !== 'Wanted') fail(`type filter showed ${types}`);
    // Paused: what arrives is drawn on resume.
    await go('#/tail?keep=10');
    await page.locator('.state.live').waitFor();
    await page.getByRole('button', { name: 'Pause' }).click();
    await api('POST', '/streams/tail-2', Array.from({ length: 15 }, (_, i) => ({ type: `Burst${i}`, data: { i } })), 201);
    await page.getByRole('button', { name: 'Resume' }).click();
    await page.locator('tr.event', { hasText: 'Burst14' }).waitFor();
    const kept = await texts('tr.event td:nth-child(4)');
    if (kept.length !== 10 || kept[0] !== 'Burst14' || kept[9] !== 'Burst5') fail(`kept rows: ${kept}`);
    await shot('tail');
  });

  await step('groups', async () => {
    await api('PUT', '/groups/work', { source: { stream: 'task-1' }, start: 'earliest' }, 201);
    await api('POST', '/streams/task-1', [{ type: 'Task', data: { n: 1 } }, { type: 'Task', data: { n: 2 } }], 201);
    const got = await api('POST', '/groups/work/messages?max=2&wait_ms=5000', undefined, 200);
    if (got.length !== 2) fail(`pulled ${got.length}`);
    await api('POST', '/groups/work/nack', { delivery_ids: got.map((d) => d.delivery_id), action: 'park', reason: 'bad payload' }, 200);
    await go('#/groups');
    await page.getByRole('link', { name: 'work' }).waitFor();
    await page.locator('tbody tr', { hasText: 'stream task-1' }).waitFor();
    await shot('groups');
    await go('#/group/work');
    await page.locator('tr.parked').nth(1).waitFor();
    if ((await page.locator('[data-figure=parked]').innerText()).trim()[0] !== '2') fail('parked count');
    if (!(await page.locator('tr.parked').first().innerText()).includes('bad payload')) fail('no reason shown');
    await shot('group');
    // Replay the first (revision 0) from the page: a member gets it again.
    await page.getByRole('checkbox', { name: 'choose 0' }).check();
    await page.getByRole('button', { name: 'Replay chosen' }).click();
    await page.getByRole('status').filter({ hasText: '1 replayed' }).waitFor();
    const again = await api('POST', '/groups/work/messages?max=1&wait_ms=5000', undefined, 200);
    if (again.length !== 1 || again[0].event.revision !== 0 || again[0].event.data.n !== 1) fail(`after the replay: ${JSON.stringify(again)}`);
    // Delete the other one from the page.
    await page.locator('tr.parked', { hasText: 'task-1@1' }).getByRole('button', { name: 'Delete…' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Delete' }).click();
    await page.getByText('No parked messages.').waitFor();
    const left = await api('GET', '/groups/work/parked', undefined, 200);
    if (left.length !== 0) fail(`parked after the delete: ${JSON.stringify(left)}`);

    // A group made from the form: a bad source is refused and shown, nothing made; then made.
    await go('#/groups');
    await page.getByText('New group').click();
    await page.getByLabel('Name', { exact: true }).fill('made');
    await page.getByLabel('Source', { exact: true }).selectOption('stream');
    await page.getByLabel(/^Stream or category/).fill('');
    await page.getByLabel('Max deliveries').fill('3');
    expected = 'status of 400';
    await page.getByRole('button', { name: 'Create group' }).click();
    await page.locator('main .problem', { hasText: '400' }).waitFor();
    expected = null;
    await api('GET', '/groups/made', undefined, 404);
    await page.getByLabel('Source', { exact: true }).selectOption('category');
    await page.getByLabel(/^Stream or category/).fill('order');
    await page.getByRole('button', { name: 'Create group' }).click();
    await page.getByRole('heading', { name: 'Consumer group made' }).waitFor();
    let made = await api('GET', '/groups/made', undefined, 200);
    if (made.source.category !== 'order' || made.max_deliveries !== 3) fail(`made from the form: ${JSON.stringify(made)}`);
    const fromMade = await api('POST', '/groups/made/messages?max=10&wait_ms=5000', undefined, 200);
    if (fromMade.length !== 3 || fromMade.some((d) => d.event.stream !== 'order-1')) // order-2 was deleted above
      fail(`the made group delivered ${JSON.stringify(fromMade)}`);
    // Edited from its page: the source is fixed, the settings change.
    await page.getByText('Edit settings').click();
    if (!(await page.getByLabel('Source', { exact: true }).isDisabled())) fail('the source of a group can be edited');
    await page.getByLabel('Max deliveries').fill('5');
    await page.getByLabel('Ack timeout (ms)').fill('2500');
    await page.getByRole('button', { name: 'Save settings' }).click();
    await page.getByRole('status').filter({ hasText: 'settings saved' }).waitFor();
    made = await api('GET', '/groups/made', undefined, 200);
    if (made.max_deliveries !== 5 || made.ack_timeout_ms !== 2500 || made.source.category !== 'order') fail(`edited from the form: ${JSON.stringify(made)}`);
    await shot('group-form');
  });

  await step('timers', async () => {
    const t = await api('POST', '/schedules', { at: '2999-01-01T00:00:00Z', stream: 'later-1', event: { type: 'Reminder' } }, 201);
    await go('#/timers');
    const row = page.locator('tbody tr', { hasText: t.id });
    await row.waitFor();
    if (!(await row.innerText()).includes('Reminder')) fail('no event type');
    await shot('timers');
    await row.getByRole('button', { name: 'Cancel…' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Cancel timer' }).click();
    await row.waitFor({ state: 'detached' });
    const after = await api('GET', `/schedules/${t.id}`, undefined, 200);
    if (after.state !== 'cancelled') fail(`timer after cancel: ${JSON.stringify(after)}`);
  });

  await step('projections', async () => {
    await api('PUT', '/projections/orders', { source: { categories: ['order'] }, setup: ['CREATE TABLE orders (id TEXT PRIMARY KEY, total INTEGER)'], handlers: { OrderPlaced: ['INSERT OR REPLACE INTO orders VALUES (:data.orderId, :data.total)'] } }, 201);
    await go('#/projections');
    const row = page.locator('tbody tr', { hasText: 'orders' });
    await row.waitFor();
    const before = (await api('GET', '/projections/orders', undefined, 200)).applied;
    await row.getByRole('button', { name: 'Reset…' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Reset orders' }).click();
    // Rebuilt: it applied the category's events again (a reset runner counts from its start).
    for (let i = 0; ; i++) {
      const p = await api('GET', '/projections/orders', undefined, 200);
      if (p.status === 'running' && !p.rebuilding && p.lag_events === 0 && p.applied >= 1) break;
      if (i > 200) fail(`after reset: ${JSON.stringify(p)} (applied before: ${before})`);
      await new Promise((r) => setTimeout(r, 50));
    }
    await page.getByLabel('SQL (read only)').fill('SELECT id, total FROM orders ORDER BY id');
    await page.getByRole('button', { name: 'Run' }).click();
    await page.locator('td', { hasText: '"o1"' }).waitFor();
    await shot('projections');
  });

  await step('sagas', async () => {
    // An instance whose second step fails: the first step's compensation runs.
    await api('PUT', '/sagas/ship', {
      start_on: 'ShipStarted', instance_id: 'data.id',
      steps: [
        { name: 'pay', command: { stream: 'pay-cmds', type: 'Pay', data: { id: '{{data.id}}' } }, success: ['PaymentOk'], failure: ['PaymentNo'],
          compensation: { stream: 'pay-cmds', type: 'Refund', data: { id: '{{data.id}}' } } },
        { name: 'stock', command: { stream: 'stock-cmds', type: 'Reserve', data: { id: '{{data.id}}' } }, success: ['StockOk'], failure: ['StockOut'] },
      ],
    }, 201);
    await api('POST', '/streams/ship-1', { type: 'ShipStarted', data: { id: 's1' } }, 201);
    const until = async (what, ok) => {
      for (let i = 0; ; i++) {
        const x = await api('GET', '/sagas/ship/instances/s1');
        if (x && ok(x)) return;
        if (i > 400) fail(`saga never ${what}: ${JSON.stringify(x)}`);
        await new Promise((r) => setTimeout(r, 25));
      }
    };
    await until('waited for pay', (x) => x.step === 'pay');
    await api('POST', '/streams/pay-replies', { type: 'PaymentOk', correlationid: 's1', data: {} }, 201);
    await until('waited for stock', (x) => x.step === 'stock');
    await api('POST', '/streams/stock-replies', { type: 'StockOut', correlationid: 's1', data: {} }, 201);
    await until('failed', (x) => x.status === 'failed');
    await go('#/sagas');
    await page.getByRole('link', { name: 'ship' }).waitFor();
    await shot('sagas');
    await page.getByRole('link', { name: 'ship' }).click();
    // Its definition: what starts it and each step with its command, replies and compensation.
    await page.locator('tr.step', { hasText: 'Refund → pay-cmds' }).waitFor();
    const steps = await texts('tr.step td:nth-child(2)');
    if (steps.join() !== 'pay,stock') fail(`saga steps shown: ${steps}`);
    if (!(await page.locator('tr.step').nth(1).innerText()).includes('StockOut')) fail('the second step\'s failure reply is not shown');
    await shot('saga-definition');
    await page.getByRole('link', { name: 's1' }).click();
    await page.locator('.timeline li.compensation', { hasText: 'CompensationStarted' }).waitFor();
    const kinds = (await texts('.timeline li strong')).join();
    if (!/SagaStarted.*StepSucceeded.*StepFailed.*CompensationStarted.*SagaFailed/.test(kinds)) fail(`saga timeline: ${kinds}`);
    await shot('saga');
  });

  await step('admin', async () => {
    await go('#/admin');
    // A dry run first: it counts what a scavenge would give back, as the API says, and the
    // overview shows the estimate.
    await page.getByRole('button', { name: 'Estimate reclaimable space' }).click();
    await page.locator('[data-figure=scavenge]', { hasText: 'finished (dry run' }).waitFor();
    const est = await api('GET', '/admin/scavenge', undefined, 200);
    if (!est.dry_run) fail(`after the estimate: ${JSON.stringify(est)}`);
    await page.locator('[data-figure=reclaimable]', { hasText: `${est.events_removed} events` }).waitFor();
    await go('#/');
    const reclaimable = await page.locator('[data-figure=reclaimable] dd').innerText();
    if (/not estimated/.test(reclaimable)) fail(`the overview's reclaimable after an estimate: ${reclaimable}`);
    await go('#/admin');
    await page.getByRole('button', { name: 'Start a scavenge' }).click();
    await page.locator('[data-figure=scavenge]', { hasText: /^finished$/ }).waitFor();
    // The first key turns keys on: made from the page, its token shown once.
    await page.getByLabel('Name').fill('ui-admin');
    expected = 'status of 401'; // the page's own refresh after it, without a key yet, is refused (and shown)
    await page.getByRole('button', { name: 'Create key' }).click();
    token = (await page.locator('[data-token]').innerText()).trim();
    if (!/^fk_[0-9a-f]{12}_[0-9a-f]{64}$/.test(token)) fail(`token shown: ${token}`);
    const reader = await api('POST', '/admin/keys', { role: 'reader', name: 'ui-reader' }, 201);
    // The page has no key yet: the next load is refused and asks for one.
    await page.reload();
    await page.getByRole('heading', { name: 'This server wants an API key' }).waitFor();
    await page.locator('main .problem', { hasText: '401' }).first().waitFor();
    await shot('login');
    await page.getByRole('textbox', { name: 'API key', exact: true }).fill(token);
    await page.getByRole('button', { name: 'Use this key' }).click();
    expected = null;
    await page.locator('tr.key', { hasText: 'ui-reader' }).waitFor();
    await page.locator('tbody tr', { hasText: 'POST /admin/keys' }).first().waitFor(); // the audit trail
    await shot('admin');
    await page.locator('tr.key', { hasText: 'ui-reader' }).getByRole('button', { name: 'Revoke…' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Revoke' }).click();
    await page.locator('tr.key', { hasText: 'ui-reader' }).filter({ hasText: 'revoked' }).waitFor();
    const keys = await api('GET', '/admin/keys', undefined, 200);
    if (!keys.find((k) => k.id === reader.id)?.revoked) fail('the reader key is not revoked');
    // A key without the permission: the 403 is shown, with the permission it lacks.
    const weak = await api('POST', '/admin/keys', { role: 'reader', name: 'weak' }, 201);
    await page.evaluate((t) => sessionStorage.setItem('factum.token', t), weak.token);
    expected = 'status of 403';
    await page.reload();
    await page.locator('main .problem', { hasText: "403 Forbidden this key does not have the permission 'admin'" }).first().waitFor();
    // What the key may not do is disabled in advance, with the reason (GET /whoami).
    await page.locator('p.lacks', { hasText: "does not have the permission 'operate'" }).waitFor();
    if (!(await page.getByRole('button', { name: 'Start a scavenge' }).isDisabled())) fail('a reader may start a scavenge');
    if (!(await page.getByRole('button', { name: 'Create key' }).isDisabled())) fail('a reader may make keys');
    await page.locator('p.lacks', { hasText: "does not have the permission 'admin'" }).waitFor();
    await go('#/stream/order-1');
    await page.locator('p.lacks', { hasText: "this key (reader weak) does not have the permission 'operate'" }).waitFor();
    if (!(await page.getByRole('button', { name: 'Delete…' }).isDisabled())) fail('a reader may delete a stream');
    await shot('disabled');
    expected = null;
    await page.evaluate((t) => sessionStorage.setItem('factum.token', t), token);
    await go('#/');
    await page.locator('.badge.ok').waitFor();
  });

  if (errors.length) fail(`console errors:\n  ${errors.join('\n  ')}`);
  console.log('ui: ok');
} catch (e) {
  console.error('ui: ' + e.message);
  if (errors.length) console.error('console errors:\n  ' + errors.join('\n  '));
  process.exitCode = 1;
} finally {
  await browser.close();
}
