// Notifications (POST/GET /api/notifications): compose one for the people at the endpoints, list
// what was sent with how many PCs acknowledged it, and per notification, who acknowledged it
// where and which PCs are outstanding — redrawn live as acknowledgements arrive.

import { api, h, table, time, fill, link, badge, can, toast, problems } from '../core.js';
import { follow } from '../live.js';

function target(t) {
  if (t.all) return 'all';
  const parts = [];
  if (t.groups && t.groups.length) parts.push(`groups: ${t.groups.join(', ')}`);
  if (t.pcs && t.pcs.length) parts.push(`pcs: ${t.pcs.join(', ')}`);
  return parts.join('; ');
}

function compose(onSent) {
  const title = h('input', { id: 'notify-title', required: true, maxlength: 200, size: 50 });
  const body = h('textarea', { id: 'notify-body', rows: 4, cols: 60, placeholder: 'Markdown' });
  const priority = h('select', { id: 'notify-priority' }, ...['info', 'warn', 'urgent'].map((p) => h('option', { value: p }, p)));
  const kind = h('select', { id: 'notify-target-kind' }, h('option', { value: 'all' }, 'every PC'), h('option', { value: 'groups' }, 'groups'), h('option', { value: 'pcs' }, 'PCs'));
  const names = h('input', { id: 'notify-targets', placeholder: 'comma-separated names', size: 30 });
  const expires = h('input', { id: 'notify-expires', placeholder: '7d', size: 6 });
  const errors = h('div');
  const form = h('form', {
    id: 'notify-form',
    onsubmit: async (e) => {
      e.preventDefault();
      fill(errors);
      const list = names.value.split(',').map((s) => s.trim()).filter(Boolean);
      const t = kind.value === 'all' ? { all: true } : { [kind.value]: list };
      if (kind.value === 'all' && !confirm('Send this notification to every PC in the fleet?')) return;
      const req = { title: title.value, body: body.value, priority: priority.value, target: t };
      if (expires.value.trim()) req.expires_in = expires.value.trim();
      try {
        const r = await api('POST', '/api/notifications', req);
        toast(`Sent ${title.value}`);
        form.reset();
        onSent(r.id);
      } catch (err) { fill(errors, problems(err)); }
    },
  },
  h('p', {}, h('label', { for: 'notify-title' }, 'Title '), title),
  h('p', {}, h('label', { for: 'notify-body' }, 'Body '), body),
  h('p', {}, h('label', { for: 'notify-priority' }, 'Priority '), priority, ' ',
    h('label', { for: 'notify-target-kind' }, 'To '), kind, ' ', names, ' ',
    h('label', { for: 'notify-expires' }, 'Expires in '), expires),
  errors,
  h('button', { type: 'submit' }, 'Send'));
  return form;
}

export async function list(main) {
  const out = h('div');
  main.append(h('h1', {}, 'Notifications'),
    h('p', { class: 'muted' }, 'Messages for the people at the endpoints. Agents keep them (also when offline at send time), show them to the signed-in user where the OS allows, and list them with kanade-agent notifications list; a user acknowledges with kanade-agent notifications ack <id>.'));
  main.append(out);
  // Below the list, folded: the page is mostly for following what was sent.
  if (can('operator')) {
    main.append(h('details', { id: 'notify-compose' }, h('summary', {}, 'Send a notification'),
      compose((id) => { location.hash = `#/notifications/${id}`; })));
  }
  const load = async () => {
    const r = await api('GET', '/api/notifications');
    fill(out, table([
      { label: 'Title', cell: (n) => link(`#/notifications/${n.id}`, n.title) },
      { label: 'State', cell: (n) => badge(n.state) },
      { label: 'Priority', cell: (n) => badge(n.priority) },
      { label: 'To', cell: (n) => target(n.target) },
      { label: 'Acknowledged', num: true, cell: (n) => `${n.acked} / ${n.recipients}` },
      { label: 'Sent', cell: (n) => time(n.created_at) },
      { label: 'By', cell: (n) => n.created_by },
    ], r.notifications, { empty: 'No notification sent yet.', caption: 'Sent notifications' }));
  };
  return follow(['notification', 'agent_up'], load, 500);
}

export async function detail(main, id) {
  const head = h('div');
  const out = h('div');
  main.append(h('h1', {}, 'Notification'), head, out);
  const load = async () => {
    let r;
    try { r = await api('GET', `/api/notifications/${encodeURIComponent(id)}`); } catch (e) { fill(out, h('p', { class: 'errors', role: 'alert' }, e.message)); return; }
    const withdraw = r.state === 'active' && can('operator')
      ? h('button', {
        type: 'button', id: 'notify-withdraw',
        onclick: async () => {
          if (!confirm(`Withdraw "${r.title}"? Agents drop it.`)) return;
          try { await api('DELETE', `/api/notifications/${encodeURIComponent(id)}`); toast('Withdrawn'); load(); } catch (e) { toast(e.message, true); }
        },
      }, 'Withdraw')
      : null;
    fill(head,
      h('h2', {}, r.title, ' ', badge(r.priority), ' ', badge(r.state)),
      h('p', { class: 'muted' }, 'Sent ', time(r.created_at), ` by ${r.created_by} to ${target(r.target)}; expires `, time(r.expires_at),
        r.withdrawn_at ? h('span', {}, '; withdrawn ', time(r.withdrawn_at), ` by ${r.withdrawn_by}`) : ''),
      h('pre', { class: 'output' }, r.body),
      withdraw);
    fill(out, table([
      { label: 'PC', cell: (p) => link(`#/agents/${encodeURIComponent(p.pc_id)}`, p.pc_id) },
      { label: 'Status', cell: (p) => badge(p.status) },
      { label: 'Acknowledged by', cell: (p) => h('span', {}, ...(p.acks || []).flatMap((a, i) => [i ? ', ' : '', `${a.user} at `, time(a.at)])) },
    ], r.pcs, { empty: 'No PC is addressed yet (none of its groups has a known agent).', caption: `PCs (${r.acked} of ${r.recipients} acknowledged)` }));
  };
  return follow(['notification', 'agent_up'], load, 300, (e) => e.lagged || e.type !== 'notification' || e.id === id);
}
