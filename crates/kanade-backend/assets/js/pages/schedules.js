import { api, h, badge, table, time, can, problems, toast, fill, execLink } from '../core.js';

const TEMPLATE = `id: nightly-hello
cron: "0 2 * * *"
timezone: UTC
job_id: hello-ui
plan:
  target: { all: true }
mode: every_tick
`;

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
      { label: '', cell: (s) => (can('operator') ? h('button', { type: 'button', onclick: async () => {
        try { await api('POST', `/api/schedules/${encodeURIComponent(s.id)}/${s.enabled ? 'disable' : 'enable'}`); load(); }
        catch (e) { toast(e.message, true); }
      }, 'data-toggle': s.id }, s.enabled ? 'Disable' : 'Enable') : '') },
    ], r.items, { empty: 'No schedules yet.', caption: 'Schedules' }));
  };
  await load();
  if (can('operator')) main.append(creator(load));
}

function outcomes(o) {
  if (!o || typeof o !== 'object') return '';
  const parts = Object.entries(o).filter(([, n]) => typeof n === 'number' && n > 0);
  return parts.length ? parts.map(([k, n]) => `${k} ${n}`).join(', ') : 'none';
}

function creator(reload) {
  const text = h('textarea', { id: 'schedule-yaml', spellcheck: 'false' }, TEMPLATE);
  const create = h('button', { type: 'button', class: 'primary', id: 'create-schedule' }, 'Create');
  const errors = h('div', { 'aria-live': 'polite' });
  const section = h('section', { 'aria-labelledby': 'new-schedule-h' }, h('h2', { id: 'new-schedule-h' }, 'Create a schedule'),
    h('label', { for: 'schedule-yaml' }, 'Schedule (YAML)', text), errors,
    h('div', { class: 'toolbar' }, create));
  create.addEventListener('click', async () => {
    fill(errors);
    try { const r = await api('POST', '/api/schedules', undefined, { yaml: text.value }); toast(`Schedule ${r.id || ''} saved`); reload(); }
    catch (e) { errors.append(problems(e)); }
  });
  return section;
}
