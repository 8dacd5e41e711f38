import { api, h, badge, table, link, time, query, can, toast, fill, execLink, session } from '../core.js';
import { follow } from '../live.js';

export async function list(main) {
  const state = { status: '', job: '' };
  const status = h('select', { id: 'exec-status', onchange: () => { state.status = status.value; load(); } },
    ['', 'pending', 'running', 'completed', 'failed', 'killed', 'aborted', 'expired'].map((s) => h('option', { value: s }, s || 'all')));
  const job = h('input', { id: 'exec-job', placeholder: 'job id', onchange: () => { state.job = job.value.trim(); load(); } });
  const out = h('div');
  main.append(h('h1', {}, 'Executions'),
    h('form', { class: 'inline', onsubmit: (e) => e.preventDefault() },
      h('label', { for: 'exec-status' }, 'Status', status), h('label', { for: 'exec-job' }, 'Job', job)), out);
  async function load() {
    const r = await api('GET', `/api/executions${query({ status: state.status, job: state.job, limit: 100 })}`);
    fill(out, table([
      { label: 'Execution', cell: (e) => execLink(e.exec_id) },
      { label: 'Job', cell: (e) => e.title || `${e.job_id} v${e.version}` },
      { label: 'Status', cell: (e) => badge(e.status) },
      { label: 'Progress', cell: (e) => `${done(e)}/${e.target_count}` },
      { label: 'Failed', num: true, cell: (e) => e.failed },
      { label: 'Started', cell: (e) => time(e.created_ms) },
    ], r.items, { empty: 'No executions match.', caption: 'Executions' }));
  }
  return follow(['execution', 'result'], load, 600);
}

function done(e) { return e.succeeded + e.failed + e.skipped + e.other; }

function progress(e) {
  const n = Math.max(1, e.target_count);
  const pct = (x) => `${(100 * x) / n}%`;
  return h('div', { class: 'progress', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': e.target_count, 'aria-valuenow': done(e), 'aria-label': 'Progress' },
    h('span', { class: 'ok', style: `width:${pct(e.succeeded)}` }), h('span', { class: 'bad', style: `width:${pct(e.failed)}` }),
    h('span', { class: 'other', style: `width:${pct(e.skipped + e.other)}` }));
}

export async function detail(main, id) {
  const body = h('div');
  // Live output panels sit outside what live events redraw, so their streams and text stay.
  const live = liveOutput(id);
  main.append(h('h1', {}, 'Execution ', h('span', { class: 'id' }, id)), body, live.box);
  const open = new Set(); // PCs whose output is shown, kept across live refreshes
  const load = async () => draw(body, id, await api('GET', `/api/executions/${encodeURIComponent(id)}`), open, load, live.watch);
  const stop = await follow(['execution', 'result'], load, 300, (e) => !e.exec_id || e.exec_id === id);
  return () => { stop(); live.stop(); };
}

/** One PC's output as the agent writes it: server-sent events from the tail route. */
function liveOutput(id) {
  const box = h('div', { id: 'live-output' });
  const streams = new Map(); // pc -> EventSource
  const close = (pc) => { streams.get(pc)?.close(); streams.delete(pc); };
  const watch = (pc) => {
    if (streams.has(pc)) return;
    const pre = h('pre', { 'data-testid': `live-${pc}` });
    const status = h('p', { class: 'muted', role: 'status', 'data-testid': `live-status-${pc}` }, 'connecting…');
    const section = h('section', { class: 'output', 'aria-label': `Live output of ${pc}` },
      h('h3', {}, `${pc}: live output `, h('button', { type: 'button', onclick: () => { close(pc); section.remove(); } }, 'Close')), status, pre);
    box.append(section);
    const path = `/api/executions/${encodeURIComponent(id)}/pcs/${encodeURIComponent(pc)}/tail`;
    const src = new EventSource(`${path}?access_token=${encodeURIComponent(session.token)}`);
    streams.set(pc, src);
    const data = (e) => { try { return JSON.parse(e.data); } catch { return {}; } };
    const add = (text, cls) => {
      const follow = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.append(h('span', cls ? { class: cls } : {}, text));
      if (follow) pre.scrollTop = pre.scrollHeight;
    };
    src.addEventListener('output', (e) => { const d = data(e); add(d.text, d.stream === 'stdout' ? null : 'stderr'); status.textContent = 'running'; });
    src.addEventListener('skipped', (e) => add(`[${data(e).bytes} bytes skipped: the agent keeps the last 64 KiB]\n`, 'note'));
    src.addEventListener('waiting', (e) => { status.textContent = `waiting: ${data(e).reason}`; });
    src.addEventListener('session_ended', (e) => { status.textContent = `${data(e).error}; sign in again`; close(pc); });
    src.addEventListener('end', (e) => {
      const d = data(e);
      status.textContent = `${d.status}${d.exit_code != null ? ` (exit ${d.exit_code})` : ''}${d.message ? `: ${d.message}` : ''}`;
      close(pc);
    });
    // A reconnect would replay the output from the start: stop and say so instead.
    src.onerror = () => { if (streams.get(pc) === src) { close(pc); status.textContent = 'connection lost; press Watch again'; } };
  };
  return { box, watch, stop: () => { for (const pc of [...streams.keys()]) close(pc); } };
}

function draw(body, id, d, open, reload, watch) {
  const e = d.execution;
  const running = e.status === 'pending' || e.status === 'running';
  fill(body,
    h('div', { class: 'cards' },
      h('div', { class: 'card' }, h('div', { class: 'n', 'data-testid': 'exec-status' }, badge(e.status)), h('div', { class: 'muted', 'data-testid': 'exec-job' }, e.title || `${e.job_id} v${e.version}`)),
      h('div', { class: 'card' }, h('div', { class: 'n', 'data-testid': 'exec-progress' }, `${done(e)}/${e.target_count}`), h('div', { class: 'muted' }, 'PCs done'), progress(e)),
      h('div', { class: 'card' }, h('div', { class: 'n' }, `${e.succeeded} / ${e.failed}`), h('div', { class: 'muted' }, 'succeeded / failed')),
      h('div', { class: 'card' }, h('div', {}, 'Started ', time(e.created_ms)), e.finished_ms ? h('div', {}, 'Finished ', time(e.finished_ms)) : null)),
    e.message ? h('p', { class: 'muted' }, e.message) : null,
    running && can('operator') ? h('div', { class: 'toolbar' }, h('button', { type: 'button', class: 'danger', id: 'kill', onclick: async () => {
      try { await api('POST', `/api/executions/${encodeURIComponent(id)}/kill`); toast('Killed: running PCs stop it, later waves are cancelled, PCs that come back skip it'); reload(); }
      catch (err) { toast(err.message, true); }
    } }, 'Kill')) : null,
    d.waves.length ? [h('h2', {}, 'Rollout waves'), table([
      { label: 'Wave', num: true, cell: (w) => w.wave },
      { label: 'State', cell: (w) => badge(w.status) },
      { label: 'Due', cell: (w) => time(w.due_ms) },
      { label: 'Published', cell: (w) => time(w.published_ms) },
    ], d.waves, { caption: 'Rollout waves' })] : null,
    h('h2', {}, 'PCs'),
    table([
      { label: 'PC', cell: (p) => link(`#/agents/${encodeURIComponent(p.pc_id)}`, p.pc_id) },
      { label: 'Status', cell: (p) => badge(p.status) },
      { label: 'Exit', num: true, cell: (p) => p.exit_code ?? '' },
      { label: 'Wave', num: true, cell: (p) => p.wave ?? '' },
      { label: 'Output', cell: (p) => p.status === 'running' || p.status === 'pending' ? h('button', { type: 'button', class: 'watch-output', 'data-pc': p.pc_id, onclick: () => watch(p.pc_id) }, 'Watch') : p.result_id ? h('button', { type: 'button', class: 'show-output', 'data-pc': p.pc_id, 'aria-expanded': open.has(p.pc_id) ? 'true' : 'false', onclick: () => { open.has(p.pc_id) ? open.delete(p.pc_id) : open.add(p.pc_id); reload(); } }, open.has(p.pc_id) ? 'Hide' : 'Show') : '' },
      { label: 'Message', cell: (p) => p.message || (p.skip_reason ? `skipped: ${p.skip_reason}` : '') },
    ], d.pcs, { empty: 'No target PCs.', caption: 'PCs of this execution' }),
    d.pcs.filter((p) => open.has(p.pc_id)).map((p) => h('section', { class: 'output', 'aria-label': `Output of ${p.pc_id}` },
      h('h3', {}, `${p.pc_id}: stdout${p.truncated ? ' (truncated)' : ''}`), h('pre', { 'data-testid': `stdout-${p.pc_id}` }, p.stdout || ''),
      p.stderr ? [h('h3', {}, 'stderr'), h('pre', {}, p.stderr)] : null)));
}
