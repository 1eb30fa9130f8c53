// requests.mjs — the requests of the contract test (contract.mjs), sent in this order to a
// fresh server. One entry a request:
//
//   { method, path, status,             what to send, and the status it must answer
//     headers: {...}, body: obj|string, optional; an object body goes as application/json
//     sse: true,                        Accept: text/event-stream; the first event is enough
//     until: 'text',                    ask again until the answer has `status` and holds text
//     save: 'name' }                    keep the answer's JSON as <<name...>> for later entries
//
// "<<name.a.0.b>>" in a path, header or body is member a, item 0, member b of the answer saved
// as name (percent-encoded). Every operation of docs/openapi.yaml needs at least one entry, and
// every status it declares an entry that provokes it, or a line in `unreachable` saying why no
// test can. Adding an operation to the file is adding its entries here.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import YAML from 'yaml';

// Where POST /admin/backup copies to: a new folder of this run's, removed when it ends.
const BACKUP_BASE = mkdtempSync(`${tmpdir()}/factum-contract-`);
process.on('exit', () => rmSync(BACKUP_BASE, { recursive: true, force: true }));

const ADMIN = { Authorization: 'Bearer <<admin.token>>' };
const WEAK = { Authorization: 'Bearer <<weak.token>>' };
const SLOW = { Authorization: 'Bearer <<slow.token>>' };
const NOKEY = { Authorization: 'Bearer fk_000000000000_0000000000000000000000000000000000000000000000000000000000000000' };
const CE = { 'Content-Type': 'application/cloudevents+json' };
const BATCH = { 'Content-Type': 'application/cloudevents-batch+json' };
const INVOICE = { type: 'object', required: ['amount'], properties: { amount: { type: 'number', minimum: 0 } } };
const placed = (id, orderId) => ({ specversion: '1.0', id, type: 'OrderPlaced', data: { orderId, total: 5 } });

export default [
  { method: 'GET', path: '/', status: 200 },
  { method: 'GET', path: '/', headers: { Accept: 'text/html' }, status: 303 },

  // ---- the dashboard ----
  { method: 'GET', path: '/ui/', status: 200 },
  { method: 'GET', path: '/ui/', headers: { 'If-None-Match': '*' }, status: 304 },
  { method: 'GET', path: '/ui/app.js', status: 200 },
  { method: 'GET', path: '/ui/app.css', headers: { 'Accept-Encoding': 'gzip' }, status: 200 },
  { method: 'GET', path: '/ui/app.js', headers: { 'If-None-Match': '*' }, status: 304 },
  { method: 'GET', path: '/ui/nosuch.js', status: 404 },

  // ---- appends ----
  { method: 'POST', path: '/streams/order-1', headers: CE, body: placed('e-1', 'o1'), status: 201 },
  { method: 'POST', path: '/streams/order-1', headers: CE, body: placed('e-1', 'o1'), status: 200 }, // idempotent repeat
  { method: 'POST', path: '/streams/order-1', headers: { ...CE, 'If-Match': '"0"' }, body: { type: 'OrderPaid', data: { orderId: 'o1' } }, status: 201 },
  { method: 'POST', path: '/streams/order-2', headers: BATCH, body: [placed('e-2', 'o2'), { type: 'OrderPaid', data: { orderId: 'o2' } }], status: 201 },
  { method: 'POST', path: '/streams/order-3', body: placed('e-3', 'o3'), status: 201 },
  { method: 'POST', path: '/streams/note-1', headers: { 'ce-type': 'NoteTaken', 'ce-id': 'n-1', 'Content-Type': 'text/plain' }, body: 'hello', status: 201 },
  { method: 'POST', path: '/streams/order-1', headers: CE, body: '{"type":', status: 400 },
  { method: 'POST', path: '/streams/$system', headers: CE, body: { type: 'A' }, status: 400 },
  { method: 'POST', path: '/streams/order-1', headers: CE, body: { id: 'e-1', type: 'Other' }, status: 409 },
  { method: 'POST', path: '/streams/order-1', headers: { ...CE, 'If-Match': '"0"' }, body: { type: 'A' }, status: 412 },
  { method: 'POST', path: '/streams/order-1', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ type: 'Big', data: 'x'.repeat(1100000) }), status: 413 },
  { method: 'POST', path: '/streams/order-1', headers: { 'Content-Type': 'text/plain' }, body: 'no', status: 415 },

  // ---- reads ----
  { method: 'GET', path: '/streams/order-1', status: 200 },
  { method: 'GET', path: '/streams/order-1?from=0&limit=1&direction=forward', status: 200 },
  { method: 'GET', path: '/streams/order-1?limit=0', status: 400 },
  { method: 'GET', path: '/streams/nosuch-1', status: 404 },
  { method: 'GET', path: '/streams/order-1', sse: true, status: 200 },
  { method: 'HEAD', path: '/streams/order-1', status: 200 },
  { method: 'HEAD', path: '/streams/nosuch-1', status: 404 },
  { method: 'GET', path: '/all?limit=2&type=OrderPlaced', status: 200 },
  { method: 'GET', path: '/all?limit=0', status: 400 },
  { method: 'GET', path: '/all', sse: true, status: 200 },

  // ---- tag queries and conditional appends (docs/dcb.md) ----
  { method: 'POST', path: '/events', body: { events: [{ id: 'u-1', type: 'UserRegistered', stream: 'user-1', tags: ['username:ann'], data: {} }], condition: { failIfEventsMatch: { items: [{ types: ['UserRegistered'], tags: ['username:ann'] }] } } }, status: 201 },
  { method: 'POST', path: '/events', body: { events: [{ id: 'u-1', type: 'UserRegistered', stream: 'user-1', tags: ['username:ann'], data: {} }] }, status: 200 },
  { method: 'POST', path: '/events', body: { events: [{ type: 'UserRegistered', stream: 'user-2', tags: ['username:ann'] }], condition: { failIfEventsMatch: { items: [{ types: ['UserRegistered'], tags: ['username:ann'] }] } } }, status: 409 },
  { method: 'POST', path: '/events', body: { events: [{ type: 'UserRegistered', stream: 'user-1' }], expected_revision: 'no_stream' }, status: 412 },
  { method: 'POST', path: '/events', body: { events: [{ type: 'A', stream: 'multi-1' }, { type: 'B', stream: 'multi-2' }], expected_revision: { 'multi-1': 'no_stream' } }, status: 201 },
  { method: 'POST', path: '/events', body: { events: [{ type: 'T', stream: 'user-3' }], condition: { failIfEventsMatch: { items: [] } } }, status: 400 },
  { method: 'POST', path: '/events', body: { events: [{ type: 'T', stream: 'user-3', tags: Array.from({ length: 33 }, (_, i) => `t${i}`) }] }, status: 413 },
  { method: 'GET', path: `/events?limit=5&query=${encodeURIComponent(JSON.stringify({ items: [{ tags: ['username:ann'] }] }))}`, status: 200 },
  { method: 'GET', path: '/events?query=%7B%7D', status: 400 },
  { method: 'GET', path: `/events?query=${encodeURIComponent(JSON.stringify({ items: [{ tags: ['username:ann'] }] }))}`, sse: true, status: 200 },
  { method: 'POST', path: '/dcb/append', body: { events: [{ type: 'CourseDefined', tags: ['course:c1'], data: { capacity: 2 } }] }, status: 200 },
  { method: 'POST', path: '/dcb/append', body: { events: { type: 'CourseDefined', tags: ['course:c1'] }, condition: { failIfEventsMatch: { items: [{ tags: ['course:c1'] }] } } }, status: 200 },
  { method: 'POST', path: '/dcb/append', body: { events: [] }, status: 400 },
  { method: 'POST', path: '/dcb/append', body: { events: { type: 'T', tags: Array.from({ length: 33 }, (_, i) => `t${i}`) } }, status: 413 },
  { method: 'GET', path: `/dcb/read?query=${encodeURIComponent(JSON.stringify({ items: [{ tags: ['course:c1'] }] }))}&options=${encodeURIComponent(JSON.stringify({ limit: 5 }))}`, status: 200 },
  { method: 'GET', path: '/dcb/read', status: 200 },
  { method: 'GET', path: '/dcb/read?options=%7B%22limit%22%3A0%7D', status: 400 },

  // ---- listings ----
  { method: 'GET', path: '/streams?limit=2', status: 200, save: 'streams' },
  { method: 'GET', path: '/streams?after=<<streams.1.stream>>&limit=2', status: 200 },
  { method: 'GET', path: '/streams?category=order&system=false', status: 200 },
  { method: 'GET', path: '/streams?prefix=%24&system=true', status: 200 },
  { method: 'GET', path: '/streams?limit=1001', status: 400 },
  { method: 'GET', path: '/streams?prefix=a&category=b', status: 400 },
  { method: 'GET', path: '/categories', status: 200 },
  { method: 'GET', path: '/categories?after=note&limit=1&system=true', status: 200 },
  { method: 'GET', path: '/categories?limit=0', status: 400 },

  // ---- snapshots ----
  { method: 'PUT', path: '/streams/order-1/snapshot', body: { revision: 0, state: { total: 5 } }, status: 201 },
  { method: 'PUT', path: '/streams/order-1/snapshot', body: { revision: 99, state: {} }, status: 400 },
  { method: 'PUT', path: '/streams/nosuch-1/snapshot', body: { revision: 0, state: {} }, status: 404 },
  { method: 'GET', path: '/streams/order-1/snapshot', status: 200 },
  { method: 'GET', path: '/streams/order-2/snapshot', status: 404 },
  { method: 'GET', path: '/streams/%24all/snapshot', status: 400 },
  { method: 'GET', path: '/streams/order-1?from=snapshot', status: 200 },

  // ---- metadata and deletion ----
  { method: 'GET', path: '/streams/order-1/metadata', status: 200 },
  { method: 'GET', path: '/streams/bad%2/metadata', status: 400 },
  { method: 'PUT', path: '/streams/order-1/metadata', body: { max_count: 100, custom: { owner: 'sales' } }, status: 200 },
  { method: 'PUT', path: '/streams/order-1/metadata', body: { max_count: -1 }, status: 400 },
  { method: 'PUT', path: '/streams/order-1/metadata', body: { custom: { big: 'x'.repeat(70000) } }, status: 413 },
  { method: 'DELETE', path: '/streams/order-3', headers: { 'If-Match': '"7"' }, status: 412 },
  { method: 'DELETE', path: '/streams/order-3', status: 200 },
  { method: 'DELETE', path: '/streams/nosuch-1', status: 404 },
  { method: 'DELETE', path: '/streams/order-3?tombstone=maybe', status: 400 },
  { method: 'POST', path: '/streams/gone-1', headers: CE, body: { type: 'A' }, status: 201 },
  { method: 'DELETE', path: '/streams/gone-1?tombstone=true', status: 200 },
  { method: 'DELETE', path: '/streams/gone-1', status: 410 },
  { method: 'GET', path: '/streams/gone-1', status: 410 },
  { method: 'HEAD', path: '/streams/gone-1', status: 410 },
  { method: 'POST', path: '/streams/gone-1', headers: CE, body: { type: 'A' }, status: 410 },
  { method: 'PUT', path: '/streams/gone-1/metadata', body: { max_count: 1 }, status: 410 },

  // ---- durable timers ----
  { method: 'POST', path: '/schedules', body: { delay_ms: 0, stream: 'reminder-1', event: { type: 'Remind' } }, status: 201, save: 'soon' },
  { method: 'POST', path: '/schedules', body: { at: '2999-01-01T00:00:00Z', stream: 'reminder-2', event: { type: 'Remind' } }, status: 201, save: 'later' },
  { method: 'POST', path: '/schedules', body: { at: 'tomorrow', stream: 'reminder-1', event: { type: 'Remind' } }, status: 400 },
  { method: 'GET', path: '/schedules/<<soon.id>>', status: 200, until: '"state":"fired"' },
  { method: 'GET', path: '/schedules/nosuch', status: 404 },
  { method: 'GET', path: '/schedules?state=pending&limit=1', status: 200 },
  { method: 'GET', path: '/schedules?after=<<soon.id>>', status: 200 },
  { method: 'GET', path: '/schedules?state=sleeping', status: 400 },
  { method: 'POST', path: '/schedules', body: { at: '2999-01-01T00:00:00Z', stream: 'reminder-2', event: { type: 'Remind' }, repeat: 'daily' }, status: 400 },
  { method: 'DELETE', path: '/schedules/<<later.id>>', status: 200 },
  { method: 'DELETE', path: '/schedules/<<later.id>>', status: 409 },
  { method: 'DELETE', path: '/schedules/nosuch', status: 404 },

  // ---- consumer groups ----
  { method: 'PUT', path: '/groups/shipping', body: { source: { category: 'order' }, ack_timeout_ms: 30000 }, status: 201 },
  { method: 'PUT', path: '/groups/shipping', body: { source: { category: 'order' }, max_deliveries: 5 }, status: 200 },
  { method: 'PUT', path: '/groups/by-stream', body: { source: { stream: 'order-1' }, start: 'earliest' }, status: 201 },
  { method: 'PUT', path: '/groups/filtered', body: { source: { all: { types: ['OrderPlaced'] } }, start: 'latest' }, status: 201 },
  { method: 'PUT', path: '/groups/bad', body: { source: {} }, status: 400 },
  { method: 'GET', path: '/groups', status: 200 },
  { method: 'GET', path: '/groups/shipping', status: 200 },
  { method: 'GET', path: '/groups/nosuch', status: 404 },
  { method: 'POST', path: '/groups/shipping/messages?max=3&wait_ms=0', status: 200, save: 'pulled' },
  { method: 'POST', path: '/groups/shipping/messages?max=0', status: 400 },
  { method: 'POST', path: '/groups/nosuch/messages', status: 404 },
  { method: 'GET', path: '/groups/by-stream/messages?max_in_flight=5', sse: true, status: 200 },
  { method: 'GET', path: '/groups/by-stream/messages', status: 406 },
  { method: 'GET', path: '/groups/by-stream/messages?max_in_flight=0', sse: true, status: 400 },
  { method: 'GET', path: '/groups/nosuch/messages', sse: true, status: 404 },
  { method: 'POST', path: '/groups/shipping/ack', body: { delivery_ids: ['<<pulled.0.delivery_id>>'] }, status: 200 },
  { method: 'POST', path: '/groups/shipping/ack', body: { delivery_ids: ['999.1'] }, status: 409 },
  { method: 'POST', path: '/groups/shipping/ack', body: { delivery_ids: 'all' }, status: 400 },
  { method: 'POST', path: '/groups/nosuch/ack', body: { delivery_ids: ['1.1'] }, status: 404 },
  { method: 'POST', path: '/groups/shipping/nack', body: { delivery_ids: ['<<pulled.1.delivery_id>>'], action: 'park', reason: 'no stock' }, status: 200 },
  { method: 'POST', path: '/groups/shipping/nack', body: { delivery_ids: ['<<pulled.2.delivery_id>>'], action: 'park', reason: 'no stock' }, status: 200 },
  { method: 'POST', path: '/groups/shipping/nack', body: { delivery_ids: ['999.1'], action: 'retry' }, status: 409 },
  { method: 'POST', path: '/groups/shipping/nack', body: { delivery_ids: ['1.1'], action: 'explode' }, status: 400 },
  { method: 'POST', path: '/groups/nosuch/nack', body: { delivery_ids: ['1.1'], action: 'retry' }, status: 404 },
  { method: 'GET', path: '/groups/shipping/parked', status: 200, save: 'parked' },
  { method: 'GET', path: '/groups/nosuch/parked', status: 404 },
  { method: 'GET', path: '/groups/shipping/parked/<<parked.0.delivery_id>>', status: 200 },
  { method: 'GET', path: '/groups/shipping/parked/999', status: 404 },
  { method: 'POST', path: '/groups/shipping/parked/replay', body: { delivery_ids: ['<<parked.0.delivery_id>>'] }, status: 200 },
  { method: 'POST', path: '/groups/shipping/parked/replay', body: { delivery_ids: 7 }, status: 400 },
  { method: 'POST', path: '/groups/nosuch/parked/replay', body: {}, status: 404 },
  { method: 'DELETE', path: '/groups/shipping/parked/<<parked.1.delivery_id>>', status: 200 },
  { method: 'DELETE', path: '/groups/shipping/parked/999', status: 404 },
  { method: 'DELETE', path: '/groups/filtered', status: 200 },
  { method: 'DELETE', path: '/groups/nosuch', status: 404 },

  // ---- connectors ----
  { method: 'PUT', path: '/connectors/hook', body: { kind: 'http-sink', url: 'https://127.0.0.1:1/in', allow_unreachable: true, source: { category: 'order' }, secrets: ['0123456789abcdef'] }, status: 201 },
  { method: 'PUT', path: '/connectors/hook', body: { kind: 'http-sink', url: 'https://127.0.0.1:1/in', allow_unreachable: true, source: { category: 'order' }, paused: true }, status: 200 },
  { method: 'PUT', path: '/connectors/bad', body: { kind: 'http-sink', url: 'http://127.0.0.1:1/in', source: { category: 'order' } }, status: 400 },
  { method: 'GET', path: '/connectors', status: 200 },
  { method: 'GET', path: '/connectors/hook', status: 200 },
  { method: 'GET', path: '/connectors/bad.name', status: 400 },
  { method: 'GET', path: '/connectors/nosuch', status: 404 },
  { method: 'POST', path: '/connectors/hook/resume', status: 200 },
  { method: 'POST', path: '/connectors/hook/pause', status: 200 },
  { method: 'POST', path: '/connectors/nosuch/pause', status: 404 },
  { method: 'POST', path: '/connectors/nosuch/resume', status: 404 },
  { method: 'DELETE', path: '/connectors/hook', status: 200 },
  { method: 'DELETE', path: '/connectors/hook', status: 404 },

  // ---- projections ----
  {
    method: 'PUT', path: '/projections/orders', status: 201,
    body: { source: { categories: ['order'] }, setup: ['CREATE TABLE orders (id TEXT PRIMARY KEY, total INTEGER)'], handlers: { OrderPlaced: ['INSERT INTO orders VALUES (:data.orderId, :data.total)'] } },
  },
  {
    method: 'PUT', path: '/projections/orders', status: 200,
    body: { source: { categories: ['order'] }, setup: ['CREATE TABLE orders (id TEXT PRIMARY KEY, total INTEGER)'], handlers: { OrderPlaced: ['INSERT INTO orders VALUES (:data.orderId, :data.total)'] } },
  },
  {
    method: 'PUT', path: '/projections/strict', status: 201,
    body: { source: { types: ['OrderPlaced'] }, setup: ['CREATE TABLE t (v TEXT NOT NULL)'], handlers: { OrderPlaced: ['INSERT INTO t VALUES (:data.nosuch)'] } },
  },
  { method: 'PUT', path: '/projections/bad', body: { handlers: { A: ['SELEC 1'] } }, status: 400 },
  { method: 'PUT', path: '/projections/far', body: { target: { postgres: 'host=127.0.0.1 port=1 dbname=x' }, handlers: { A: ['SELECT 1'] } }, status: 503 },
  { method: 'GET', path: '/projections', status: 200 },
  { method: 'GET', path: '/projections/orders', status: 200, until: '"lag_events":0' },
  { method: 'GET', path: '/projections/strict', status: 200, until: '"status":"failed"' },
  { method: 'GET', path: '/projections/nosuch', status: 404 },
  { method: 'POST', path: '/projections/orders/query', body: { sql: 'SELECT id, total FROM orders WHERE id = :id', params: { id: 'o1' }, min_position: 0 }, status: 200 },
  { method: 'POST', path: '/projections/orders/query', body: { sql: 'DELETE FROM orders' }, status: 400 },
  { method: 'POST', path: '/projections/strict/query', body: { sql: 'SELECT 1', min_position: 1000000 }, status: 409 },
  { method: 'POST', path: '/projections/orders/query', body: { sql: 'SELECT 1', min_position: 1000000, timeout_ms: 1 }, status: 504 },
  { method: 'GET', path: '/streams/order-1?min_position=1000000&min_position_wait_ms=1', status: 503 },
  { method: 'GET', path: '/all?min_position=1000000&min_position_wait_ms=0', status: 503 },
  { method: 'POST', path: '/projections/nosuch/query', body: { sql: 'SELECT 1' }, status: 404 },
  { method: 'POST', path: '/projections/strict/reset', status: 202 },
  { method: 'POST', path: '/projections/nosuch/reset', status: 404 },
  { method: 'DELETE', path: '/projections/strict?keep_data=true', status: 200 },
  { method: 'DELETE', path: '/projections/strict', status: 404 },
  { method: 'DELETE', path: '/projections/orders?keep_data=maybe', status: 400 },

  // ---- schemas ----
  { method: 'GET', path: '/schemas', status: 200 },
  { method: 'PUT', path: '/schemas/Invoiced/versions/1?dry_run=true', body: INVOICE, status: 200 },
  { method: 'PUT', path: '/schemas/Invoiced/versions/1', body: INVOICE, status: 201 },
  { method: 'PUT', path: '/schemas/Invoiced/versions/1', body: INVOICE, status: 409 },
  { method: 'PUT', path: '/schemas/Invoiced/versions/2', body: { type: 'object', unknownKeyword: 1 }, status: 400 },
  { method: 'PUT', path: '/schemas/Invoiced/versions/2', body: { description: 'x'.repeat(300000) }, status: 413 },
  { method: 'GET', path: '/schemas/Invoiced', status: 200 },
  { method: 'GET', path: '/schemas/bad%2', status: 400 },
  { method: 'GET', path: '/schemas/Nothing', status: 404 },
  { method: 'GET', path: '/schemas/Invoiced/versions/1', status: 200 },
  { method: 'GET', path: '/schemas/Invoiced/versions/x', status: 400 },
  { method: 'GET', path: '/schemas/Invoiced/versions/9', status: 404 },
  { method: 'POST', path: '/streams/invoice-1', headers: CE, body: { type: 'Invoiced', data: { amount: 'ten' } }, status: 422 },
  { method: 'POST', path: '/streams/invoice-1', headers: CE, body: { type: 'Invoiced', data: { amount: 10 } }, status: 201 },
  { method: 'PUT', path: '/schemas/Invoiced/versions/2?compatibility=none', body: { properties: { total: { type: 'number' } } }, status: 201 },
  { method: 'PUT', path: '/schemas/Invoiced/versions/2/upcast', body: { steps: [{ op: 'rename', from: '/nosuch', to: '/total' }] }, status: 400 },
  { method: 'PUT', path: '/schemas/Invoiced/versions/9/upcast', body: { steps: [] }, status: 404 },
  { method: 'PUT', path: '/schemas/Invoiced/versions/2/upcast', body: { steps: [{ op: 'rename', from: '/amount', to: '/total' }] }, status: 201 },
  { method: 'PUT', path: '/schemas/Invoiced/versions/2/upcast', body: { steps: [] }, status: 409 },
  { method: 'GET', path: '/streams/invoice-1', status: 200, until: '"total":10' },
  { method: 'GET', path: '/streams/invoice-1?version=raw', status: 200, until: '"amount":10' },
  { method: 'GET', path: '/all?version=raw', status: 200 },

  // ---- sagas ----
  {
    method: 'PUT', path: '/sagas/fulfil', status: 201,
    body: {
      start_on: 'OrderPlaced', instance_id: 'data.orderId',
      steps: [{ name: 'pay', command: { stream: 'payment-commands', type: 'ReservePayment', data: { orderId: '{{data.orderId}}' } }, success: ['PaymentReserved'], failure: ['PaymentDeclined'] }],
    },
  },
  {
    method: 'PUT', path: '/sagas/fulfil', status: 200,
    body: {
      start_on: 'OrderPlaced', instance_id: 'data.orderId',
      steps: [{ name: 'pay', command: { stream: 'payment-commands', type: 'ReservePayment', data: { orderId: '{{data.orderId}}' } }, success: ['PaymentReserved'], failure: ['PaymentDeclined'], timeout_ms: 60000 }],
    },
  },
  { method: 'PUT', path: '/sagas/bad', body: { start_on: 'A', steps: [] }, status: 400 },
  { method: 'GET', path: '/sagas', status: 200 },
  { method: 'GET', path: '/sagas/fulfil', status: 200, until: '"running":2' }, // o1 and o2: order-3 was deleted
  { method: 'GET', path: '/sagas/nosuch', status: 404 },
  { method: 'GET', path: '/sagas/fulfil/instances?status=running', status: 200 },
  { method: 'GET', path: '/sagas/fulfil/instances?status=sleeping', status: 400 },
  { method: 'GET', path: '/sagas/nosuch/instances', status: 404 },
  { method: 'GET', path: '/sagas/fulfil/instances/o1', status: 200 },
  { method: 'GET', path: '/sagas/fulfil/instances/nosuch', status: 404 },
  { method: 'GET', path: '/sagas/fulfil/instances/bad%2', status: 400 },
  { method: 'GET', path: '/sagas/fulfil/parked', status: 200 },
  { method: 'GET', path: '/sagas/nosuch/parked', status: 404 },
  { method: 'DELETE', path: '/sagas/fulfil', status: 200 },
  { method: 'DELETE', path: '/sagas/fulfil', status: 404 },

  // ---- operations ----
  { method: 'GET', path: '/admin/scavenge', status: 200 },
  { method: 'POST', path: '/admin/scavenge?dry_run=maybe', status: 400 },
  { method: 'POST', path: '/admin/scavenge', status: 202 },
  { method: 'POST', path: '/admin/backup', body: { to: `${BACKUP_BASE}/backup`, verify: true }, status: 200 },
  { method: 'POST', path: '/admin/backup', body: { to: 'relative/folder' }, status: 400 },
  { method: 'GET', path: '/admin/archive', status: 200 },
  { method: 'POST', path: '/admin/archive', status: 200 },
  { method: 'POST', path: '/admin/archive', body: { now: true }, status: 400 },
  { method: 'GET', path: '/health', status: 200 },
  { method: 'GET', path: '/metrics', status: 200 },
  { method: 'GET', path: '/whoami', status: 200 },

  // ---- keys: last, for once a key exists every request needs one (the probes after these
  // entries then see 401 on every operation but /, /health and /metrics from loopback) ----
  { method: 'GET', path: '/admin/keys', status: 200 },
  { method: 'POST', path: '/admin/keys', body: { role: 'admin', name: 'contract' }, status: 201, save: 'admin' },
  { method: 'GET', path: '/admin/keys', status: 401 },
  { method: 'GET', path: '/admin/keys', headers: ADMIN, status: 200 },
  { method: 'POST', path: '/admin/keys', headers: ADMIN, body: { role: 'root' }, status: 400 },
  { method: 'POST', path: '/admin/keys', headers: ADMIN, body: { role: 'consumer', groups: ['none'], expires: '1d' }, status: 201, save: 'weak' },
  { method: 'POST', path: '/admin/keys', headers: ADMIN, body: { role: 'reader', streams: ['order-*'] }, status: 201, save: 'gone' },
  { method: 'DELETE', path: '/admin/keys/<<gone.id>>', headers: ADMIN, status: 200 },
  // rate limits (docs/limits.md, "Keys"): one append a second, 1000 body bytes a second; a
  // second's worth passes, more in one request is 413, more now is 429 (asked until it comes)
  { method: 'POST', path: '/admin/keys', headers: ADMIN, body: { role: 'writer', max_appends_per_second: 1, max_bytes_per_second: 1000 }, status: 201, save: 'slow' },
  { method: 'POST', path: '/streams/order-9', headers: { ...SLOW, ...CE }, body: placed('e-9', 'o9'), status: 201 },
  { method: 'POST', path: '/streams/order-9', headers: { ...SLOW, ...BATCH }, body: [placed('e-10', 'o9'), placed('e-11', 'o9')], status: 413 },
  { method: 'POST', path: '/streams/order-9', headers: { ...SLOW, ...CE }, body: { type: 'A' }, status: 429, until: 'rate-limited' },
  { method: 'PUT', path: '/streams/order-9/snapshot', headers: SLOW, body: { revision: 0, state: 'x'.repeat(1000) }, status: 413 },
  { method: 'PUT', path: '/streams/order-9/snapshot', headers: SLOW, body: { revision: 0, state: {} }, status: 429, until: 'rate-limited' },
  { method: 'POST', path: '/events', headers: SLOW, body: { events: [{ type: 'A', stream: 'order-9' }] }, status: 429, until: 'rate-limited' },
  { method: 'POST', path: '/dcb/append', headers: SLOW, body: { events: { type: 'A' } }, status: 429, until: 'rate-limited' },
  { method: 'DELETE', path: '/admin/keys/000000000000', headers: ADMIN, status: 404 },
  { method: 'GET', path: '/', headers: NOKEY, status: 401 },
  { method: 'GET', path: '/health', headers: NOKEY, status: 401 },
  { method: 'GET', path: '/metrics', headers: NOKEY, status: 401 },
  { method: 'GET', path: '/whoami', headers: NOKEY, status: 401 },
  { method: 'GET', path: '/whoami', headers: WEAK, status: 200 },
  // 403 from every operation that has one: the consumer key of group "none" asks for it (each
  // {param} is x, so no route's scope is its own).
  ...Object.entries(YAML.parse(readFileSync(new URL('../../docs/openapi.yaml', import.meta.url), 'utf8')).paths).flatMap(([t, item]) =>
    ['get', 'post', 'put', 'delete']
      .filter((m) => item[m]?.responses?.['403'])
      .map((m) => ({ method: m.toUpperCase(), path: t.replace(/\{[^}]+\}/g, 'x'), headers: WEAK, body: m === 'get' ? undefined : {}, status: 403 })),
  ),
];

// "METHOD /template STATUS": why no request here can provoke that declared answer.
export const unreachable = {
  'POST /streams/{stream} 503': 'a failed fsync (tests/test_fault.c injects one)',
  'POST /streams/{stream} 507': 'a full disk (tests/test_fault.c)',
  'POST /events 503': 'a failed fsync (tests/test_fault.c injects one)',
  'POST /events 507': 'a full disk (tests/test_fault.c)',
  'POST /dcb/append 503': 'a failed fsync (tests/test_fault.c injects one)',
  'POST /dcb/append 507': 'a full disk (tests/test_fault.c)',
  'PUT /streams/{stream}/metadata 503': 'a failed fsync (tests/test_fault.c)',
  'DELETE /streams/{stream} 503': 'a failed fsync (tests/test_fault.c)',
  'POST /groups/{group}/messages 500': 'a damaged event in the log (tests/test_integrity.c)',
  'POST /groups/{group}/messages 503': 'a media error reading the log (tests/test_integrity.c)',
  'DELETE /projections/{name} 503': 'a PostgreSQL target that stops answering after its definition was accepted',
  'POST /admin/backup 409': 'a target folder another process holds open, or a second backup while one runs (no test can time it without a race)',
  'POST /admin/backup 503': 'an I/O error while copying',
  'POST /admin/backup 507': 'a full disk while copying',
  'POST /admin/archive 409': 'a server without --archive-dir (this one has one; tests/test_archive.c asks another)',
  'POST /admin/archive 503': 'an archive folder that is missing (tests/test_archive.c)',
  'POST /admin/archive 507': 'a full archive disk while copying',
  'POST /admin/scavenge 200': 'a scavenge running at the moment of the request (no test can time it without a race)',
  'GET /health 503': 'a failed fsync or a damaged event (tests/test_fault.c, tests/test_integrity.c)',
  'PUT /projections/{name} 409': 'a new projection past --max-projections (tests/test_limits.c starts its server with small limits)',
  'PUT /sagas/{name} 409': 'a new saga past --max-sagas (tests/test_limits.c)',
  'PUT /groups/{group} 409': 'a new group past --max-groups (tests/test_limits.c)',
  'PUT /connectors/{name} 409': 'a new sink past --max-groups (tests/test_connectors.c starts its server with --max-groups 2)',
  'POST /schedules 409': 'a new schedule past --max-schedules (tests/test_limits.c)',
};
