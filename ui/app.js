// app.js — the dashboard's shell: the hash router (#/streams, #/stream/NAME, ...), the pages it
// shows in <main>, and the key form shown when the server answers 401. Each page module exports
// render(main, params, query), which may return a function that stops what the page left running
// (polls, subscriptions); the router calls it before the next page.
import { setToken, token, whenUnauthorized } from './api.js';
import * as overview from './overview.js';
import * as streams from './streams.js';
import * as event from './event.js';
import * as tail from './tail.js';
import * as groups from './groups.js';
import * as timers from './timers.js';
import * as admin from './admin.js';
import * as projections from './projections.js';
import * as sagas from './sagas.js';

const routes = [
  [/^\/?$/, overview.render, '#/'],
  [/^\/streams$/, streams.renderList, '#/streams'],
  [/^\/stream\/([^/]+)$/, streams.renderStream, '#/streams'],
  [/^\/event\/([^/]+)\/(\d+)$/, event.render, '#/streams'],
  [/^\/tail$/, tail.render, '#/tail'],
  [/^\/groups$/, groups.renderList, '#/groups'],
  [/^\/group\/([^/]+)$/, groups.renderGroup, '#/groups'],
  [/^\/timers$/, timers.render, '#/timers'],
  [/^\/admin$/, admin.render, '#/admin'],
  [/^\/projections$/, projections.render, '#/projections'],
  [/^\/sagas$/, sagas.renderList, '#/sagas'],
  [/^\/saga\/([^/]+)$/, sagas.renderSaga, '#/sagas'],
  [/^\/saga\/([^/]+)\/([^/]+)$/, sagas.renderInstance, '#/sagas'],
];

const main = document.getElementById('main');
const login = document.getElementById('login');
const signout = document.getElementById('signout');
let stop = null;

function route() {
  if (stop) stop();
  stop = null;
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, qs] = raw.split('?');
  const query = new URLSearchParams(qs || '');
  main.replaceChildren();
  for (const [re, render, nav] of routes) {
    const m = re.exec(path);
    if (!m) continue;
    for (const a of document.querySelectorAll('nav a')) {
      if (a.getAttribute('href') === nav) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    stop = render(main, m.slice(1).map(decodeURIComponent), query) || null;
    return;
  }
  main.append(Object.assign(document.createElement('h1'), { textContent: 'No such page' }));
}

whenUnauthorized(() => {
  login.hidden = false;
  document.getElementById('token').focus();
});
login.addEventListener('submit', (e) => {
  e.preventDefault();
  setToken(document.getElementById('token').value.trim());
  document.getElementById('token').value = '';
  login.hidden = true;
  signout.hidden = false;
  route();
});
signout.hidden = !token();
signout.addEventListener('click', () => {
  setToken('');
  signout.hidden = true;
  route();
});

window.addEventListener('hashchange', route);
route();
