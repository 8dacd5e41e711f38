import { api, h, badge, table, time, can, problems, toast, fill, execLink } from '../core.js';

/** A schedule to start from, naming a job the catalog has (the first), or saying where one comes from. */
const template = (job) => `id: nightly-hello
cron: "0 2 * * *"
timezone: UTC
job_id: ${job || 'my-job   # a job id from the Jobs page'}
plan:
  target: { all: true }
mode: every_tick
`;

/** A schedule's definition, without what the API adds to show it. */
function definition(s) {
  const { next_fires_ms, state, last_24h, ...def } = s;
  return def;
}

export async function list(main) {
  const out = h('div');
  main.append(h('h1', {}, 'Schedules'), out);
  const load = async () => {
    const r = await api('GET', '/api/schedules');
    fill(out, table([
      { label: 'Schedule', cell: (s) => h('span', { 'data-schedule': s.id }, s.id) },
      { label: 'Cron', cell: (s) => `${s.cron} (${s.timezone})` },
      { label: 'Job', cell: (s) => s.job_id || (s.manifest && s.manifest.id) || '' },
      { label: 'State', cell: (s) => badge(s.enabled ? 'enabled' : 'disabled') },
      { label: 'Next fire', cell: (s) => (s.next_fires_ms && s.next_fires_ms.length ? time(s.next_fires_ms[0]) : '—') },
      { label: 'Last fire', cell: (s) => (s.state && s.state.last_fire_ms
        ? h('span', {}, time(s.state.last_fire_ms), ' ', s.state.last_outcome ? badge(s.state.last_outcome) : null, ' ', s.state.last_exec_id ? execLink(s.state.last_exec_id) : null)
        : 'never') },
      { label: 'Results (24 h)', cell: (s) => outcomes(s.last_24h) },
      { label: '', cell: (s) => (can('operator') ? h('span', { class: 'toolbar' },
        h('button', { type: 'button', 'data-toggle': s.id, onclick: () => act(`/api/schedules/${encodeURIComponent(s.id)}/${s.enabled ? 'disable' : 'enable'}`) },
          s.enabled ? 'Disable' : 'Enable'),
        h('button', { type: 'button', 'data-edit': s.id, onclick: () => {
          editor.text.value = JSON.stringify(definition(s), null, 2);
          editor.text.focus();
        } }, 'Edit'),
        h('button', { type: 'button', 'data-run': s.id, onclick: async () => {
          const job = s.job_id || (s.manifest && s.manifest.id);
          if (!confirm(`Run ${job} now, as schedule ${s.id} would (its plan)?`)) return;
          try { const r = await api('POST', `/api/exec/${encodeURIComponent(job)}`, s.plan); location.hash = `#/executions/${r.exec_id}`; }
          catch (e) { toast(e.message, true); }
        } }, 'Run now'),
        h('button', { type: 'button', class: 'danger', 'data-delete': s.id, onclick: () => {
          if (confirm(`Delete schedule ${s.id}? It stops firing at once.`)) act(`/api/schedules/${encodeURIComponent(s.id)}`, 'DELETE');
        } }, 'Delete')) : '') },
    ], r.items, { empty: 'No schedules yet.', caption: 'Schedules' }));
  };
  const act = async (path, method = 'POST') => {
    try { await api(method, path); load(); } catch (e) { toast(e.message, true); }
  };
  let editor = null;
  if (can('operator')) {
    const jobs = await api('GET', '/api/jobs').catch(() => ({ items: [] }));
    editor = creator(load, template(jobs.items[0] && jobs.items[0].id));
  }
  await load();
  if (editor) main.append(editor.section);
}

function outcomes(o) {
  if (!o || typeof o !== 'object') return '';
  const parts = Object.entries(o).filter(([, n]) => typeof n === 'number' && n > 0);
  return parts.length ? parts.map(([k, n]) => `${k} ${n}`).join(', ') : 'none';
}

function creator(reload, start) {
  const text = h('textarea', { id: 'schedule-yaml', spellcheck: 'false' }, start);
  const create = h('button', { type: 'button', class: 'primary', id: 'create-schedule' }, 'Save');
  const errors = h('div', { 'aria-live': 'polite' });
  const section = h('section', { 'aria-labelledby': 'new-schedule-h' }, h('h2', { id: 'new-schedule-h' }, 'Create or change a schedule'),
    h('label', { for: 'schedule-yaml' }, 'Schedule (YAML)', text), errors,
    h('div', { class: 'toolbar' }, create));
  create.addEventListener('click', async () => {
    fill(errors);
    try { const r = await api('POST', '/api/schedules', undefined, { yaml: text.value }); toast(`Schedule ${r.id || ''} saved`); reload(); }
    catch (e) { errors.append(problems(e)); }
  });
  return { section, text };
}
