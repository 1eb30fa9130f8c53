// api.js — every request the dashboard makes goes through here: the public HTTP API, with the
// key of this browser tab (sessionStorage) as "Authorization: Bearer". A 401 asks for a key
// (app.js shows the form); every error is thrown as an ApiError carrying the problem+json the
// server sent, for the page to show. Nothing is swallowed.

const KEY = 'factum.token';

export const token = () => sessionStorage.getItem(KEY) || '';
export const setToken = (t) => {
  who = null;
  if (t) sessionStorage.setItem(KEY, t);
  else sessionStorage.removeItem(KEY);
};

// What this tab's key may do (GET /whoami: the permissions its role grants), asked once per
// key. lacks(perm) is null when the key may, or the reason it may not, for the page to show on
// the control it disables. If the question itself is refused (a 401: no key yet), nothing is
// disabled in advance: the request will be refused and the refusal shown.
let who = null;
export function whoami() {
  if (!who) {
    const t = token();
    who = fetch('/whoami', { headers: t ? { Authorization: `Bearer ${t}` } : {} })
      .then((r) => (r.ok ? r.json() : null))
      .catch(() => null);
  }
  return who;
}
export async function lacks(perm) {
  const w = await whoami();
  if (!w || w.permissions.includes(perm)) return null;
  return w.key ? `this key (${w.key.role}${w.key.name ? ' ' + w.key.name : ''}) does not have the permission '${perm}'` : `this needs a key with the permission '${perm}'`;
}

export class ApiError extends Error {
  constructor(status, problem, what) {
    super(`${what}: ${status} ${problem.title || ''}${problem.detail ? ' — ' + problem.detail : ''}`);
    this.status = status;
    this.problem = problem;
  }
}

let onUnauthorized = () => {};
export const whenUnauthorized = (fn) => (onUnauthorized = fn);

const headers = (extra = {}) => {
  const h = { ...extra };
  if (token()) h.Authorization = `Bearer ${token()}`;
  return h;
};

// The answer of one request: {status, headers, body} (body parsed when JSON). Throws ApiError
// for any status of 400 and up unless `allow` lists it.
export async function call(method, path, { body, allow = [], signal } = {}) {
  const init = { method, headers: headers(body === undefined ? {} : { 'Content-Type': 'application/json' }), signal };
  if (body !== undefined) init.body = typeof body === 'string' ? body : JSON.stringify(body);
  const res = await fetch(path, init);
  const type = res.headers.get('content-type') || '';
  const text = await res.text();
  let parsed = text;
  if (/json/.test(type) && text) parsed = JSON.parse(text);
  if (res.status >= 400 && !allow.includes(res.status)) {
    const problem = typeof parsed === 'object' ? parsed : { title: res.statusText, detail: text.slice(0, 200) };
    if (res.status === 401 || res.status === 403) who = null; // what the key may do has changed
    if (res.status === 401) onUnauthorized(problem);
    throw new ApiError(res.status, problem, `${method} ${path}`);
  }
  return { status: res.status, headers: res.headers, body: parsed };
}

export const get = async (path, opts) => (await call('GET', path, opts)).body;

// The next page's URL from a Link header (<...>; rel="next"), or null.
export const nextLink = (h) => {
  const m = /<([^>]+)>;\s*rel="next"/.exec(h.get('link') || '');
  return m ? m[1] : null;
};

export const enc = encodeURIComponent;

// A Server-Sent Events subscription through fetch (EventSource cannot send Authorization):
// calls onEvent({id, event, data}) for each event; returns a function that stops it.
export function subscribe(path, onEvent, onState) {
  const ctl = new AbortController();
  (async () => {
    try {
      const res = await fetch(path, { headers: headers({ Accept: 'text/event-stream' }), signal: ctl.signal });
      if (res.status !== 200) {
        const text = await res.text();
        let problem;
        try {
          problem = JSON.parse(text);
        } catch {
          problem = { title: res.statusText, detail: text.slice(0, 200) };
        }
        if (res.status === 401) onUnauthorized(problem);
        throw new ApiError(res.status, problem, `GET ${path}`);
      }
      onState('open');
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      let ev = { id: '', event: 'message', data: '' };
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        // Lines are cut out by index and the rest kept once per chunk: slicing the buffer after
        // each line would copy it once per line, which a fast stream pays for quadratically.
        let at = 0, nl;
        for (; (nl = buf.indexOf('\n', at)) >= 0; at = nl + 1) {
          const line = buf.charCodeAt(nl - 1) === 13 && nl > at ? buf.slice(at, nl - 1) : buf.slice(at, nl);
          if (line === '') {
            if (ev.data) onEvent(ev);
            ev = { id: ev.id, event: 'message', data: '' };
          } else if (!line.startsWith(':')) {
            const c = line.indexOf(':');
            const field = c < 0 ? line : line.slice(0, c);
            const val = c < 0 ? '' : line.slice(c + 1).replace(/^ /, '');
            if (field === 'data') ev.data += (ev.data ? '\n' : '') + val;
            else if (field === 'event') ev.event = val;
            else if (field === 'id') ev.id = val;
          }
        }
        buf = buf.slice(at);
      }
      onState('closed');
    } catch (e) {
      if (e.name !== 'AbortError') onState('error', e);
    }
  })();
  return () => ctl.abort();
}
