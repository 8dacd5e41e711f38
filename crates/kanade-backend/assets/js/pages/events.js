// The events timeline (GET /api/events): fleet-wide on its own page, one PC's on its agent
// page. Newest first, filtered by PC, kind (or a prefix: agent, job) and time, paged by cursor.

import { api, h, table, time, query, fill, link, execLink } from '../core.js';

const KINDS = [['', 'all kinds'], ['agent', 'agent (started, stopping, online, offline, updated…)'], ['job', 'job (started, finished)']];

/** The filter form and the table; `pc` fixes the PC (the agent page). */
export function timeline({ pc, limit = 50 } = {}) {
  const kind = h('input', { id: 'events-kind', list: 'events-kinds', placeholder: 'all kinds' });
  const kinds = h('datalist', { id: 'events-kinds' }, ...KINDS.filter(([k]) => k).map(([k, label]) => h('option', { value: k }, label)));
  const pcField = pc ? null : h('input', { id: 'events-pc', placeholder: 'every PC' });
  const since = h('input', { id: 'events-since', type: 'datetime-local' });
  const out = h('div', { 'aria-live': 'polite' });
  let cursor = null;
  let rows = [];
  const more = h('button', { type: 'button', id: 'events-more', onclick: () => load(true) }, 'Older events');
  async function load(append) {
    const r = await api('GET', `/api/events${query({
      pc: pc || pcField.value.trim(), kind: kind.value.trim(),
      since: since.value ? new Date(since.value).getTime() : undefined, cursor: append ? cursor : undefined, limit,
    })}`);
    rows = append ? rows.concat(r.events) : r.events;
    cursor = r.next_cursor;
    fill(out, table([
      { label: 'When', cell: (e) => time(e.at) },
      ...(pc ? [] : [{ label: 'PC', cell: (e) => link(`#/agents/${encodeURIComponent(e.pc_id)}`, e.pc_id) }]),
      { label: 'Event', cell: (e) => h('span', { class: `event ${e.kind.split('.')[0]}`, 'data-kind': e.kind }, e.kind) },
      { label: 'Execution', cell: (e) => (e.exec_id ? execLink(e.exec_id) : '') },
      { label: 'Detail', cell: (e) => detail(e.data) },
    ], rows, { empty: 'No events match.', caption: pc ? `Events of ${pc}` : 'Events' }), cursor ? more : null);
  }
  const form = h('form', { class: 'inline', role: 'search', onsubmit: (e) => { e.preventDefault(); load(false); } },
    pcField ? h('label', { for: 'events-pc' }, 'PC', pcField) : null,
    h('label', { for: 'events-kind' }, 'Kind', kind, kinds), h('label', { for: 'events-since' }, 'Since', since),
    h('button', { type: 'submit', class: 'primary', id: 'events-filter' }, 'Filter'));
  return { form, out, load };
}

function detail(data) {
  const text = Object.entries(data || {}).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ');
  return text.length <= 100 ? h('code', {}, text) : h('details', {}, h('summary', {}, `${text.slice(0, 100)}…`), h('pre', {}, JSON.stringify(data, null, 2)));
}

export async function list(main) {
  const t = timeline({ limit: 100 });
  main.append(h('h1', {}, 'Events'),
    h('p', { class: 'muted' }, 'What happened on the endpoints: agents starting, stopping, updating, going offline and coming back, jobs starting and finishing, and what jobs with emit: events reported.'),
    t.form, t.out);
  await t.load(false);
}
