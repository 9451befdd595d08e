// Provisioning: the account's provision requests, filtered by status and client ID and paged;
// Add and Edit (every field of CONSOLE.md, errors by their fields), Delete with confirmation,
// and Import of a CSV or JSON-lines file (the CLI's bulk format) through the all-or-nothing
// bulk route.

import { api, accountPath, query } from '../api.js';
import {
  button, confirmDelete, dialog, errorMessage, field, form, h, header, lacksAccount, message, paged,
  replace, secretOnce, select, table, uid, value, when, xmlEditor,
} from '../dom.js';

export const STATUSES = ['CREATED', 'RUNNING', 'COMPLETED', 'FAILED'];
const COUPLINGS = [['INHERITED', 'INHERITED (the account default)'], ['LOOSE', 'LOOSE'], ['STRICT', 'STRICT']];
const BULK_MAX = 10000;

/** `datetime-local` value (local time) of an RFC 3339 timestamp. */
function localInput(ts) {
  if (!ts) return '';
  const d = new Date(ts);
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/**
 * The broker URL: a combobox offering the known endpoints (a datalist, so any other URL may
 * still be typed), or a plain input when the server has no endpoints route.
 */
function brokerUrl(endpoints, current) {
  const input = h('input', { name: 'brokerUrl', autocomplete: 'off', spellcheck: 'false', value: current ?? '', placeholder: 'mqtts://broker.example:8883' });
  if (!endpoints || !endpoints.length) return { input, list: null };
  const list = h('datalist', { id: uid('endpoints') }, endpoints.map((e) => h('option', { value: e.url, label: e.name })));
  input.setAttribute('list', list.id);
  return { input, list };
}

/** The request body of the Add/Edit form, with the API's field names and types. */
function requestBody(f) {
  const body = {};
  for (const name of ['clientId', 'provisionUsername', 'brokerUrl', 'connectionCoupling', 'additionalConfiguration']) {
    const v = value(f, name);
    if (v !== undefined) body[name] = v;
  }
  // Passwords are taken as typed: spaces are characters of a password.
  body.provisionPassword = f.elements.namedItem('provisionPassword').value;
  body.confirmProvisionPassword = f.elements.namedItem('confirmProvisionPassword').value;
  for (const name of ['activatesOn', 'expiresOn']) {
    const v = value(f, name);
    if (v !== undefined) body[name] = Number.isNaN(new Date(v).getTime()) ? v : new Date(v).toISOString();
  }
  for (const name of ['generateActivationKey', 'reserveUser', 'vpnAccess']) body[name] = value(f, name);
  const length = value(f, 'passwordLength');
  if (length !== undefined) body.passwordLength = Number.isInteger(Number(length)) ? Number(length) : length;
  return body;
}

/** The Add/Edit form for `existing` (null: Add); `done(result)` after a 201/200. */
function requestForm(ctx, existing, done) {
  const r = existing || {};
  const text = (name, props = {}) => h('input', { name, autocomplete: 'off', spellcheck: 'false', value: r[name] ?? '', ...props });
  const check = (name, on) => h('input', { name, type: 'checkbox', checked: on });
  const url = brokerUrl(ctx.endpoints, r.brokerUrl);
  const xml = xmlEditor('additionalConfiguration', r.additionalConfiguration);
  const fields = [
    field('Provision Target Client ID', text('clientId', { required: true })),
    field('Provision Username', text('provisionUsername', { required: true })),
    field('Provision Password', h('input', { name: 'provisionPassword', type: 'password', autocomplete: 'new-password', required: true }),
      existing ? 'Required again: Fleetgate never shows it.' : ''),
    field('Confirm Provision Password', h('input', { name: 'confirmProvisionPassword', type: 'password', autocomplete: 'new-password', required: true })),
    field('Provisioned Broker URL', url.input, url.list ? 'Pick a known endpoint or type any URL.' : ''), url.list,
    field('Activates On', h('input', { name: 'activatesOn', type: 'datetime-local', value: localInput(r.activatesOn) }), 'Your local time; empty: now.'),
    field('Expires On', h('input', { name: 'expiresOn', type: 'datetime-local', value: localInput(r.expiresOn) }), 'Empty: never expires.'),
    field('Generate Activation Key', check('generateActivationKey', r.generateActivationKey === true)),
    field('Reserve User', check('reserveUser', r.reserveUser !== false)),
    field('Device Connection Coupling', select('connectionCoupling', COUPLINGS, r.connectionCoupling || 'INHERITED')),
    field('VPN Access', check('vpnAccess', r.vpnAccess === true)),
    field('Password Length', h('input', { name: 'passwordLength', type: 'number', min: '20', max: '128', value: existing ? r.passwordLength : '' }),
      'Of the generated operational password; empty: the account minimum, at least 20.'),
    field('Additional Device Configuration', xml.area, 'Kura configuration XML (optional).'),
  ];
  const f = form(fields, existing ? 'Save' : 'Create', async (formEl) => {
    const body = requestBody(formEl);
    const result = existing
      ? await api('PUT', accountPath(ctx.account, `/provision-requests/${encodeURIComponent(existing.id)}`), { body })
      : await api('POST', accountPath(ctx.account, '/provision-requests'), { body });
    done(result);
  });
  f.querySelector('[data-field="additionalConfiguration"] textarea').after(xml.where);
  return f;
}

/** What the API said after a create or update: warnings and the activation key, once. */
function outcome(result, close) {
  return h('div', {},
    message('ok', `Provision request for ${result.clientId} saved (status ${result.status}).`),
    result.warnings && result.warnings.length
      ? [h('h3', {}, 'Warnings'), h('ul', { class: 'warnings' }, result.warnings.map((w) => h('li', {}, w)))] : null,
    result.activationKey ? secretOnce('Activation Key', result.activationKey) : null,
    h('div', { class: 'actions' }, button('Done', () => close())));
}

/** Opens Add (existing null) or Edit; resolves after the dialog closes. */
export async function editRequest(ctx, existing) {
  let result = null;
  await dialog(existing ? `Edit request ${existing.clientId}` : 'Add provision request', (close) =>
    requestForm(ctx, existing, (r) => { result = r; close(); }));
  if (result) await dialog(existing ? 'Request saved' : 'Request created', (close) => outcome(result, close));
  return result;
}

/** Asks and deletes; with a force option while RUNNING. Resolves true when deleted. */
export function deleteRequest(ctx, r) {
  return confirmDelete('Delete provision request', `Delete the provision request for ${r.clientId}? This cannot be undone.`,
    r.status === 'RUNNING' ? 'Force (an exchange is running: it is cut off)' : null,
    (force) => api('DELETE', accountPath(ctx.account, `/provision-requests/${encodeURIComponent(r.id)}${query({ force: force ? 'true' : '' })}`)));
}

// ---- Import: the CLI's bulk format (CSV with a header row of API field names, or JSON lines).

/** Splits CSV text (RFC 4180: quotes, doubled quotes, CRLF) into rows of cells with their line. */
function parseCsv(text) {
  const rows = [];
  let row = [];
  let cell = '';
  let quoted = false;
  let line = 1;
  let rowLine = 1;
  for (let i = 0; i < text.length; i += 1) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { cell += '"'; i += 1; } else if (c === '"') quoted = false;
      else { if (c === '\n') line += 1; cell += c; }
    } else if (c === '"') quoted = true;
    else if (c === ',') { row.push(cell); cell = ''; } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i += 1;
      row.push(cell); rows.push({ line: rowLine, cells: row }); row = []; cell = '';
      line += 1; rowLine = line;
    } else cell += c;
  }
  if (cell !== '' || row.length) { row.push(cell); rows.push({ line: rowLine, cells: row }); }
  return rows.filter((r) => r.cells.some((c) => c.trim() !== ''));
}

/** A CSV cell typed as the API expects (as the CLI does): booleans, the password length. */
function typedCell(name, raw) {
  const lower = raw.toLowerCase();
  if (['generateActivationKey', 'reserveUser', 'vpnAccess'].includes(name)) {
    if (['true', 'yes', '1'].includes(lower)) return true;
    if (['false', 'no', '0'].includes(lower)) return false;
  }
  if (name === 'passwordLength' && /^-?\d+$/.test(raw)) return Number(raw);
  return raw;
}

function withConfirmation(body) {
  if (!('confirmProvisionPassword' in body) && 'provisionPassword' in body) body.confirmProvisionPassword = body.provisionPassword;
  return body;
}

/** The rows of a bulk file: `[{line, body}]`; throws Error naming the bad line. */
function readBulk(name, text) {
  if (/\.csv$/i.test(name)) {
    const [head, ...rows] = parseCsv(text);
    if (!head) throw new Error('the file is empty');
    const names = head.cells.map((c) => c.trim());
    return rows.map(({ line, cells }) => {
      if (cells.length !== names.length) throw new Error(`line ${line}: ${cells.length} cells, the header has ${names.length}`);
      const body = {};
      names.forEach((n, i) => { const raw = cells[i].trim(); if (raw !== '') body[n] = typedCell(n, raw); });
      return { line, body: withConfirmation(body) };
    });
  }
  return text.split(/\r?\n/).map((l, i) => ({ l, line: i + 1 })).filter(({ l }) => l.trim() !== '').map(({ l, line }) => {
    let body;
    try { body = JSON.parse(l); } catch { throw new Error(`line ${line}: not a JSON object`); }
    if (!body || typeof body !== 'object' || Array.isArray(body)) throw new Error(`line ${line}: not a JSON object`);
    return { line, body: withConfirmation(body) };
  });
}

function importForm(ctx, close) {
  const result = h('div', { class: 'import-result' });
  const file = h('input', { name: 'file', type: 'file', accept: '.csv,.jsonl,.ndjson,.json' });
  const f = form([field('Import File', file, 'CSV with a header row of API field names, or JSON lines (.jsonl).')], 'Import', async () => {
    replace(result);
    const picked = file.files[0];
    if (!picked) throw new Error('Choose a file first.');
    let rows;
    try { rows = readBulk(picked.name, await picked.text()); } catch (err) {
      throw new Error(`Cannot read ${picked.name}: ${err.message}. Nothing was created.`);
    }
    if (!rows.length) throw new Error(`${picked.name} holds no requests.`);
    if (rows.length > BULK_MAX) throw new Error(`${rows.length} rows: at most ${BULK_MAX} per import. Nothing was created.`);
    try {
      const { created } = await api('POST', accountPath(ctx.account, '/provision-requests/bulk'), { body: { requests: rows.map((r) => r.body) } });
      replace(result, message('ok', `Created ${created.length} provision requests.`), button('Done', () => close(true)));
    } catch (err) {
      if (!err.problem) throw err;
      const perRow = err.errors.filter((e) => Number.isInteger(e.index));
      const bad = new Set(perRow.map((e) => e.index)).size;
      replace(result, perRow.length
        ? message('error', `${bad} of ${rows.length} rows have errors (HTTP ${err.status}).`) : errorMessage(err),
        perRow.length ? table('Row errors', [
          { label: 'Row', cell: (e) => String(e.index + 1) },
          { label: 'Line', cell: (e) => String(rows[e.index] ? rows[e.index].line : '') },
          { label: 'Field', cell: (e) => e.field || '' },
          { label: 'Error', cell: (e) => e.message },
        ], perRow) : null,
        message('warning', 'Nothing was created: fix the rows and import the file again.'));
    }
  });
  return h('div', {}, f, result);
}

export async function render(ctx) {
  if (lacksAccount(ctx, 'Provisioning')) return null;
  const filters = h('form', { class: 'filters', role: 'search' },
    field('Status', select('status', [['', 'Any'], ...STATUSES.map((s) => [s, s])])),
    field('Client ID', h('input', { name: 'clientId', autocomplete: 'off', spellcheck: 'false' })),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Filter')));
  const list = paged((after) => api('GET', accountPath(ctx.account, `/provision-requests${query({
    status: value(filters, 'status'), clientId: value(filters, 'clientId'), limit: 50, after,
  })}`)), (items) => table('Provision requests', [
    { label: 'Client ID', cell: (r) => h('a', { href: `#/provisioning/${encodeURIComponent(r.id)}` }, r.clientId) },
    { label: 'Provision username', cell: (r) => r.provisionUsername },
    { label: 'Status', cell: (r) => h('span', { class: `badge ${r.status.toLowerCase()}` }, r.status) },
    { label: 'Broker URL', cell: (r) => r.brokerUrl },
    { label: 'Created', cell: (r) => when(r.createdOn) },
    { label: 'Actions', cell: (r) => h('span', { class: 'row-actions' },
      r.status === 'CREATED' ? button('Edit', async () => { if (await editRequest(ctx, r)) list.reload(); }) : null,
      button('Delete', async () => { if (await deleteRequest(ctx, r)) list.reload(); }, { class: 'danger' })) },
  ], items, 'No provision requests match.'));
  filters.addEventListener('submit', (ev) => { ev.preventDefault(); list.load(); });
  replace(ctx.root,
    header('Provisioning',
      button('Add', async () => { if (await editRequest(ctx, null)) list.reload(); }),
      button('Import', async () => { if (await dialog('Import provision requests', (close) => importForm(ctx, close))) list.reload(); })),
    h('p', { class: 'hint' }, `Account ${ctx.account}.`),
    filters, list.element);
  await list.load();
  return null;
}
