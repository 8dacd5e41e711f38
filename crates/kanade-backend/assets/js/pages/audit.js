import { api, h, table, time, query, fill } from '../core.js';

export async function list(main) {
  const actor = h('input', { id: 'audit-actor' });
  const action = h('input', { id: 'audit-action', placeholder: 'e.g. exec.kill' });
  const target = h('input', { id: 'audit-target' });
  const since = h('input', { id: 'audit-since', type: 'datetime-local' });
  const client = h('select', { id: 'audit-client' },
    ...['', 'cli', 'dashboard', 'api', 'scheduler', 'backend'].map((c) => h('option', { value: c }, c || 'any client')));
  const out = h('div');
  let cursor = null;
  let rows = [];
  const more = h('button', { type: 'button', onclick: () => load(true) }, 'Older entries');
  main.append(h('h1', {}, 'Audit log'),
    h('form', { class: 'inline', onsubmit: (e) => { e.preventDefault(); load(false); } },
      h('label', { for: 'audit-actor' }, 'Actor', actor), h('label', { for: 'audit-action' }, 'Action', action),
      h('label', { for: 'audit-target' }, 'Target', target), h('label', { for: 'audit-since' }, 'Since', since),
      h('label', { for: 'audit-client' }, 'Client', client),
      h('button', { type: 'submit', class: 'primary' }, 'Filter')), out);
  async function load(append) {
    const r = await api('GET', `/api/audit${query({
      actor: actor.value.trim(), action: action.value.trim(), target: target.value.trim(), client: client.value,
      since: since.value ? new Date(since.value).getTime() : undefined, cursor: append ? cursor : undefined, limit: 100,
    })}`);
    rows = append ? rows.concat(r.items) : r.items;
    cursor = r.next_cursor;
    fill(out, table([
      { label: 'When', cell: (a) => time(a.at_ms) },
      { label: 'Actor', cell: (a) => a.actor },
      { label: 'Action', cell: (a) => a.action },
      { label: 'Target', cell: (a) => a.target || '' },
      { label: 'From', cell: (a) => a.source || '' },
      { label: 'Client', cell: (a) => a.client || '' },
      { label: 'Detail', cell: detail },
    ], rows, { empty: 'No audit entries match.', caption: 'Audit log' }), cursor ? more : null);
  }
  await load(false);
}

/** Short details inline; long ones folded to their first line, unfolded on click. */
function detail(a) {
  const text = JSON.stringify(a.detail);
  if (!text || text === 'null') return '';
  if (text.length <= 80) return h('code', { class: 'audit-detail' }, text);
  return h('details', { class: 'audit-detail' }, h('summary', {}, `${text.slice(0, 80)}…`),
    h('pre', {}, JSON.stringify(a.detail, null, 2)));
}
