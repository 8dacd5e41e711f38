import { api, h, badge, table, link, time, fill, execLink } from '../core.js';
import { follow } from '../live.js';

const SVG = 'http://www.w3.org/2000/svg';
const HOUR = 3600000;

export async function render(main) {
  const body = h('div');
  main.append(h('h1', {}, 'Fleet overview'), body);
  const load = async () => {
    const [o, c] = await Promise.all([api('GET', '/api/overview'), api('GET', '/api/checks')]);
    draw(body, o, c.checks);
  };
  return follow(['agent_up', 'agent_down', 'result', 'execution'], load, 800);
}

function draw(body, o, checks) {
  const failing = checks.reduce((n, c) => n + c.fail + c.warn, 0);
  const execs = Object.fromEntries(o.executions);
  const execTotal = o.executions.reduce((n, [, c]) => n + c, 0);
  fill(body,
    h('div', { class: 'cards' },
      card('Agents online', o.agents_online, 'agents-online'),
      card('Offline', o.agents_total - o.agents_online, 'agents-offline'),
      card('Agents', o.agents_total, 'agents-total'),
      card('Executions (24 h)', execTotal, 'executions-24h'),
      h('a', { class: `card${failing ? ' bad' : ''}`, href: '#/compliance', 'data-testid': 'compliance-badge' },
        h('div', { class: 'n' }, String(failing)),
        h('div', { class: 'muted' }, checks.length ? `failing or warning statuses (${checks.length} check${checks.length === 1 ? '' : 's'})` : 'Compliance: no check reported yet'))),
    h('h2', {}, 'Executions in the last 24 hours'),
    o.executions.length
      ? h('p', {}, Object.entries(execs).flatMap(([s, n]) => [badge(s), ` ${n}  `]))
      : h('p', { class: 'muted' }, 'No executions in the last 24 hours.'),
    h('h2', {}, 'Results per hour'),
    h('div', { class: 'panel' }, chart(o.results_per_hour, o.since_ms),
      h('div', { class: 'legend' }, h('span', {}, h('i', { class: 'ok' }), 'succeeded'),
        h('span', {}, h('i', { class: 'bad' }), 'failed'), h('span', {}, h('i', { class: 'other' }), 'other'))),
    h('h2', {}, 'Recent failures'),
    table([
      { label: 'When', cell: (f) => time(f.received_ms) },
      { label: 'PC', cell: (f) => link(`#/agents/${encodeURIComponent(f.pc_id)}`, f.pc_id) },
      { label: 'Job', cell: (f) => f.title || f.job_id },
      { label: 'Status', cell: (f) => badge(f.status) },
      { label: 'Execution', cell: (f) => execLink(f.exec_id) },
      { label: 'Message', cell: (f) => f.message || (f.exit_code !== null ? `exit ${f.exit_code}` : '') },
    ], o.recent_failures, { empty: 'No failures in the last 24 hours.', caption: 'Recent failures' }),
  );
}

function card(label, n, id) {
  return h('div', { class: 'card' }, h('div', { class: 'n', 'data-testid': id }, String(n)), h('div', { class: 'muted' }, label));
}

/** Stacked bars per hour: succeeded, failed (failed, timed out, killed, unknown), other. */
function chart(rows, since) {
  const start = Math.floor(since / HOUR) * HOUR;
  const hours = Array.from({ length: 25 }, (_, i) => ({ at: start + i * HOUR, ok: 0, bad: 0, other: 0 }));
  for (const [at, status, n] of rows) {
    const slot = hours[Math.round((at - start) / HOUR)];
    if (!slot) continue;
    if (status === 'succeeded') slot.ok += n;
    else if (['failed', 'timed_out', 'killed', 'unknown'].includes(status)) slot.bad += n;
    else slot.other += n;
  }
  const max = Math.max(1, ...hours.map((s) => s.ok + s.bad + s.other));
  // L: room for the y axis' numbers on the left.
  const W = 960, H = 200, L = 44, bw = (W - L) / hours.length;
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', `0 0 ${W} ${H + 16}`);
  svg.setAttribute('class', 'chart');
  svg.setAttribute('role', 'img');
  const total = hours.reduce((n, s) => n + s.ok + s.bad + s.other, 0);
  svg.setAttribute('aria-label', `Results per hour over the last 24 hours: ${total} in all, busiest hour ${max}`);
  const el = (name, attrs, text) => {
    const e = document.createElementNS(SVG, name);
    for (const [a, v] of Object.entries(attrs)) e.setAttribute(a, v);
    if (text !== undefined) e.textContent = text;
    svg.append(e);
  };
  // Y axis: results per hour at 0, half and the busiest hour, with faint grid lines.
  for (const v of [...new Set([0, Math.round(max / 2), max])]) {
    const y = H - (v / max) * (H - 4);
    el('line', { x1: L, x2: W, y1: y, y2: y, class: 'grid' });
    el('text', { x: L - 6, y: y + 4, 'text-anchor': 'end' }, String(v));
  }
  hours.forEach((s, i) => {
    let y = H;
    for (const [k, cls] of [['ok', 'ok'], ['bad', 'bad'], ['other', 'other']]) {
      if (!s[k]) continue;
      const hgt = (s[k] / max) * (H - 4);
      y -= hgt;
      const r = document.createElementNS(SVG, 'rect');
      for (const [a, v] of [['x', L + i * bw + 1], ['y', y], ['width', bw - 2], ['height', hgt], ['class', cls]]) r.setAttribute(a, v);
      const t = document.createElementNS(SVG, 'title');
      t.textContent = `${new Date(s.at).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })}: ${s[k]} ${k === 'ok' ? 'succeeded' : k === 'bad' ? 'failed' : 'other'}`;
      r.append(t);
      svg.append(r);
    }
    if (i % 6 === 0) {
      // The first and last labels are anchored inside the chart so neither is cut off.
      const anchor = i === 0 ? 'start' : i === hours.length - 1 ? 'end' : 'middle';
      const x = anchor === 'start' ? L + i * bw : anchor === 'end' ? L + (i + 1) * bw : L + (i + 0.5) * bw;
      el('text', { x, y: H + 13, 'text-anchor': anchor }, new Date(s.at).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }));
    }
  });
  return svg;
}
