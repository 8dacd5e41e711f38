import { api, h, table, time, problems, toast, badge, session, fill } from '../core.js';

const ROLES = ['viewer', 'operator', 'admin'];

function roleSelect(id, value) {
  return h('select', { id }, ROLES.map((r) => h('option', { value: r, selected: r === value || undefined }, r)));
}

export async function render(main) {
  const users = h('div');
  const tokens = h('div');
  main.append(h('h1', {}, 'Users and API tokens'), h('h2', {}, 'Users'), users, newUser(), h('h2', {}, 'API tokens'), tokens, newToken());

  async function loadUsers() {
    const r = await api('GET', '/api/users');
    fill(users, table([
      { label: 'User', cell: (u) => u.name },
      { label: 'Role', cell: (u) => {
        const sel = roleSelect(`role-${u.name}`, u.role);
        sel.setAttribute('aria-label', `Role of ${u.name}`);
        sel.addEventListener('change', () => change(u.name, { role: sel.value }));
        return sel;
      } },
      { label: 'State', cell: (u) => badge(u.disabled ? 'disabled' : 'enabled') },
      { label: 'Must change password', cell: (u) => (u.must_change_password ? 'yes' : 'no') },
      { label: 'Second factor', cell: (u) => (u.mfa_enabled_ms ? h('span', {}, 'on ', h('button', { type: 'button', class: 'mfa-reset', 'data-user': u.name, onclick: async () => {
        if (!confirm(`Remove ${u.name}'s second factor? They sign in with the password alone and set up a new one.`)) return;
        try { await api('DELETE', `/api/users/${encodeURIComponent(u.name)}/mfa`); toast(`${u.name}'s second factor removed`); loadUsers(); } catch (e) { toast(e.message, true); }
      } }, 'Reset')) : 'off') },
      { label: 'Created', cell: (u) => time(u.created_ms) },
      { label: '', cell: (u) => (u.name === session.user.name ? '' : h('span', {},
        h('button', { type: 'button', onclick: () => change(u.name, { disabled: !u.disabled }) }, u.disabled ? 'Enable' : 'Disable'), ' ',
        h('button', { type: 'button', class: 'danger', onclick: async () => {
          if (!confirm(`Delete user ${u.name}?`)) return;
          try { await api('DELETE', `/api/users/${encodeURIComponent(u.name)}`); loadUsers(); } catch (e) { toast(e.message, true); }
        } }, 'Delete'))) },
    ], r.items, { caption: 'Users' }));
  }

  async function change(name, patch) {
    try { await api('PATCH', `/api/users/${encodeURIComponent(name)}`, patch); toast(`${name} updated`); }
    catch (e) { toast(e.message, true); }
    loadUsers();
  }

  function newUser() {
    const name = h('input', { id: 'new-user-name', required: true, autocomplete: 'off' });
    const password = h('input', { id: 'new-user-password', type: 'password', required: true, autocomplete: 'new-password' });
    const role = roleSelect('new-user-role', 'viewer');
    const errors = h('div');
    return h('form', { class: 'inline', onsubmit: async (e) => {
      e.preventDefault();
      fill(errors);
      try {
        await api('POST', '/api/users', { name: name.value, password: password.value, role: role.value });
        toast(`${name.value} created; they choose their own password at first sign-in`);
        name.value = ''; password.value = '';
        loadUsers();
      } catch (err) { errors.append(problems(err)); }
    } }, h('label', { for: 'new-user-name' }, 'Name', name), h('label', { for: 'new-user-password' }, 'Temporary password', password),
    h('label', { for: 'new-user-role' }, 'Role', role), h('button', { type: 'submit', class: 'primary' }, 'Add user'), errors);
  }

  async function loadTokens() {
    const r = await api('GET', '/api/tokens');
    fill(tokens, table([
      { label: 'Token', cell: (t) => t.name },
      { label: 'Role', cell: (t) => t.role },
      { label: 'Created by', cell: (t) => t.created_by },
      { label: 'Created', cell: (t) => time(t.created_ms) },
      { label: 'State', cell: (t) => badge(t.revoked_ms ? 'revoked' : 'active') },
      { label: '', cell: (t) => (t.revoked_ms ? '' : h('button', { type: 'button', class: 'danger', onclick: async () => {
        try { await api('DELETE', `/api/tokens/${encodeURIComponent(t.id)}`); loadTokens(); } catch (e) { toast(e.message, true); }
      } }, 'Revoke')) },
    ], r.items, { empty: 'No API tokens.', caption: 'API tokens' }));
  }

  function newToken() {
    const name = h('input', { id: 'new-token-name', required: true });
    const role = roleSelect('new-token-role', 'viewer');
    const shown = h('div', { 'aria-live': 'polite' });
    return h('div', {}, h('form', { class: 'inline', onsubmit: async (e) => {
      e.preventDefault();
      fill(shown);
      try {
        const r = await api('POST', '/api/tokens', { name: name.value, role: role.value });
        shown.append(h('p', {}, 'Copy this token now; it is not shown again:'), h('pre', { 'data-testid': 'new-token' }, r.token));
        name.value = '';
        loadTokens();
      } catch (err) { shown.append(problems(err)); }
    } }, h('label', { for: 'new-token-name' }, 'Name', name), h('label', { for: 'new-token-role' }, 'Role', role),
    h('button', { type: 'submit', class: 'primary' }, 'Create token')), shown);
  }

  await loadUsers();
  await loadTokens();
}
