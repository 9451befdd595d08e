// Devices: the account's registry with connection status, last connection and BIRTH facts,
// the provision request that enrolled each; Add device (a registry entry before
// provisioning) and delete (force while connected).

import { api, accountPath, query } from '../api.js';
import {
  button, confirmDelete, dialog, field, form, h, header, lacksAccount, paged, replace, select,
  table, value, when,
} from '../dom.js';

const CONNECTIONS = ['NEVER_CONNECTED', 'CONNECTED', 'DISCONNECTED'];

function remove(ctx, d) {
  return confirmDelete('Delete device', `Delete ${d.clientId}, its device user and its connection record?`,
    d.connection === 'CONNECTED' ? 'Force (disconnects the device)' : null,
    (force) => api('DELETE', accountPath(ctx.account, `/devices/${encodeURIComponent(d.clientId)}${query({ force: force ? 'true' : '' })}`)));
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
      { label: 'Actions', cell: (d) => button('Delete', async () => { if (await remove(ctx, d)) list.reload(); }, { class: 'danger' }) },
    ], items, 'No devices match.'));
  filters.addEventListener('submit', (ev) => { ev.preventDefault(); list.load(); });
  replace(ctx.root,
    header('Devices', button('Add device', async () => { if (await dialog('Add device', (close) => addForm(ctx, close))) list.reload(); })),
    h('p', { class: 'hint' }, `Account ${ctx.account}.`), filters, list.element);
  await list.load();
  return null;
}
