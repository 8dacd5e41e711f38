// Facts (GET /api/facts): the tables jobs with facts.explode fill, one table's rows with
// filters, and one PC's rows of every table (its agent page).

import { api, h, table, fill, link, query, problems } from '../core.js';

export async function list(main) {
  const r = await api('GET', '/api/facts');
  main.append(h('h1', {}, 'Facts'),
    h('p', { class: 'muted' }, 'Tables filled from jobs\' JSON output (facts.explode in a manifest): each run replaces its PC\'s rows.'),
    table([
      { label: 'Table', cell: (t) => link(`#/facts/${encodeURIComponent(t.name)}`, t.name) },
      { label: 'Job', cell: (t) => link(`#/jobs/${encodeURIComponent(t.job_id)}`, t.job_id) },
      { label: 'Key', cell: (t) => ['pc_id', ...t.key].join(', ') },
      { label: 'Columns', cell: (t) => Object.entries(t.columns).map(([n, ty]) => `${n} ${ty}`).join(', ') },
      { label: 'Rows', num: true, cell: (t) => String(t.rows) },
    ], r.tables, { empty: 'No facts table yet: add facts: { explode: [...] } to a job manifest.', caption: 'Facts tables' }));
}

function rowsTable(t, rows, caption) {
  return table([
    { label: 'PC', cell: (row) => link(`#/agents/${encodeURIComponent(row.pc_id)}`, row.pc_id) },
    ...Object.keys(t.columns).map((c) => ({ label: c, cell: (row) => (row[c] === null || row[c] === undefined ? '' : String(row[c])) })),
  ], rows, { empty: 'No rows match.', caption });
}

export async function detail(main, name) {
  const tableName = decodeURIComponent(name);
  const pc = h('input', { id: 'facts-pc', placeholder: 'every PC' });
  const where = h('input', { id: 'facts-where', placeholder: 'column=value, column=value' });
  const out = h('div', { 'aria-live': 'polite' });
  let offset = 0;
  async function load() {
    const filters = {};
    for (const part of where.value.split(',').map((p) => p.trim()).filter(Boolean)) {
      const [k, ...v] = part.split('=');
      filters[k.trim()] = v.join('=').trim();
    }
    try {
      const r = await api('GET', `/api/facts/${encodeURIComponent(tableName)}${query({ pc: pc.value.trim(), ...filters, limit: 500, offset })}`);
      fill(out, rowsTable(r, r.rows, `Rows of ${tableName}`),
        h('div', { class: 'pager' },
          h('button', { type: 'button', disabled: offset === 0, onclick: () => { offset = Math.max(0, offset - 500); load(); } }, 'Previous'),
          h('button', { type: 'button', disabled: r.next_offset == null, onclick: () => { offset = r.next_offset; load(); } }, 'Next')));
    } catch (err) { fill(out, problems(err)); }
  }
  main.append(h('h1', {}, `Facts: ${tableName}`),
    h('form', { class: 'inline', role: 'search', onsubmit: (e) => { e.preventDefault(); offset = 0; load(); } },
      h('label', { for: 'facts-pc' }, 'PC', pc), h('label', { for: 'facts-where' }, 'Where', where),
      h('button', { type: 'submit', class: 'primary', id: 'facts-filter' }, 'Filter')), out);
  await load();
}

/** One PC's rows of every facts table (its agent page). */
export async function ofPc(pc) {
  const section = h('section', { class: 'panel', 'aria-labelledby': 'pc-facts-h', id: 'pc-facts' }, h('h2', { id: 'pc-facts-h' }, 'Facts'));
  try {
    const { tables } = await api('GET', '/api/facts');
    if (!tables.length) { section.append(h('p', { class: 'muted' }, 'No facts table yet.')); return section; }
    for (const t of tables) {
      const r = await api('GET', `/api/facts/${encodeURIComponent(t.name)}${query({ pc, limit: 100 })}`);
      if (r.rows.length) section.append(h('h3', {}, link(`#/facts/${encodeURIComponent(t.name)}`, t.name)), rowsTable(t, r.rows, `${t.name} of ${pc}`));
    }
    if (section.children.length === 1) section.append(h('p', { class: 'muted' }, 'No facts from this PC yet.'));
  } catch (e) { section.append(h('p', { class: 'errors', role: 'alert' }, `Could not read the facts: ${e.message}`)); }
  return section;
}
