// Accounts: the list (an account token sees only its own), creating one (admin), and API
// tokens: created with the token shown once, revoked by id. The API lists no tokens, so the
// ones created in this tab are offered for revoking and any other is revoked by its id.

import { api, accountPath } from '../api.js';
import {
  button, confirm, dialog, errorMessage, field, form, h, header, message, replace, secretOnce,
  select, table, value, when,
} from '../dom.js';

const COUPLINGS = [['LOOSE', 'LOOSE'], ['STRICT', 'STRICT']];
/** Tokens created in this tab: `{account, id}` (never the token itself). */
const created = [];

async function revoke(ctx, account, id, status) {
  try {
    await api('DELETE', accountPath(account, `/tokens/${encodeURIComponent(id)}`));
  } catch (err) {
    replace(status, errorMessage(err, 'Revoking failed'));
    return false;
  }
  const i = created.findIndex((t) => t.account === account && t.id === id);
  if (i >= 0) created.splice(i, 1);
  replace(status, message('ok', `Token ${id} of ${account} revoked.`));
  return true;
}

async function createToken(ctx, account, status) {
  let token;
  try {
    token = await api('POST', accountPath(account, '/tokens'));
  } catch (err) {
    replace(status, errorMessage(err, 'Creating a token failed'));
    return;
  }
  created.push({ account, id: token.id });
  await dialog(`Token for ${account}`, (close) => h('div', {},
    secretOnce('API token', token.token),
    h('p', {}, `Token id: ${token.id} (needed to revoke it).`),
    h('div', { class: 'actions' }, button('Done', () => close()))));
  ctx.go('#/accounts');
}

function createForm(ctx) {
  return form([
    field('Name', h('input', { name: 'name', required: true, autocomplete: 'off' }), '1 to 64 of a-z, 0-9 and -.'),
    field('Minimum Password Length', h('input', { name: 'minPasswordLength', type: 'number', min: '1', max: '128' })),
    field('Default Coupling', select('defaultCoupling', [['', 'Server default'], ...COUPLINGS])),
  ], 'Create account', async (f) => {
    const body = { name: value(f, 'name'), defaultCoupling: value(f, 'defaultCoupling') };
    const min = value(f, 'minPasswordLength');
    if (min !== undefined) body.minPasswordLength = Number(min);
    await api('POST', '/api/v1/accounts', { body });
    await ctx.reload();
  });
}

export async function render(ctx) {
  const { items } = await api('GET', '/api/v1/accounts');
  const status = h('div', { class: 'status-area' });
  const rows = table('Accounts', [
    { label: 'Name', cell: (a) => a.name },
    { label: 'Minimum password length', cell: (a) => String(a.minPasswordLength) },
    { label: 'Default coupling', cell: (a) => a.defaultCoupling },
    { label: 'Created', cell: (a) => when(a.createdOn) },
    { label: 'Actions', cell: (a) => button('Create token', () => createToken(ctx, a.name, status)) },
  ], items, 'No accounts yet.');
  const mine = table('Tokens created here', [
    { label: 'Account', cell: (t) => t.account },
    { label: 'Token id', cell: (t) => h('code', {}, t.id) },
    { label: 'Actions', cell: (t) => button('Revoke', async () => {
      if (await confirm('Revoke token', `Revoke token ${t.id} of ${t.account}? Clients using it are refused at once.`, 'Revoke')
        && await revoke(ctx, t.account, t.id, status)) ctx.go('#/accounts');
    }) },
  ], created, 'No token created in this tab.');
  const byId = form([
    field('Token Account', select('account', items.map((a) => [a.name, a.name]), ctx.account || '')),
    field('Token ID', h('input', { name: 'id', required: true, autocomplete: 'off', class: 'mono' })),
  ], 'Revoke token', async (f) => {
    if (await revoke(ctx, value(f, 'account'), value(f, 'id') || '', status)) f.reset();
  });
  replace(ctx.root, header('Accounts'), status, rows,
    ctx.admin ? [h('h2', {}, 'Create account'), createForm(ctx)] : null,
    h('h2', {}, 'Tokens'), mine, h('h3', {}, 'Revoke a token by id'), byId);
  return null;
}
