// Endpoints: the known broker endpoints (API.md "Known broker endpoints") that the Add form
// offers in its drop-down; adding and deleting is the admin's. Shown only when the server
// has the route.

import { api } from '../api.js';
import { button, confirmDelete, field, form, h, header, replace, select, table, value } from '../dom.js';

const OWN = 'fleetgate';
const KINDS = ['mosquitto', 'rabbitmq', 'emqx', 'vernemq', 'other'];

export async function render(ctx) {
  const { items } = await api('GET', '/api/v1/endpoints');
  const refresh = () => ctx.reload();
  replace(ctx.root, header('Endpoints'),
    table('Known broker endpoints', [
      { label: 'Name', cell: (e) => e.name },
      { label: 'URL', cell: (e) => e.url },
      { label: 'Kind', cell: (e) => e.kind || '' },
      // Fleetgate's own operational endpoint is configuration (operational.public_url), not
      // an entry that can be deleted; only the admin deletes.
      ctx.admin ? { label: 'Actions', cell: (e) => (e.name !== OWN ? button('Delete', async () => {
        if (await confirmDelete('Delete endpoint', `Delete the known endpoint ${e.name}?`, null,
          () => api('DELETE', `/api/v1/endpoints/${encodeURIComponent(e.name)}`))) await refresh();
      }, { class: 'danger' }) : '') } : null,
    ].filter(Boolean), items, 'No known endpoints.'),
    ctx.admin ? [h('h2', {}, 'Add endpoint'), form([
      field('Name', h('input', { name: 'name', required: true, autocomplete: 'off' })),
      field('URL', h('input', { name: 'url', required: true, autocomplete: 'off', spellcheck: 'false', placeholder: 'mqtts://mqtt.example:8883' })),
      field('Kind', select('kind', KINDS.map((k) => [k, k]), 'other')),
    ], 'Add endpoint', async (f) => {
      await api('POST', '/api/v1/endpoints', { body: { name: value(f, 'name'), url: value(f, 'url'), kind: value(f, 'kind') } });
      await refresh();
    })] : null);
  return null;
}
