// The signed-in user's own account: the second factor (TOTP) — set up with a QR code, confirm
// with a first code, recovery codes shown once — or turn it off.

import { api, h, fill, problems, toast, session } from '../core.js';

const SVG = 'http://www.w3.org/2000/svg';

/** A QR code from the backend's rows of '1'/'0', drawn as SVG rectangles with a quiet zone. */
function qrCode(rows) {
  const n = rows.length;
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', `-4 -4 ${n + 8} ${n + 8}`);
  svg.setAttribute('width', '220');
  svg.setAttribute('height', '220');
  // Whole modules, no anti-aliased seams between them for a camera to trip on.
  svg.setAttribute('shape-rendering', 'crispEdges');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', 'QR code for an authenticator app');
  svg.setAttribute('data-testid', 'mfa-qr');
  const bg = document.createElementNS(SVG, 'rect');
  for (const [k, v] of [['x', -4], ['y', -4], ['width', n + 8], ['height', n + 8], ['fill', '#fff']]) bg.setAttribute(k, v);
  svg.append(bg);
  rows.forEach((row, y) => [...row].forEach((bit, x) => {
    if (bit !== '1') return;
    const r = document.createElementNS(SVG, 'rect');
    for (const [k, v] of [['x', x], ['y', y], ['width', 1], ['height', 1], ['fill', '#000']]) r.setAttribute(k, v);
    svg.append(r);
  }));
  return svg;
}

export async function render(main) {
  const me = await api('GET', '/api/auth/me');
  const box = h('section', { class: 'panel', 'aria-labelledby': 'mfa-h' });
  main.append(h('h1', {}, `Account ${me.name}`), box);
  draw();

  function draw() {
    fill(box, h('h2', { id: 'mfa-h' }, 'Second factor'));
    if (me.via !== 'password') {
      box.append(h('p', { class: 'muted' }, 'Only a password account has a second factor.'));
      return;
    }
    if (me.must_set_up_mfa) {
      box.append(h('p', { class: 'errors', role: 'alert' }, 'Admins must set up a second factor before anything else (auth.require_mfa_for_admins).'));
    }
    if (me.mfa) {
      const password = h('input', { id: 'mfa-disable-password', type: 'password', autocomplete: 'current-password', required: true });
      const error = h('div');
      box.append(h('p', { 'data-testid': 'mfa-state' }, 'On: signing in asks for a code from your authenticator app.'),
        h('form', { onsubmit: async (e) => {
          e.preventDefault();
          fill(error);
          try {
            await api('POST', '/api/auth/mfa/disable', { password: password.value });
            me.mfa = false;
            toast('Second factor turned off');
            draw();
          } catch (err) { error.append(problems(err)); }
        } }, h('label', { for: 'mfa-disable-password' }, 'Password', password), error,
        h('button', { type: 'submit', class: 'danger', id: 'mfa-disable' }, 'Turn off')));
      return;
    }
    const password = h('input', { id: 'mfa-setup-password', type: 'password', autocomplete: 'current-password', required: true });
    const error = h('div');
    box.append(h('p', { 'data-testid': 'mfa-state' }, 'Off: signing in needs the password only.'),
      h('form', { onsubmit: async (e) => {
        e.preventDefault();
        fill(error);
        try { await setup(await api('POST', '/api/auth/mfa/setup', { password: password.value })); }
        catch (err) { error.append(problems(err)); }
      } }, h('label', { for: 'mfa-setup-password' }, 'Your password, to set one up', password), error,
      h('button', { type: 'submit', class: 'primary', id: 'mfa-setup' }, 'Set up')));
  }

  async function setup(s) {
    const code = h('input', { id: 'mfa-code', autocomplete: 'one-time-code', inputmode: 'numeric', required: true });
    const error = h('div');
    fill(box, h('h2', { id: 'mfa-h' }, 'Second factor'),
      h('p', {}, 'Scan this with an authenticator app, or type the secret in; then enter the code it shows.'),
      qrCode(s.qr),
      h('p', {}, 'Secret: ', h('code', { 'data-testid': 'mfa-secret' }, s.secret)),
      h('form', { onsubmit: async (e) => {
        e.preventDefault();
        fill(error);
        try {
          const r = await api('POST', '/api/auth/mfa/enable', { code: code.value.trim() });
          me.mfa = true;
          me.must_set_up_mfa = false;
          if (session.user) session.set(session.token, { ...session.user, must_set_up_mfa: false, mfa: true });
          fill(box, h('h2', { id: 'mfa-h' }, 'Second factor'),
            h('p', { role: 'status', 'data-testid': 'mfa-state' }, 'On. Keep these recovery codes somewhere safe: each signs you in once without your phone, and they are not shown again.'),
            h('ul', { class: 'recovery', 'data-testid': 'mfa-recovery' }, r.recovery_codes.map((c) => h('li', {}, h('code', {}, c)))),
            h('a', { href: '#/' }, 'Continue'));
        } catch (err) { error.append(problems(err)); }
      } }, h('label', { for: 'mfa-code' }, 'Code', code), error, h('button', { type: 'submit', class: 'primary', id: 'mfa-confirm' }, 'Confirm')));
    code.focus();
  }
}
