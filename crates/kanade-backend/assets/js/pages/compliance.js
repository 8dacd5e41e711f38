// Compliance (GET /api/checks): per check, its PCs counted by status; a check's page lists
// its PCs, filtered by status.

import { api, h, table, time, fill, link, badge, query } from '../core.js';
import { follow } from '../live.js';

export async function list(main) {
  const out = h('div');
  main.append(h('h1', {}, 'Compliance'),
    h('p', { class: 'muted' }, 'Jobs with a check: in their manifest report pass, warn or fail per PC; a run that fails, crashes or prints no such status is unknown, and so is a status no run confirmed within [retention] check_stale.'),
    out);
  const load = async () => {
    const r = await api('GET', '/api/checks');
    const count = (c, s) => (c[s] ? link(`#/compliance/${encodeURIComponent(c.name)}?status=${s}`, String(c[s])) : '0');
    fill(out, table([
      { label: 'Check', cell: (c) => link(`#/compliance/${encodeURIComponent(c.name)}`, c.name) },
      { label: 'Pass', num: true, cell: (c) => count(c, 'pass') },
      { label: 'Warn', num: true, cell: (c) => count(c, 'warn') },
      { label: 'Fail', num: true, cell: (c) => count(c, 'fail') },
      { label: 'Unknown', num: true, cell: (c) => count(c, 'unknown') },
    ], r.checks, { empty: 'No check has reported yet: add check: to a job manifest.', caption: 'Checks' }));
  };
  return follow(['result'], load, 1000);
}

export async function detail(main, name) {
  const [bare, qs] = name.split('?');
  const check = decodeURIComponent(bare);
  const status = h('select', { id: 'check-status', onchange: () => load() },
    ...['', 'fail', 'warn', 'unknown', 'pass'].map((s) => h('option', { value: s, selected: new URLSearchParams(qs || '').get('status') === s }, s || 'every status')));
  const out = h('div');
  main.append(h('h1', {}, `Check ${check}`),
    h('form', { class: 'inline', onsubmit: (e) => e.preventDefault() }, h('label', { for: 'check-status' }, 'Status', status)), out);
  async function load() {
    try {
      const r = await api('GET', `/api/checks/${encodeURIComponent(check)}${query({ status: status.value, limit: 5000 })}`);
      fill(out, table([
        { label: 'PC', cell: (p) => link(`#/agents/${encodeURIComponent(p.pc_id)}`, p.pc_id) },
        { label: 'Status', cell: (p) => h('span', {}, badge(p.status), p.stale ? ' (stale)' : '') },
        { label: 'Since', cell: (p) => time(p.since) },
        { label: 'Last run', cell: (p) => time(p.updated) },
        { label: 'Detail', cell: (p) => p.detail || '' },
      ], r.pcs, { empty: 'No PC in this status.', caption: `PCs of ${check}` }), r.next_cursor ? h('p', { class: 'muted' }, 'The first 5,000 PCs.') : null);
    } catch (e) { fill(out, h('p', { class: 'errors', role: 'alert' }, e.message)); }
  }
  return follow(['result'], load, 1000);
}
