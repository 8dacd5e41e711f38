import { api, session, h, problems, fill } from '../core.js';

export async function render(main) {
  const error = h('div');
  const name = h('input', { id: 'login-name', name: 'name', autocomplete: 'username', required: true });
  const password = h('input', { id: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  // Shown once the backend says the account has a second factor.
  const code = h('input', { id: 'login-code', name: 'code', autocomplete: 'one-time-code', inputmode: 'numeric' });
  const codeField = h('label', { for: 'login-code', hidden: true }, 'Code from your authenticator app (or a recovery code)', code);
  const form = h('form', { onsubmit: submit },
    h('label', { for: 'login-name' }, 'User name', name),
    h('label', { for: 'login-password' }, 'Password', password),
    codeField,
    error,
    h('button', { class: 'primary', type: 'submit', id: 'login-submit' }, 'Sign in'));
  main.append(h('div', { class: 'login panel' }, h('h1', {}, 'Sign in to kanade'), form));
  name.focus();

  async function submit(e) {
    e.preventDefault();
    fill(error);
    const body = { name: name.value, password: password.value };
    if (!codeField.hidden && code.value.trim()) body.code = code.value.trim();
    try {
      const r = await api('POST', '/api/auth/login', body);
      session.set(r.token, r.user);
      if (r.user.must_change_password) changePassword(main, password.value);
      else if (r.user.must_set_up_mfa) location.hash = '#/account';
      else location.hash = '#/';
    } catch (err) {
      if (err.code === 'mfa_required' && codeField.hidden) {
        codeField.hidden = false;
        code.focus();
        return;
      }
      error.append(problems(err));
    }
  }
}

function changePassword(main, current) {
  const error = h('div');
  const fresh = h('input', { id: 'new-password', type: 'password', autocomplete: 'new-password', required: true });
  fill(main, h('div', { class: 'login panel' },
    h('h1', {}, 'Choose a new password'),
    h('p', { class: 'muted' }, 'Your password was set by an administrator; pick your own to continue.'),
    h('form', { onsubmit: async (e) => {
      e.preventDefault();
      fill(error);
      try {
        await api('POST', '/api/auth/password', { current, new: fresh.value });
        const r = await api('POST', '/api/auth/login', { name: session.user.name, password: fresh.value });
        session.set(r.token, r.user);
        location.hash = r.user.must_set_up_mfa ? '#/account' : '#/';
      } catch (err) { error.append(problems(err)); }
    } },
    h('label', { for: 'new-password' }, 'New password', fresh), error,
    h('button', { class: 'primary', type: 'submit' }, 'Save and continue'))));
  fresh.focus();
}
