import { api, h, badge, table, link, time, ago, debounce, query, can, problems, toast, fill, execLink } from '../core.js';
import { follow } from '../live.js';

const PAGE = 50;
const ALIVE_MS = 120000;

/** The agents list: filtered, sorted and paged by the backend, so 10,000 agents stay fast. */
export async function list(main) {
  const state = { q: '', status: '', group: '', sort: 'pc_id', desc: false, offset: 0 };
  const q = h('input', { id: 'agents-q', type: 'search', placeholder: 'PC or host name', oninput: debounce(() => { state.q = q.value; state.offset = 0; load(); }, 300) });
  const status = h('select', { id: 'agents-status', onchange: () => { state.status = status.value; state.offset = 0; load(); } },
    h('option', { value: '' }, 'all'), h('option', { value: 'online' }, 'online'), h('option', { value: 'offline' }, 'offline'));
  const group = h('input', { id: 'agents-group', placeholder: 'group', onchange: () => { state.group = group.value.trim(); state.offset = 0; load(); } });
  const out = h('div');
  main.append(h('h1', {}, 'Agents'),
    h('form', { class: 'inline', role: 'search', onsubmit: (e) => e.preventDefault() },
      h('label', { for: 'agents-q' }, 'Search', q), h('label', { for: 'agents-status' }, 'Status', status),
      h('label', { for: 'agents-group' }, 'Group', group)),
    out);

  async function load() {
    const r = await api('GET', `/api/agents${query({ q: state.q, status: state.status, group: state.group, sort: state.sort, desc: state.desc || undefined, offset: state.offset, limit: PAGE })}`);
    const sorted = { key: state.sort, desc: state.desc, onSort: (k) => { state.desc = state.sort === k ? !state.desc : false; state.sort = k; state.offset = 0; load(); } };
    const first = r.total ? state.offset + 1 : 0;
    const last = state.offset + r.items.length;
    fill(out,
      table([
        { label: 'PC', sort: 'pc_id', cell: (a) => link(`#/agents/${encodeURIComponent(a.pc_id)}`, a.pc_id) },
        { label: 'Status', cell: (a) => badge(a.online ? 'online' : 'offline') },
        { label: 'Host', sort: 'hostname', cell: (a) => a.hostname },
        { label: 'OS', cell: (a) => `${a.os_name || a.os_family} ${a.os_version}`.trim() },
        { label: 'Version', sort: 'agent_version', cell: (a) => a.agent_version },
        { label: 'Groups', cell: (a) => a.groups.join(', ') },
        { label: 'Last heartbeat', sort: 'last_seen', cell: (a) => h('span', { title: new Date(a.last_seen_ms).toISOString() }, ago(a.last_seen_ms)) },
      ], r.items, { sorted, empty: 'No agents match.', caption: 'Agents' }),
      h('div', { class: 'pager' },
        h('button', { type: 'button', disabled: state.offset === 0, onclick: () => { state.offset = Math.max(0, state.offset - PAGE); load(); } }, 'Previous'),
        h('span', { 'data-testid': 'agents-range' }, `${first}–${last} of ${r.total}`),
        h('button', { type: 'button', disabled: last >= r.total, onclick: () => { state.offset += PAGE; load(); } }, 'Next')));
  }
  return follow(['agent_up', 'agent_down'], load, 500);
}

export async function detail(main, pc) {
  const body = h('div');
  main.append(h('h1', {}, `Agent ${pc}`), body);
  const load = async () => draw(body, pc, await api('GET', `/api/agents/${encodeURIComponent(pc)}`));
  return follow(['agent_up', 'agent_down', 'result'], load, 500, (e) => !e.pc_id || e.pc_id === pc);
}

// The agent's clock against the backend's at its last heartbeat. Under two seconds is the
// heartbeat's own travel and batching, not a wrong clock.
function skew(ms) {
  if (Math.abs(ms) < 2000) return 'in step with the backend';
  const s = Math.round(Math.abs(ms) / 1000);
  const text = s < 120 ? `${s} s` : s < 7200 ? `${Math.round(s / 60)} min` : `${Math.round(s / 3600)} h`;
  return `${text} ${ms > 0 ? 'ahead of' : 'behind'} the backend`;
}

function draw(body, pc, d) {
  const a = d.agent;
  const online = Date.now() - a.last_seen_ms <= ALIVE_MS;
  const inv = d.inventory;
  const pingOut = h('span', { role: 'status' });
  const groups = h('input', { id: 'agent-groups', value: a.groups.join(', ') });
  const groupsError = h('div');
  fill(body,
    h('div', { class: 'split' },
      h('section', { class: 'panel', 'aria-labelledby': 'facts-h' }, h('h2', { id: 'facts-h' }, 'Facts'),
        h('dl', { class: 'facts' },
          fact('Status', badge(online ? 'online' : 'offline')), fact('Host', a.hostname),
          fact('OS', `${a.os_name || a.os_family} ${a.os_version}`), fact('Arch', a.arch),
          fact('Agent version', a.agent_version), fact('Running jobs', a.running_jobs),
          fact('Last heartbeat', h('span', {}, time(a.last_seen_ms), ` (${ago(a.last_seen_ms)})`)),
          a.clock_skew_ms == null ? null : fact('Clock offset', skew(a.clock_skew_ms)),
          a.update_status ? fact('Update', a.update_status) : null,
          (a.quarantined || []).length ? fact('Quarantined', a.quarantined.map((q) => `${q.version}: ${q.reason}`).join('; ')) : null),
        h('div', { class: 'toolbar' },
          h('button', { type: 'button', id: 'ping', onclick: async () => {
            pingOut.textContent = 'pinging…';
            try { const r = await api('POST', `/api/agents/${encodeURIComponent(pc)}/ping`); pingOut.textContent = `answered in ${r.round_trip_ms} ms`; }
            catch (e) { pingOut.textContent = `no answer: ${e.message}`; }
          } }, 'Ping'), pingOut)),
      h('section', { class: 'panel', 'aria-labelledby': 'groups-h' }, h('h2', { id: 'groups-h' }, 'Groups'),
        can('operator')
          ? h('form', { onsubmit: async (e) => {
            e.preventDefault();
            fill(groupsError);
            const list = groups.value.split(',').map((g) => g.trim()).filter(Boolean);
            try { await api('PUT', `/api/agents/${encodeURIComponent(pc)}/groups`, { groups: list }); toast(`Groups of ${pc} saved`); }
            catch (err) { groupsError.append(problems(err)); }
          } }, h('label', { for: 'agent-groups' }, 'Operator-assigned groups (comma-separated)', groups), groupsError,
          h('button', { type: 'submit', class: 'primary' }, 'Save groups'))
          : h('p', {}, a.groups.join(', ') || 'none'))),
    h('h2', {}, 'Recent results'),
    table([
      { label: 'Finished', cell: (r) => time(r.finished_ms) },
      { label: 'Job', cell: (r) => r.title || r.job_id },
      { label: 'Status', cell: (r) => badge(r.status) },
      { label: 'Exit', num: true, cell: (r) => r.exit_code ?? '' },
      { label: 'Execution', cell: (r) => execLink(r.exec_id) },
    ], d.recent_results || [], { empty: 'No results from this PC yet.', caption: 'Recent results' }),
    h('h2', {}, 'Inventory'),
    inv ? inventory(inv) : h('p', { class: 'muted' }, 'No inventory reported yet.'));
}

function fact(label, value) { return [h('dt', {}, label), h('dd', {}, value)]; }

function gib(bytes) { return `${(bytes / 1073741824).toFixed(1)} GiB`; }

function inventory(inv) {
  return h('div', {},
    h('dl', { class: 'facts panel' },
      fact('Collected', time(Date.parse(inv.collected_at))), fact('CPU', `${inv.cpu?.model || ''} (${inv.cpu?.cores || '?'} cores)`),
      fact('Memory', gib(inv.memory_total_bytes || 0)), fact('OS build', inv.os_build || '')),
    h('h3', {}, 'Disks'),
    table([{ label: 'Mount', cell: (d) => d.mount }, { label: 'Size', num: true, cell: (d) => gib(d.total_bytes) },
      { label: 'Free', num: true, cell: (d) => gib(d.free_bytes) }, { label: 'File system', cell: (d) => d.file_system }], inv.disks || []),
    h('h3', {}, 'Network'),
    table([{ label: 'Interface', cell: (n) => n.name }, { label: 'MAC', cell: (n) => n.mac }, { label: 'Addresses', cell: (n) => (n.addresses || []).join(', ') }], inv.network || []),
    h('details', {}, h('summary', {}, `Software (${(inv.software || []).length})`),
      table([{ label: 'Name', cell: (s) => s.name }, { label: 'Version', cell: (s) => s.version }], inv.software || [])));
}
