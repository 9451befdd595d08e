// Devices: the account's registry with connection status, last connection and BIRTH facts,
// the provision request that enrolled each; Add device (a registry entry before
// provisioning), delete (force while connected), and for a connected device its
// configuration (view, send a changed one) and commands (API.md "Device management").

import { api, accountPath, query } from '../api.js';
import {
  button, confirmDelete, dialog, errorMessage, facts, field, form, h, header, lacksAccount, message,
  notice, paged, replace, select, table, value, when,
} from '../dom.js';

const CONNECTIONS = ['NEVER_CONNECTED', 'CONNECTED', 'DISCONNECTED'];

function remove(ctx, d) {
  return confirmDelete('Delete device', `Delete ${d.clientId}, its device user and its connection record?`,
    d.connection === 'CONNECTED' ? 'Force (disconnects the device)' : null,
    (force) => api('DELETE', accountPath(ctx.account, `/devices/${encodeURIComponent(d.clientId)}${query({ force: force ? 'true' : '' })}`)));
}

function devicePath(ctx, d, rest) {
  return accountPath(ctx.account, `/devices/${encodeURIComponent(d.clientId)}${rest}`);
}

/** The device's configuration as XML, editable and sent back (validated like a request's). */
async function configuration(ctx, d) {
  let xml;
  try {
    xml = await api('GET', devicePath(ctx, d, '/configurations'), { accept: 'application/xml' });
  } catch (err) {
    if (err.status !== 401) await notice(`Configuration of ${d.clientId}`, errorMessage(err));
    return;
  }
  const area = h('textarea', { name: 'body', rows: '18', spellcheck: 'false', class: 'mono', wrap: 'off' });
  area.value = xml;
  const status = h('div');
  await dialog(`Configuration of ${d.clientId}`, () => h('div', {}, status,
    form([field('Device Configuration', area, 'Kura configuration XML: change it and send it to the device.')],
      'Send configuration', async () => {
        await api('PUT', devicePath(ctx, d, '/configurations'), { xml: area.value });
        replace(status, message('ok', 'The device applied the configuration.'));
      })));
}

/** Runs a command on the device and shows its exit code and output. */
function command(ctx, d) {
  const result = h('div', { class: 'command-result' });
  return dialog(`Run command on ${d.clientId}`, () => h('div', {}, form([
    field('Command', h('input', { name: 'command', required: true, autocomplete: 'off', spellcheck: 'false' })),
    field('Arguments', h('input', { name: 'arguments', autocomplete: 'off', spellcheck: 'false' }), 'Separated by spaces.'),
    field('Timeout', h('input', { name: 'timeout', type: 'number', min: '1' }), 'Seconds; empty: the server default.'),
  ], 'Run', async (f) => {
    replace(result);
    const timeout = value(f, 'timeout');
    const r = await api('POST', devicePath(ctx, d, '/commands'), {
      body: { command: value(f, 'command'), arguments: (value(f, 'arguments') || '').split(/\s+/).filter(Boolean), timeout: timeout === undefined ? undefined : Number(timeout) },
    });
    replace(result, facts([
      ['Exit code', r.exitCode === null ? 'unknown' : String(r.exitCode)],
      ['Timed out', r.timedOut ? 'Yes' : 'No'],
      ['Standard output', h('pre', { class: 'mono' }, r.stdout)],
      ['Standard error', h('pre', { class: 'mono' }, r.stderr)],
    ]));
  }), result));
}

function addForm(ctx, close) {
  return form([
    field('Client ID', h('input', { name: 'clientId', required: true, autocomplete: 'off', spellcheck: 'false' })),
    field('Display Name', h('input', { name: 'displayName', autocomplete: 'off' })),
  ], 'Add device', async (f) => {
    await api('POST', accountPath(ctx.account, '/devices'), { body: { clientId: value(f, 'clientId'), displayName: value(f, 'displayName') } });
    close(true);
  });
}

export async function render(ctx) {
  if (lacksAccount(ctx, 'Devices')) return null;
  const filters = h('form', { class: 'filters', role: 'search' },
    field('Connection', select('connection', [['', 'Any'], ...CONNECTIONS.map((c) => [c, c])])),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Filter')));
  const birth = (d, key) => (d.birth && d.birth[key]) || '';
  const list = paged((after) => api('GET', accountPath(ctx.account, `/devices${query({ connection: value(filters, 'connection'), limit: 50, after })}`)),
    (items) => table('Devices', [
      { label: 'Client ID', cell: (d) => d.clientId },
      { label: 'Display name', cell: (d) => d.displayName || birth(d, 'displayName') },
      { label: 'Status', cell: (d) => d.status + (d.movedTo ? ` (to ${d.movedTo})` : '') },
      { label: 'Connection', cell: (d) => h('span', { class: `badge ${d.connection.toLowerCase()}` }, d.connection) },
      { label: 'Last connected', cell: (d) => when(d.lastConnectedOn) },
      { label: 'Model', cell: (d) => birth(d, 'modelName') },
      { label: 'Firmware', cell: (d) => birth(d, 'firmwareVersion') },
      { label: 'Kura version', cell: (d) => birth(d, 'kuraVersion') },
      { label: 'Enrolled by', cell: (d) => (d.provisionRequestId ? h('a', { href: `#/provisioning/${encodeURIComponent(d.provisionRequestId)}` }, 'Provision request') : '') },
      { label: 'Actions', cell: (d) => h('span', { class: 'row-actions' },
        d.connection === 'CONNECTED' ? [button('Configuration', () => configuration(ctx, d)), button('Run command', () => command(ctx, d))] : null,
        button('Delete', async () => { if (await remove(ctx, d)) list.reload(); }, { class: 'danger' })) },
    ], items, 'No devices match.'));
  filters.addEventListener('submit', (ev) => { ev.preventDefault(); list.load(); });
  replace(ctx.root,
    header('Devices', button('Add device', async () => { if (await dialog('Add device', (close) => addForm(ctx, close))) list.reload(); })),
    h('p', { class: 'hint' }, `Account ${ctx.account}.`), filters, list.element);
  await list.load();
  return null;
}
