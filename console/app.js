// The console's shell: sign-in, navigation (hash routes, so no key or
// state ever reaches a server log through a URL), and the page modules.
import { api, get, session, whenUnauthorized } from './api.js';
import { fill, h, message, setCurrency } from './dom.js';
import * as overview from './overview.js';
import * as reports from './reports.js';
import * as events from './events.js';
import * as orders from './orders.js';
import * as affiliates from './affiliates.js';
import * as buyers from './buyers.js';
import * as payouts from './payouts.js';
import * as webhooks from './webhooks.js';
import * as program from './program.js';
import * as simulations from './simulations.js';
import * as audit from './audit.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const signOut = document.getElementById('sign-out');
let cleanup = null;

const pages = { overview, reports, events, orders, buyers, affiliates, payouts, webhooks, program, simulations, audit };
/** Pages without a nav entry of their own: the section they belong to. */
const sectionOf = { buyers: 'orders' };

/** '#/events/abc?status=dead' → {page: 'events', id: 'abc', params: URLSearchParams} */
function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, q = ''] = raw.split('?');
  const [page, ...rest] = path.split('/');
  return { page: page || 'overview', id: rest.length ? decodeURIComponent(rest.join('/')) : null, params: new URLSearchParams(q) };
}

function showSignIn(note) {
  stop();
  nav.hidden = true;
  signOut.hidden = true;
  document.title = 'Sign in · komisi console';
  const input = h('input', { id: 'admin-key', type: 'password', name: 'key', autocomplete: 'off', required: true, spellcheck: 'false' });
  const out = h('div', { id: 'signin-message', 'aria-live': 'polite' }, note ? message('error', note) : null);
  const submit = h('button', { type: 'submit', class: 'primary', id: 'sign-in' }, 'Sign in');
  const form = h('form', { class: 'card signin', id: 'signin-form' },
    h('h1', {}, 'komisi console'),
    h('label', {}, 'Admin key', input),
    h('p', { class: 'muted' }, 'Kept in this tab only (sessionStorage) and sent as the bearer header.'),
    h('div', { class: 'actions' }, submit),
    out);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const key = input.value.trim();
    if (!key) return;
    submit.disabled = true;
    fill(out, message('info', 'Checking the key…'));
    try {
      // A cheap admin-only read: a wrong key is 401, a storefront key 403.
      await api('GET', '/admin/events?limit=1', { key });
      session.set(key);
      input.value = '';
      await start();
    } catch (err) {
      fill(out, message('error', err.message, 'signin-error'));
      input.select();
    } finally {
      submit.disabled = false;
    }
  });
  fill(main, form);
  input.focus();
}

async function start() {
  try {
    const program = await get('/admin/program');
    setCurrency(program.currency);
  } catch (e) {
    if (e.status === 401 || e.status === 403) return;
  }
  nav.hidden = false;
  signOut.hidden = false;
  if (!location.hash || location.hash === '#/' || location.hash === '#') location.hash = '#/overview';
  else route();
}

function stop() {
  if (cleanup) cleanup();
  cleanup = null;
}

async function route(event) {
  if (!session.key()) return showSignIn();
  const { page, id, params } = parseHash();
  const mod = pages[page];
  stop();
  const section = sectionOf[page] || page;
  for (const a of nav.querySelectorAll('a')) {
    // (A page under a section, such as a buyer's under Orders: that section is current, not the page.)
    if (a.getAttribute('href') === `#/${section}`) a.setAttribute('aria-current', section === page ? 'page' : 'true');
    else a.removeAttribute('aria-current');
  }
  if (!mod) {
    fill(main, h('h1', {}, 'Not found'), h('p', {}, h('a', { href: '#/overview' }, 'Overview')));
    return;
  }
  const name = page[0].toUpperCase() + page.slice(1);
  document.title = `${id ? `${id} · ` : ''}${name} · komisi console`;
  fill(main, h('p', { class: 'muted' }, 'Loading…'));
  try {
    cleanup = (await mod.render(main, { id, params })) || null;
    // After a navigation, keyboard focus starts at the new page's content.
    if (event?.type === 'hashchange' && !main.contains(document.activeElement)) main.focus();
  } catch (e) {
    if (e.status === 401) return;
    fill(main, h('h1', {}, name), message('error', e.message, 'page-error'));
  }
}

signOut.addEventListener('click', () => {
  session.clear();
  history.replaceState(null, '', '#/');
  showSignIn();
});

whenUnauthorized(() => {
  session.clear();
  showSignIn('The admin key is no longer accepted (401). Sign in again.');
});

window.addEventListener('hashchange', route);
if (session.key()) start();
else showSignIn();
