// The console's shell: sign-in and sign-out, the account picker, and hash routing to the
// views (#/overview, #/accounts, #/provisioning[/ID], #/devices, #/jobs[/ID], #/users,
// #/endpoints).

import { api, ApiError, session, whenUnauthorized } from './api.js';
import { errorMessage, h, message, replace } from './dom.js';
import * as overview from './views/overview.js';
import * as accounts from './views/accounts.js';
import * as provisioning from './views/provisioning.js';
import * as request from './views/request.js';
import * as devices from './views/devices.js';
import * as jobs from './views/jobs.js';
import * as job from './views/job.js';
import * as users from './views/users.js';
import * as endpoints from './views/endpoints.js';

const ACCOUNT_KEY = 'fleetgate.account';
const $ = (id) => document.getElementById(id);

/** What the views share; filled at sign-in. */
const state = {
  accounts: [],
  account: null,
  // Account tokens have the API's `fgt_ID_SECRET` shape; the admin token never does. This only
  // decides which controls are offered: the API enforces the permissions either way.
  admin: false,
  // The known endpoints, or null when the server has no such route (then: free entry only).
  endpoints: null,
};

let cleanup = null;
let generation = 0;

function showSignIn(note) {
  if (cleanup) { cleanup(); cleanup = null; }
  for (const id of ['nav', 'session', 'view']) $(id).hidden = true;
  $('sign-in').hidden = false;
  replace($('sign-in-message'), note ? message('error', note) : null);
  $('token').value = '';
  $('token').focus();
}

/** Loads the accounts and known endpoints for the signed-in token. */
async function load() {
  state.admin = !/^fgt_[^_]+_.+$/.test(session.token || '');
  state.accounts = (await api('GET', '/api/v1/accounts')).items;
  const remembered = sessionStorage.getItem(ACCOUNT_KEY);
  const names = state.accounts.map((a) => a.name);
  state.account = names.includes(remembered) ? remembered : (names[0] || null);
  try {
    state.endpoints = (await api('GET', '/api/v1/endpoints')).items;
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 404) throw e;
    state.endpoints = null;
  }
  const picker = $('account-picker');
  replace(picker, state.accounts.map((a) => new Option(a.name, a.name, false, a.name === state.account)));
  picker.disabled = state.accounts.length === 0;
  $('nav-endpoints').hidden = state.endpoints === null;
}

const views = { overview, accounts, provisioning, devices, jobs, users, endpoints };
// The views with a details page for `#/NAME/ID`.
const details = { provisioning: request, jobs: job };

function currentRoute() {
  const [name, ...rest] = location.hash.replace(/^#\/?/, '').split('/');
  return { name: views[name] ? name : 'overview', param: rest.length ? decodeURIComponent(rest.join('/')) : null };
}

async function route() {
  if (!session.token) { showSignIn(); return; }
  if (cleanup) { cleanup(); cleanup = null; }
  $('sign-in').hidden = true;
  for (const id of ['nav', 'session', 'view']) $(id).hidden = false;
  const { name, param } = currentRoute();
  for (const a of $('nav').querySelectorAll('a')) {
    if (a.getAttribute('href') === `#/${name}`) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  // Each route renders into a fresh element: a slower, older render finishes into a detached
  // one and never overwrites the view the user moved on to.
  generation += 1;
  const mine = generation;
  const root = document.createElement('div');
  replace($('view'), root);
  replace(root, h('p', { class: 'hint' }, 'Loading…'));
  const module = param && details[name] ? details[name] : views[name];
  const ctx = {
    ...state, root, param,
    go: (hash) => { if (location.hash === hash) route(); else location.hash = hash; },
    reload: async () => { await load(); await route(); },
  };
  try {
    const done = (await module.render(ctx)) || null;
    if (mine !== generation) { if (done) done(); return; }
    cleanup = done;
    root.querySelector('h1')?.focus({ preventScroll: true });
  } catch (err) {
    // A 401 has already returned to sign-in.
    if (!(err instanceof ApiError && err.status === 401)) replace(root, errorMessage(err));
  }
}

whenUnauthorized(() => showSignIn('The token was refused (it may have been revoked): sign in again.'));

$('sign-in-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const token = $('token').value.trim();
  if (!token) { replace($('sign-in-message'), message('error', 'Enter an API token.')); return; }
  try {
    await api('GET', '/api/v1/accounts', { token });
  } catch (err) {
    replace($('sign-in-message'), err.status === 401
      ? message('error', 'This token is not valid.') : errorMessage(err));
    return;
  }
  session.signIn(token);
  try { await load(); } catch (err) { replace($('sign-in-message'), errorMessage(err)); return; }
  await route();
});

$('sign-out').addEventListener('click', () => {
  session.signOut();
  sessionStorage.removeItem(ACCOUNT_KEY);
  state.accounts = [];
  state.account = null;
  showSignIn();
});

$('account-picker').addEventListener('change', (ev) => {
  state.account = ev.target.value;
  sessionStorage.setItem(ACCOUNT_KEY, state.account);
  route();
});

window.addEventListener('hashchange', route);
// A view's own link reloads it (the hash does not change, so no hashchange would).
$('nav').addEventListener('click', (ev) => {
  const link = ev.target.closest('a');
  if (link && link.getAttribute('href') === location.hash) route();
});

(async () => {
  if (!session.token) { showSignIn(); return; }
  try { await load(); } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) showSignIn(err.message);
    return;
  }
  await route();
})();
