// contract.mjs — does docs/openapi.yaml tell the truth about a real server?
//
//   node tests/contract/contract.mjs http://127.0.0.1:PORT      (tests/test_docs.c runs it)
//
// 1. Sends every request of requests.mjs in order (one entry a request) and checks each answer:
//    the status the entry expects; that status declared for the operation; the Content-Type one
//    the operation declares for it; the body valid against its schema (ajv, JSON Schema 2020-12,
//    as OpenAPI 3.1 schemas are).
// 2. Coverage: every operation in the file was requested, and every status it declares was
//    seen (or requests.mjs says in `unreachable` why no test can provoke it).
// 3. Routes, both ways: the server's route table (src/server/route.c, listed by GET / as
//    "routes") and the file have the same paths with the same methods, each way. Then each
//    path of the file is asked with GET, POST, PUT and DELETE; whatever is not a 405 nor a 404
//    "no such resource" must be an operation of the file (and its answer is checked as in 1),
//    and a 405's Allow must name the file's methods.
// Prints "contract: ok" and exits 0, or lists every failure and exits 1.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import http from 'node:http';
import YAML from 'yaml';
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import requests, { unreachable } from './requests.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const base = new URL(process.argv[2] || 'http://127.0.0.1:7744');
const spec = YAML.parse(readFileSync(join(root, 'docs/openapi.yaml'), 'utf8'));
const METHODS = ['get', 'head', 'post', 'put', 'delete'];
const failures = [];
const fail = (msg) => failures.push(msg);

// ---- the file: operations, references, schemas ----

const deref = (o) => {
  while (o && o.$ref) o = o.$ref.slice(2).split('/').map((k) => k.replace(/~1/g, '/').replace(/~0/g, '~')).reduce((a, k) => a[k], spec);
  return o;
};
const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);
ajv.addFormat('binary', true);
// The components as one schema document, so '#/components/schemas/X' resolves from anywhere.
const rebase = (s) => JSON.parse(JSON.stringify(s).replace(/"\$ref":"#\//g, '"$ref":"openapi#/'));
ajv.addSchema({ $id: 'openapi', components: rebase({ schemas: spec.components.schemas }) });
const compiled = new Map();
const validator = (schema) => {
  if (!compiled.has(schema)) compiled.set(schema, ajv.compile(rebase(schema)));
  return compiled.get(schema);
};

// Templates as regular expressions; a literal segment beats a parameter (OpenAPI's rule).
const templates = Object.keys(spec.paths).map((t) => ({
  t,
  re: new RegExp('^' + t.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{[^}/]+\}/g, '[^/]+') + '$'),
  literal: t.split('/').filter((s) => s && !s.startsWith('{')).length,
}));
// The template of a concrete path: the most literal one that has the method, if one does
// (/groups/g/parked/replay is the replay for POST, a parked event for GET and DELETE).
const templateOf = (path, method) => {
  const hits = templates.filter((x) => x.re.test(path)).sort((a, b) => b.literal - a.literal);
  const has = method && hits.find((x) => spec.paths[x.t][method.toLowerCase()]);
  return has ? has.t : hits.length ? hits[0].t : null;
};
const operations = [];
for (const [t, item] of Object.entries(spec.paths))
  for (const m of METHODS) if (item[m]) operations.push(`${m.toUpperCase()} ${t}`);

// ---- HTTP ----

function send({ method, path, headers = {}, body, sse = false }) {
  return new Promise((resolve, reject) => {
    let payload;
    const h = { ...headers };
    if (body !== undefined) {
      payload = typeof body === 'string' ? body : JSON.stringify(body);
      if (!Object.keys(h).some((k) => k.toLowerCase() === 'content-type')) h['Content-Type'] = 'application/json';
    }
    if (sse) h.Accept = 'text/event-stream';
    if (payload !== undefined) h['Content-Length'] = Buffer.byteLength(payload);
    const big = payload !== undefined && payload.length > 65536;
    if (big) h.Expect = '100-continue';
    const req = http.request({ host: base.hostname, port: base.port, method, path, headers: h }, (res) => {
      const chunks = [];
      const done = () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') });
      if (sse && res.statusCode === 200) {
        // A subscription never ends: its first event (or comment) is enough.
        res.on('data', (c) => {
          chunks.push(c);
          if (Buffer.concat(chunks).includes('\n\n')) {
            req.destroy();
            done();
          }
        });
        return;
      }
      res.on('data', (c) => chunks.push(c));
      res.on('end', done);
    });
    req.on('error', (e) => (e.code === 'ECONNRESET' && sse ? null : reject(e)));
    req.setTimeout(30000, () => req.destroy(new Error(`${method} ${path}: no answer in 30 s`)));
    // A large body waits for 100 Continue: a 413 comes before it and the body is never sent.
    if (big) req.on('continue', () => req.end(payload));
    else req.end(payload);
  });
}

// ---- checking one answer against the file ----

const seen = new Map(); // "METHOD template" -> Set of statuses
function check(what, method, path, res) {
  const template = templateOf(path.split('?')[0], method);
  const op = template && spec.paths[template][method.toLowerCase()];
  const key = `${method} ${template}`;
  if (!op) return fail(`${what}: the server answers ${method} ${path} with ${res.status}, and docs/openapi.yaml has no such operation`);
  if (!seen.has(key)) seen.set(key, new Set());
  seen.get(key).add(String(res.status));
  const declared = op.responses[String(res.status)] || op.responses[`${String(res.status)[0]}XX`] || op.responses.default;
  if (!declared) return fail(`${what}: ${key} answered ${res.status}, which the file does not declare (${Object.keys(op.responses)})`);
  const r = deref(declared);
  const ctype = (res.headers['content-type'] || '').split(';')[0].trim().toLowerCase();
  if (method === 'HEAD' || (res.body === '' && !r.content)) return;
  if (!r.content) return fail(`${what}: ${key} ${res.status} sends ${ctype} but the file declares no content`);
  const media = r.content[ctype] || r.content[ctype.split('/')[0] + '/*'] || r.content['*/*'];
  if (!media) return fail(`${what}: ${key} ${res.status} sends ${ctype}, the file declares ${Object.keys(r.content)}`);
  if (!media.schema || !/json$/.test(ctype)) return;
  let doc;
  try {
    doc = JSON.parse(res.body);
  } catch (e) {
    return fail(`${what}: ${key} ${res.status}: the body is not JSON: ${res.body.slice(0, 200)}`);
  }
  const v = validator(media.schema);
  if (!v(doc))
    fail(`${what}: ${key} ${res.status}: the body does not match the schema: ${ajv.errorsText(v.errors, { separator: '; ' }).slice(0, 600)}\n      body: ${res.body.slice(0, 300)}`);
}

// ---- 1. the requests ----

const vars = {};
const fill = (v) =>
  typeof v === 'string'
    ? v.replace(/<<([^>]+)>>/g, (_, p) => {
        const got = p.split('.').reduce((a, k) => (a == null ? a : a[k]), vars);
        if (got === undefined) throw new Error(`<<${p}>> is not known yet`);
        return encodeURIComponent(String(got));
      })
    : Array.isArray(v)
      ? v.map(fill)
      : v && typeof v === 'object'
        ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, fill(x)]))
        : v;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const deadline = Date.now() + 90000;

for (const [i, e] of requests.entries()) {
  const what = `#${i} ${e.method} ${e.path}`;
  let req, res;
  if (process.env.CONTRACT_DEBUG) console.error(what);
  try {
    req = { ...e, path: fill(e.path), headers: fill(e.headers), body: fill(e.body) };
  } catch (err) {
    fail(`${what}: ${err.message}`);
    continue;
  }
  // `until`: ask again until the answer holds it (a projection catching up, a timer firing).
  for (;;) {
    res = await send(req);
    if (!e.until || (res.status === e.status && res.body.includes(e.until)) || Date.now() > deadline) break;
    await sleep(25);
  }
  if (res.status !== e.status) fail(`${what}: expected ${e.status}, got ${res.status}: ${res.body.slice(0, 300)}`);
  if (e.until && !res.body.includes(e.until)) fail(`${what}: the answer never held ${e.until}: ${res.body.slice(0, 300)}`);
  check(what, req.method, req.path, res);
  if (e.save) {
    try {
      vars[e.save] = JSON.parse(res.body);
    } catch {
      vars[e.save] = res.body;
    }
  }
}

// ---- 3. routes: what the server answers that the file lacks ----

// The table, from GET /: [{path, methods}], HEAD listed wherever GET is.
const listing = await send({ method: 'GET', path: '/' });
let table = [];
try {
  table = JSON.parse(listing.body).routes || [];
} catch {
  fail(`GET / is not JSON: ${listing.body.slice(0, 200)}`);
}
if (table.length < 10) fail(`GET / lists only ${table.length} routes`);
const fileMethods = (t) => METHODS.filter((m) => m !== 'head' && spec.paths[t][m]).map((m) => m.toUpperCase());
for (const { path, methods } of table) {
  const want = methods.filter((m) => m !== 'HEAD');
  if (methods.includes('GET') !== methods.includes('HEAD')) fail(`the route table has ${path} with ${methods}: HEAD goes with GET`);
  if (!spec.paths[path]) fail(`the route table has ${path}, which docs/openapi.yaml lacks`);
  else if (want.sort().join() !== fileMethods(path).sort().join())
    fail(`the route table has ${path} with ${want}, docs/openapi.yaml with ${fileMethods(path)}`);
}
for (const t of Object.keys(spec.paths))
  if (!table.some((r) => r.path === t)) fail(`docs/openapi.yaml has ${t}, which the route table lacks`);
// A concrete path for each template: the first one the requests used, else the template itself.
const concrete = new Map();
for (const e of requests) {
  let p;
  try {
    p = fill(e.path).split('?')[0];
  } catch {
    continue;
  }
  const t = templateOf(p);
  if (t && !concrete.has(t)) concrete.set(t, p);
}
const probes = new Set(['/', ...Object.keys(spec.paths).map((t) => concrete.get(t) || t)]);
const routeGone = (res) => res.status === 405 || (res.status === 404 && /"detail":"no such resource/.test(res.body));
// A 405 names in Allow what the path does allow (RFC 9110): the file's methods for it.
function checkAllow(what, path, res) {
  const allow = (res.headers.allow || '').split(',').map((m) => m.trim()).filter((m) => m && m !== 'HEAD' && m !== 'OPTIONS');
  if (!res.headers.allow) return fail(`${what}: 405 without an Allow header`);
  const inFile = METHODS.filter((m) => m !== 'head' && templates.some((x) => x.re.test(path) && spec.paths[x.t][m])).map((m) => m.toUpperCase());
  if (allow.sort().join() !== inFile.sort().join()) fail(`${what}: Allow says ${allow}, the file has ${inFile} for this path`);
}
for (const path of probes)
  for (const method of ['GET', 'POST', 'PUT', 'DELETE']) {
    const res = await send({ method, path, sse: false });
    if (res.status === 405) checkAllow(`probe ${method} ${path}`, path, res);
    if (!routeGone(res)) check(`probe ${method} ${path}`, method, path, res);
  }

// ---- 2. coverage ----

for (const key of operations) {
  const [method, template] = key.split(' ');
  const got = seen.get(key);
  if (!got) {
    fail(`${key}: no request in requests.mjs`);
    continue;
  }
  for (const status of Object.keys(spec.paths[template][method.toLowerCase()].responses))
    if (!got.has(status) && !unreachable[`${key} ${status}`])
      fail(`${key} declares ${status}, which no request provoked (add one to requests.mjs, or say in 'unreachable' why none can)`);
}
for (const key of Object.keys(unreachable)) {
  const [method, template, status] = key.split(' ');
  if (!spec.paths[template]?.[method.toLowerCase()]?.responses?.[status]) fail(`unreachable names ${key}, which the file does not declare`);
}

if (failures.length) {
  console.log(`contract: ${failures.length} failures\n  ` + failures.join('\n  '));
  process.exit(1);
}
console.log(`contract: ok (${requests.length} requests, ${operations.length} operations, ${probes.size} paths probed)`);
