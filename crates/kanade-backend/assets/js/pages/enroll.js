// Enrolment: tokens that let a PC install the agent and get its own broker credentials with
// one line, and revoking an enrolled agent's credentials.

import { api, h, table, time, toast, fill, problems, badge } from '../core.js';

function state(t) {
  const now = Date.now();
  if (t.revoked_at) return 'revoked';
  if (Date.parse(t.expires_at) <= now) return 'expired';
  if (t.uses >= t.max_uses) return 'used-up';
  return 'usable';
}

/** A one-line command with a Copy button. */
function line(id, text) {
  const code = h('pre', { id, class: 'install-line' }, text);
  const copy = h('button', { type: 'button', onclick: async () => {
    try { await navigator.clipboard.writeText(text); toast('Copied'); } catch { toast('Select the line and copy it', true); }
  } }, 'Copy');
  return h('div', { class: 'install' }, code, copy);
}

export async function render(main) {
  const tokens = h('div');
  const created = h('div', { id: 'enroll-created' });
  main.append(h('h1', {}, 'Enrol PCs'),
    h('p', { class: 'muted' }, 'A token lets a PC download the agent, get its own broker credentials and install the service with one line. '
      + 'Publish an agent release first (kanade agent publish); revoke an agent\'s credentials below or with kanade agents revoke.'),
    form(), created, h('h2', {}, 'Tokens'), tokens, revokeForm());

  async function load() {
    const r = await api('GET', '/api/enroll/tokens');
    fill(tokens, table([
      { label: 'Token', cell: (t) => h('span', { class: 'id' }, t.id) },
      { label: 'State', cell: (t) => badge(state(t)) },
      { label: 'Uses', num: true, cell: (t) => `${t.uses}/${t.max_uses}` },
      { label: 'Expires', cell: (t) => time(Date.parse(t.expires_at)) },
      { label: 'Groups', cell: (t) => t.groups.join(', ') },
      { label: 'Created by', cell: (t) => t.created_by },
      { label: '', cell: (t) => (state(t) === 'usable' ? h('button', { type: 'button', class: 'danger', onclick: async () => {
        try { await api('DELETE', `/api/enroll/tokens/${encodeURIComponent(t.id)}`); toast(`Token ${t.id} revoked`); load(); } catch (e) { toast(e.message, true); }
      } }, 'Revoke') : '') },
    ], r.items, { empty: 'No enrolment tokens yet.', caption: 'Enrolment tokens' }));
  }

  function form() {
    const expires = h('input', { id: 'enroll-expires', value: '24h', required: true, size: 6 });
    const uses = h('input', { id: 'enroll-uses', type: 'number', min: 1, value: 1, required: true });
    const groups = h('input', { id: 'enroll-groups', placeholder: 'canary, tokyo' });
    const errors = h('div', { id: 'enroll-errors' });
    return h('section', { class: 'panel', 'aria-labelledby': 'new-enroll-h' }, h('h2', { id: 'new-enroll-h' }, 'New token'),
      h('form', { class: 'inline', onsubmit: async (e) => {
        e.preventDefault();
        fill(errors);
        const body = {
          expires_in: expires.value.trim(),
          max_uses: Number(uses.value),
          groups: groups.value.split(',').map((g) => g.trim()).filter(Boolean),
        };
        try {
          const t = await api('POST', '/api/enroll/tokens', body);
          fill(created, h('section', { class: 'panel', 'aria-labelledby': 'created-h' },
            h('h2', { id: 'created-h' }, `Token ${t.id}`),
            h('p', {}, `${t.max_uses} use${t.max_uses === 1 ? '' : 's'}, expires `, time(Date.parse(t.expires_at)),
              t.groups.length ? `, joins ${t.groups.join(', ')}` : '', '. The token is in these lines and is not shown again.'),
            h('h3', {}, 'Linux, as root'), line('install-linux', t.install.linux),
            h('h3', {}, 'Windows, in an elevated PowerShell'), line('install-windows', t.install.windows)));
          load();
        } catch (err) { errors.append(problems(err)); }
      } },
      h('label', { for: 'enroll-expires' }, 'Valid for', expires),
      h('label', { for: 'enroll-uses' }, 'PCs', uses),
      h('label', { for: 'enroll-groups' }, 'Groups', groups),
      h('button', { type: 'submit', class: 'primary', id: 'create-enroll' }, 'Create token'), errors));
  }

  function revokeForm() {
    const pc = h('input', { id: 'revoke-pc', required: true, placeholder: 'PC id' });
    const out = h('div', { id: 'revoke-result' });
    return h('section', { class: 'panel', 'aria-labelledby': 'revoke-h' }, h('h2', { id: 'revoke-h' }, 'Revoke an agent\'s credentials'),
      h('form', { class: 'inline', onsubmit: async (e) => {
        e.preventDefault();
        fill(out);
        if (!confirm(`Revoke ${pc.value}'s broker credentials? It is disconnected and stays out until it enrols again.`)) return;
        try {
          const r = await api('DELETE', `/api/agents/${encodeURIComponent(pc.value.trim())}/credentials`);
          fill(out, h('p', {}, `${r.pc_id}: ${r.detail}`));
        } catch (err) { out.append(problems(err)); }
      } }, h('label', { for: 'revoke-pc' }, 'PC', pc), h('button', { type: 'submit', class: 'danger', id: 'revoke-agent' }, 'Revoke'), out));
  }

  await load();
}
