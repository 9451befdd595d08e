// Users: device users and account users of the picked account. Account users (PROTOCOL.md
// 6.1) are created with permissions (a generated password is shown once), their permissions
// changed, disabled or enabled, deleted; device users may be disabled or enabled only.

import { api, accountPath } from '../api.js';
import {
  button, confirmDelete, dialog, errorMessage, field, form, h, header, lacksAccount, message,
  replace, secretOnce, table, uid, value, when,
} from '../dom.js';

const PERMISSIONS = ['broker:connect', 'data:read', 'data:write', 'device:read', 'device:manage'];

/** Permission checkboxes as one field named `permissions` (its errors show under it). */
function permissionBoxes(checked) {
  const error = h('p', { class: 'field-error', id: uid('permissions-error'), hidden: true });
  return h('fieldset', { class: 'field', 'data-field': 'permissions', 'aria-describedby': error.id },
    h('legend', {}, 'Permissions'),
    PERMISSIONS.map((p) => {
      const id = uid('perm');
      return h('div', { class: 'check' }, h('input', { type: 'checkbox', id, name: 'permissions', value: p, checked: checked.includes(p) }),
        h('label', { for: id }, p));
    }), error);
}

const chosen = (f) => [...f.querySelectorAll('input[name=permissions]:checked')].map((i) => i.value);

function userPath(ctx, u) { return accountPath(ctx.account, `/users/${encodeURIComponent(u.username)}`); }

function createForm(ctx, done) {
  return form([
    field('Name', h('input', { name: 'name', required: true, autocomplete: 'off', spellcheck: 'false' }), 'The username is NAME@ACCOUNT.'),
    field('Password', h('input', { name: 'password', type: 'password', autocomplete: 'new-password' }), 'At least 12 characters; empty: one is generated and shown once.'),
    permissionBoxes(['broker:connect']),
  ], 'Create user', async (f) => {
    const created = await api('POST', accountPath(ctx.account, '/users'), {
      body: { name: value(f, 'name'), password: f.elements.namedItem('password').value || undefined, permissions: chosen(f) },
    });
    f.reset();
    done(created);
  });
}

async function changePermissions(ctx, u) {
  return dialog(`Permissions of ${u.username}`, (close) => form([permissionBoxes(u.permissions)], 'Save permissions', async (f) => {
    await api('PATCH', userPath(ctx, u), { body: { permissions: chosen(f) } });
    close(true);
  }));
}

export async function render(ctx) {
  if (lacksAccount(ctx, 'Users')) return null;
  const status = h('div', { class: 'status-area' });
  const act = async (run) => {
    try { await run(); ctx.go('#/users'); } catch (err) { replace(status, errorMessage(err)); }
  };
  const { items } = await api('GET', accountPath(ctx.account, '/users'));
  const list = table('Users', [
    { label: 'Username', cell: (u) => u.username },
    { label: 'Kind', cell: (u) => u.kind },
    { label: 'Permissions', cell: (u) => u.permissions.join(', ') },
    { label: 'Reserved for', cell: (u) => u.reservedFor || '' },
    { label: 'Enabled', cell: (u) => (u.enabled ? 'Yes' : 'No') },
    { label: 'Created', cell: (u) => when(u.createdOn) },
    { label: 'Actions', cell: (u) => h('span', { class: 'row-actions' },
      u.kind === 'ACCOUNT' ? button('Change permissions', async () => { if (await changePermissions(ctx, u)) ctx.go('#/users'); }) : null,
      button(u.enabled ? 'Disable' : 'Enable', () => act(() => api('PATCH', userPath(ctx, u), { body: { enabled: !u.enabled } }))),
      u.kind === 'ACCOUNT' ? button('Delete', async () => {
        if (await confirmDelete('Delete user', `Delete ${u.username}? Its open sessions are disconnected.`, null, () => api('DELETE', userPath(ctx, u)))) ctx.go('#/users');
      }, { class: 'danger' }) : null) },
  ], items, 'No users yet.');
  replace(ctx.root, header('Users'), h('p', { class: 'hint' }, `Account ${ctx.account}.`), status, list,
    h('h2', {}, 'Create account user'),
    createForm(ctx, async (created) => {
      await dialog(`User ${created.username} created`, (close) => h('div', {},
        message('ok', `Created ${created.username}.`),
        created.password ? secretOnce('Password', created.password) : null,
        h('div', { class: 'actions' }, button('Done', () => close()))));
      ctx.go('#/users');
    }));
  return null;
}
