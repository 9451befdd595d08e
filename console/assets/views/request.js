// Request details (#/provisioning/ID): every field, status, last rejection, the Configuration
// preview (what a device would get now), and the Executions tab with Show Log per attempt.

import { api, accountPath } from '../api.js';
import { button, errorMessage, facts, h, header, lacksAccount, notice, replace, table, when } from '../dom.js';
import { deleteRequest, editRequest } from './provisioning.js';

const yesNo = (b) => (b ? 'Yes' : 'No');

function details(r) {
  return facts([
    ['Provision Target Client ID', r.clientId],
    ['Provision Username', r.provisionUsername],
    ['Provisioned Broker URL', r.brokerUrl],
    ['Status', r.status],
    ['Closed', yesNo(r.closed)],
    ['Activates On', when(r.activatesOn)],
    ['Expires On', r.expiresOn ? when(r.expiresOn) : 'Never'],
    ['Generate Activation Key', yesNo(r.generateActivationKey)],
    ['Reserve User', yesNo(r.reserveUser)],
    ['Device Connection Coupling', r.connectionCoupling],
    ['VPN Access', yesNo(r.vpnAccess)],
    ['Password Length', String(r.passwordLength)],
    ['Created', when(r.createdOn)],
    ['Modified', when(r.modifiedOn)],
    ['Last rejection', r.lastRejection ? `${when(r.lastRejection.at)}: ${r.lastRejection.reason}` : 'None'],
    ['Warnings', r.warnings && r.warnings.length ? h('ul', {}, r.warnings.map((w) => h('li', {}, w))) : 'None'],
    ['Additional Device Configuration', r.additionalConfiguration ? h('pre', { class: 'mono' }, r.additionalConfiguration) : 'None'],
  ]);
}

async function showLog(path, execution) {
  let full;
  let failure = null;
  try { full = await api('GET', `${path}/executions/${encodeURIComponent(execution.id)}`); } catch (err) { failure = err; }
  await notice(`Log of execution ${execution.id}`, failure ? errorMessage(failure) : table('Execution log', [
    { label: 'At', cell: (l) => when(l.at) },
    { label: 'Level', cell: (l) => l.level },
    { label: 'Message', cell: (l) => l.message },
  ], full.log || [], 'The log is empty.'));
}

async function executions(path) {
  const { items } = await api('GET', `${path}/executions`);
  return table('Executions', [
    { label: 'Started', cell: (e) => when(e.startedOn) },
    { label: 'Ended', cell: (e) => when(e.endedOn) },
    { label: 'Outcome', cell: (e) => h('span', { class: `badge ${e.outcome.toLowerCase()}` }, e.outcome) },
    { label: 'Provisioning', cell: (e) => e.provisioningProtocol || 'PROV-V1' },
    { label: 'Protocol', cell: (e) => e.protocol || '' },
    { label: 'Peer', cell: (e) => e.peer || '' },
    { label: 'Operational arrival', cell: (e) => when(e.operationalConnectedOn) },
    { label: 'Log', cell: (e) => button('Show Log', () => showLog(path, e)) },
  ], items, 'No executions yet: the device has not tried to provision.');
}

async function preview(path) {
  return h('pre', { class: 'mono preview' }, await api('GET', `${path}/configuration-preview`, { accept: 'application/xml' }));
}

/** Tabs (WAI-ARIA pattern: arrow keys move between them); each panel loads when shown. */
function tabs(panels) {
  const list = h('div', { role: 'tablist', 'aria-label': 'Request' });
  const area = h('div', { role: 'tabpanel', tabindex: '0' });
  const buttons = panels.map(([label, load], i) => {
    const b = h('button', { type: 'button', role: 'tab', id: `tab-${i}`, 'aria-selected': 'false', tabindex: '-1' }, label);
    b.addEventListener('click', () => select(i));
    b.addEventListener('keydown', (ev) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[ev.key];
      if (step) { const j = (i + step + panels.length) % panels.length; select(j); buttons[j].focus(); }
    });
    return b;
  });
  async function select(i) {
    buttons.forEach((b, j) => { b.setAttribute('aria-selected', String(i === j)); b.tabIndex = i === j ? 0 : -1; });
    area.setAttribute('aria-labelledby', buttons[i].id);
    replace(area, h('p', { class: 'hint' }, 'Loading…'));
    try { replace(area, await panels[i][1]()); } catch (err) { if (err.status !== 401) replace(area, errorMessage(err)); }
  }
  list.append(...buttons);
  return { element: h('div', { class: 'tabs' }, list, area), select };
}

export async function render(ctx) {
  if (lacksAccount(ctx, 'Provision request')) return null;
  const path = accountPath(ctx.account, `/provision-requests/${encodeURIComponent(ctx.param)}`);
  const r = await api('GET', path);
  const t = tabs([
    ['Details', async () => details(r)],
    ['Configuration preview', () => preview(path)],
    ['Executions', () => executions(path)],
  ]);
  replace(ctx.root,
    h('p', {}, h('a', { href: '#/provisioning' }, '← Provisioning')),
    header(`Request ${r.clientId}`,
      r.status === 'CREATED' ? button('Edit', async () => { if (await editRequest(ctx, r)) ctx.go(location.hash); }) : null,
      button('Delete', async () => { if (await deleteRequest(ctx, r)) ctx.go('#/provisioning'); }, { class: 'danger' })),
    t.element);
  await t.select(0);
  return null;
}
