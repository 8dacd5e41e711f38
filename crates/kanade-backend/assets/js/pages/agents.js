import { api, h, badge, table, link, time, ago, debounce, query, can, problems, toast, fill, execLink } from '../core.js';
import { follow } from '../live.js';
import { perfPanel, processPanel } from '../charts.js';
import { timeline } from './events.js';
import { ofPc } from './facts.js';

const PAGE = 50;

/** The agents list: filtered, sorted and paged by the backend, so 10,000 agents stay fast. */
export async function list(main) {
  const state = { q: '', status: '', group: '', sort: 'pc_id', desc: false, offset: 0 };
  const q = h('input', { id: 'agents-q', type: 'search', placeholder: 'PC or host name', oninput: debounce(() => { state.q = q.value; state.offset = 0; load(); }, 300) });
  const status = h('select', { id: 'agents-status', onchange: () => { state.status = status.value; state.offset = 0; load(); } },
    h('option', { value: '' }, 'all'), h('option', { value: 'online' }, 'online'), h('option', { value: 'offline' }, 'offline'));
  const group = h('input', { id: 'agents-group', placeholder: 'group', onchange: () => { state.group = group.value.trim(); state.offset = 0; load(); } });
  const out = h('div');
  // Selected PCs survive live redraws and paging; bulk actions act on them.
  const selected = new Set();
  const bulk = can('operator') ? bulkBar(selected, () => load()) : null;
  main.append(h('h1', {}, 'Agents'),
    h('form', { class: 'inline', role: 'search', onsubmit: (e) => e.preventDefault() },
      h('label', { for: 'agents-q' }, 'Search', q), h('label', { for: 'agents-status' }, 'Status', status),
      h('label', { for: 'agents-group' }, 'Group', group)),
    bulk ? bulk.bar : null, out, softwareSearch());

  async function load() {
    const r = await api('GET', `/api/agents${query({ q: state.q, status: state.status, group: state.group, sort: state.sort, desc: state.desc || undefined, offset: state.offset, limit: PAGE })}`);
    const sorted = { key: state.sort, desc: state.desc, onSort: (k) => { state.desc = state.sort === k ? !state.desc : false; state.sort = k; state.offset = 0; load(); } };
    const first = r.total ? state.offset + 1 : 0;
    const last = state.offset + r.items.length;
    fill(out,
      table([
        ...(bulk ? [{ label: 'Select', cell: (a) => h('input', { type: 'checkbox', 'data-select': a.pc_id, 'aria-label': `select ${a.pc_id}`,
          checked: selected.has(a.pc_id), onchange: (e) => { if (e.target.checked) selected.add(a.pc_id); else selected.delete(a.pc_id); bulk.update(); } }) }] : []),
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
  const boxSlot = h('div');
  // This PC's own agent_config scope and every scope, read once: the settings and investigation
  // panels share them; the investigation panel merges them with the PC's groups.
  const own = {};
  const config = { scopes: [], groups: [] };
  // Made once, outside what live events redraw, so a half-typed setting stays.
  const settings = await settingsBox(pc, own, config);
  const perf = perfPanel(pc);
  const processes = processPanel(pc, config);
  const events = timeline({ pc, limit: 20 });
  main.append(h('h1', {}, `Agent ${pc}`), body, perf.section, processes.section,
    h('section', { class: 'panel', 'aria-labelledby': 'events-h', id: 'events' }, h('h2', { id: 'events-h' }, 'Events'), events.form, events.out),
    await ofPc(pc), settings, boxSlot, can('operator') ? logPanel(pc).section : null);
  // The command box is made once, outside what live events redraw, so typing and output stay.
  let box = null;
  const load = async () => {
    const d = await api('GET', `/api/agents/${encodeURIComponent(pc)}`);
    config.groups = d.agent.groups || [];
    draw(body, pc, d);
    await events.load(false);
    if (!box && can('operator')) { box = commandBox(pc, d.agent.os_family); boxSlot.append(box.section); }
  };
  const stop = await follow(['agent_up', 'agent_down', 'result'], load, 500, (e) => !e.pc_id || e.pc_id === pc);
  return () => { stop(); perf.stop(); processes.stop(); if (box) box.stop(); };
}

/** The end of the agent's own log, read on demand (it costs the agent a file read). */
function logPanel(pc) {
  const lines = h('input', { id: 'log-lines', type: 'number', min: 1, max: 10000, value: 200 });
  const status = h('p', { class: 'muted', role: 'status', 'data-testid': 'log-status' });
  const out = h('pre', { 'data-testid': 'agent-log', hidden: true });
  const form = h('form', { class: 'inline', onsubmit: async (e) => {
    e.preventDefault();
    status.textContent = 'reading…';
    try {
      const r = await api('GET', `/api/agents/${encodeURIComponent(pc)}/logs?lines=${encodeURIComponent(lines.value)}`);
      out.textContent = r.lines.join('\n');
      out.hidden = r.lines.length === 0;
      out.scrollTop = out.scrollHeight;
      status.textContent = r.note || `${r.lines.length} lines${r.truncated ? ' (older lines left out)' : ''}${r.cursor ? ` from ${r.cursor.file}` : ''}`;
    } catch (err) { status.textContent = `Could not read the log: ${err.message}`; }
  } }, h('label', { for: 'log-lines' }, 'Last lines', lines), h('button', { type: 'submit', id: 'read-log' }, 'Read log'));
  return { section: h('section', { class: 'panel', 'aria-labelledby': 'log-h', id: 'agent-log-panel' }, h('h2', { id: 'log-h' }, 'Agent log'), form, status, out) };
}

const SETTINGS = [
  ['heartbeat_interval', 'Heartbeat interval'],
  ['inventory_interval', 'Inventory interval'],
  ['host_perf_interval', 'Host performance interval (0s: off)'],
];

/** This PC's own agent_config scope: what it sets, editable by operators (empty = the group's
 *  or the fleet's setting applies). */
async function settingsBox(pc, own, config) {
  const scope = `pc:${pc}`;
  let all;
  // Settings live on the broker; the rest of the page comes from the database and still shows.
  try { all = await api('GET', '/api/agent/config'); }
  catch (e) {
    return h('section', { class: 'panel', 'aria-labelledby': 'settings-h' }, h('h2', { id: 'settings-h' }, 'Settings'),
      h('p', { class: 'errors', role: 'alert' }, `Could not read the settings: ${e.message}`));
  }
  config.scopes = all.scopes;
  Object.assign(own, (all.scopes.find((s) => s.scope === scope) || { config: {} }).config);
  const wider = all.scopes.filter((s) => s.scope !== scope && !s.scope.startsWith('pc:'))
    .map((s) => `${s.scope}: ${Object.entries(s.config).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  const inputs = SETTINGS.map(([key]) => h('input', {
    id: `setting-${key}`, value: own[key] || '', placeholder: 'the wider setting', disabled: !can('operator'),
  }));
  const errors = h('div', { id: 'settings-errors' });
  const status = h('span', { id: 'settings-status', role: 'status' });
  const form = h('form', { onsubmit: async (e) => {
    e.preventDefault();
    fill(errors);
    status.textContent = '';
    // Only what this form changed: a field someone else set meanwhile is left alone.
    const edit = {};
    SETTINGS.forEach(([key], i) => {
      const v = inputs[i].value.trim();
      if (v !== (own[key] || '')) edit[key] = v === '' ? null : v;
    });
    if (Object.keys(edit).length === 0) { status.textContent = 'nothing changed'; return; }
    try {
      await api('PATCH', `/api/agent/config/${encodeURIComponent(scope)}`, edit);
      SETTINGS.forEach(([key]) => { if (key in edit) own[key] = edit[key] ?? ''; });
      toast(`Settings of ${pc} saved`);
      status.textContent = 'saved';
    } catch (err) { errors.append(problems(err)); }
  } },
  ...SETTINGS.map(([key, label], i) => h('label', { for: `setting-${key}` }, `${label} (e.g. 30s, 1h)`, inputs[i])),
  errors,
  can('operator') ? h('button', { type: 'submit', class: 'primary', id: 'save-settings' }, 'Save settings') : null,
  status);
  return h('section', { class: 'panel', 'aria-labelledby': 'settings-h' },
    h('h2', { id: 'settings-h' }, 'Settings'),
    h('p', { class: 'muted' }, wider.length ? `Wider scopes: ${wider.join('; ')}` : 'No group or fleet-wide setting: agent.toml and the defaults apply.'),
    form);
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
  // The backend judges online by its own clock and window, as the list does.
  const online = a.online;
  const inv = d.inventory;
  const pingOut = h('span', { role: 'status' });
  const groups = h('input', { id: 'agent-groups', value: (d.assigned_groups || []).join(', ') });
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
        h('p', { 'data-testid': 'agent-groups-now' }, 'In: ', a.groups.join(', ') || 'none',
          h('span', { class: 'muted' }, ' (its last heartbeat: the groups assigned here, its dynamic groups and its agent.toml groups)')),
        (d.dynamic_groups || []).length ? h('p', { 'data-testid': 'agent-dynamic-groups' }, 'Dynamic: ',
          d.dynamic_groups.map((g, i) => [i ? ', ' : '', h('a', { href: `#/groups/${encodeURIComponent(g)}` }, g)])) : null,
        can('operator')
          ? h('form', { onsubmit: async (e) => {
            e.preventDefault();
            fill(groupsError);
            const list = groups.value.split(',').map((g) => g.trim()).filter(Boolean);
            try { await api('PUT', `/api/agents/${encodeURIComponent(pc)}/groups`, { groups: list }); toast(`Groups of ${pc} saved`); }
            catch (err) { groupsError.append(problems(err)); }
          } }, h('label', { for: 'agent-groups' }, 'Groups assigned here (comma-separated)', groups), groupsError,
          h('button', { type: 'submit', class: 'primary' }, 'Save groups'))
          : null)),
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

/** Bulk actions on the selected PCs: assign groups, run a catalog job on them, ping them. */
function bulkBar(selected, reload) {
  const count = h('span', { 'data-testid': 'selected-count' });
  const status = h('span', { role: 'status' });
  const names = () => [...selected].sort();
  const guard = (fn) => async () => {
    if (!selected.size) { status.textContent = 'select PCs first'; return; }
    try { await fn(names()); } catch (err) { status.textContent = err.message; }
  };
  const bar = h('div', { class: 'toolbar', id: 'bulk' }, count,
    h('button', { type: 'button', id: 'bulk-groups', onclick: guard(async (pcs) => {
      const text = prompt(`Groups to assign to ${pcs.length} PC(s), comma-separated (replaces the groups assigned here):`);
      if (text === null) return;
      const groups = text.split(',').map((g) => g.trim()).filter(Boolean);
      for (const pc of pcs) await api('PUT', `/api/agents/${encodeURIComponent(pc)}/groups`, { groups });
      status.textContent = `groups set on ${pcs.length} PC(s)`;
      reload();
    }) }, 'Set groups'),
    h('button', { type: 'button', id: 'bulk-run', onclick: guard(async (pcs) => {
      const job = prompt(`Catalog job to run on ${pcs.length} PC(s):`);
      if (!job) return;
      const r = await api('POST', `/api/exec/${encodeURIComponent(job.trim())}`, { target: { pcs } });
      location.hash = `#/executions/${r.exec_id}`;
    }) }, 'Run a job'),
    h('button', { type: 'button', id: 'bulk-ping', onclick: guard(async (pcs) => {
      status.textContent = 'pinging…';
      const answers = await Promise.all(pcs.map((pc) => api('POST', `/api/agents/${encodeURIComponent(pc)}/ping`)
        .then((r) => `${pc} ${r.round_trip_ms} ms`, (e) => `${pc}: ${e.message}`)));
      status.textContent = answers.join('; ');
    }) }, 'Ping'),
    h('button', { type: 'button', onclick: () => { selected.clear(); update(); reload(); } }, 'Clear'), status);
  const update = () => { count.textContent = `${selected.size} selected`; };
  update();
  return { bar, update };
}

/** Fleet-wide: which PCs have a program (from their latest inventory). */
function softwareSearch() {
  const name = h('input', { id: 'software-name', placeholder: 'e.g. openssl' });
  const version = h('input', { id: 'software-version', placeholder: 'e.g. 3.0', size: 10 });
  const out = h('div', { 'aria-live': 'polite' });
  const search = async (e) => {
    e.preventDefault();
    try {
      const r = await api('GET', `/api/software${query({ name: name.value.trim(), version: version.value.trim(), limit: 500 })}`);
      fill(out, h('p', { 'data-testid': 'software-count' }, `${r.pcs} PC(s), ${r.items.length} install(s)${r.items.length === 500 ? ' (first 500)' : ''}`),
        table([
          { label: 'PC', cell: (s) => link(`#/agents/${encodeURIComponent(s.pc_id)}`, s.pc_id) },
          { label: 'Program', cell: (s) => s.name }, { label: 'Version', cell: (s) => s.version },
          { label: 'Publisher', cell: (s) => s.publisher },
        ], r.items, { empty: 'No PC reports such a program.', caption: 'Software found' }));
    } catch (err) { fill(out, problems(err)); }
  };
  return h('section', { class: 'panel', 'aria-labelledby': 'software-h' }, h('h2', { id: 'software-h' }, 'Find software across the fleet'),
    h('form', { class: 'inline', role: 'search', onsubmit: search },
      h('label', { for: 'software-name' }, 'Name contains', name), h('label', { for: 'software-version' }, 'Version starts with', version),
      h('button', { type: 'submit', id: 'software-search' }, 'Search')), out);
}

/** Run a one-off script on this PC (POST /api/run, audited) and show its output as it ends. */
function commandBox(pc, family) {
  const shells = family === 'windows' ? ['powershell', 'cmd', 'pwsh'] : ['sh', 'bash'];
  const shell = h('select', { id: 'command-shell' }, shells.map((s) => h('option', { value: s }, s)));
  const script = h('textarea', { id: 'command-script', rows: 3, spellcheck: 'false', placeholder: family === 'windows' ? 'Get-Service | Select -First 5' : 'uptime' });
  const out = h('div', { 'aria-live': 'polite' });
  let stop = null;
  const run = async (e) => {
    e.preventDefault();
    if (stop) stop();
    fill(out, h('p', { class: 'muted' }, 'sending…'));
    try {
      const r = await api('POST', '/api/run', { pcs: [pc], shell: shell.value, script: script.value });
      const show = async () => {
        const d = await api('GET', `/api/executions/${encodeURIComponent(r.exec_id)}`);
        const p = (d.pcs || [])[0] || {};
        fill(out, h('p', {}, badge(p.status || d.execution.status), ' ', p.exit_code ?? '', ' ', execLink(r.exec_id), p.message ? ` ${p.message}` : ''),
          p.stdout ? h('pre', { 'data-testid': 'command-stdout' }, p.stdout) : null,
          p.stderr ? h('pre', { class: 'stderr' }, p.stderr) : null);
      };
      stop = await follow(['execution', 'result'], show, 200, (ev) => ev.exec_id === r.exec_id);
    } catch (err) { fill(out, problems(err)); }
  };
  const section = h('section', { class: 'panel', 'aria-labelledby': 'command-h' }, h('h2', { id: 'command-h' }, 'Run a command on this PC'),
    h('form', { onsubmit: run }, h('label', { for: 'command-shell' }, 'Shell', shell), h('label', { for: 'command-script' }, 'Script', script),
      h('button', { type: 'submit', class: 'primary', id: 'command-run' }, 'Run')), out);
  return { section, stop: () => { if (stop) stop(); } };
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
