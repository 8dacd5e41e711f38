// An agent's performance over 1 h / 24 h / 7 d, and investigation mode's top processes, drawn
// with uPlot (a canvas charting library from the npm registry, embedded at build time: it
// draws 10,000 points in a few milliseconds, needs no network and no inline code, so it keeps
// to the dashboard's content security policy).

import uPlot from '../vendor/uPlot.esm.js';
import { api, h, fill, can, toast, problems, time } from './core.js';

const RANGES = [['1h', 3600e3], ['24h', 864e5], ['7d', 7 * 864e5]];
const RESOLUTION = { '5m': '5 minutes', '1h': 'an hour' };
/** While the page is open the charts follow new samples. */
const REFRESH_MS = 15000;
const STACKED = 6;
const COLORS = ['#2563eb', '#dc2626', '#16a34a', '#d97706', '#7c3aed', '#0891b2', '#64748b'];

function bytes(n) {
  if (n == null) return '';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(n >= 100 || i === 0 ? 0 : 1)} ${units[i]}`;
}

// Axis text and grid in the page's own colours (light and dark).
const css = (name, fallback) => getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;
const ink = () => css('--muted', '#666');
const line = () => css('--line', '#ddd');

/** One chart: a title and uPlot in a box that follows its container's width. */
function chart(id, title, series, format, data) {
  const box = h('figure', { class: 'perf-chart', 'data-chart': id }, h('figcaption', {}, title));
  // The figure is one cell of the charts grid: the plot takes the cell's width.
  const width = () => Math.max(200, box.clientWidth || 600);
  const opts = {
    width: 600,
    height: 160,
    legend: { live: true },
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: true } },
    series: [{}, ...series.map((s, i) => ({ stroke: COLORS[i % COLORS.length], width: 1.5, value: (u, v) => format(v), ...s }))],
    axes: [{ stroke: ink(), grid: { stroke: line() }, ticks: { stroke: line() } },
      { size: 70, stroke: ink(), grid: { stroke: line() }, ticks: { stroke: line() }, values: (u, vals) => vals.map(format) }],
  };
  const plot = new uPlot(opts, data, box);
  // Resized a frame later and only when the width changed, so a resize never feeds itself.
  let current = 0;
  const fit = () => requestAnimationFrame(() => {
    const w = width();
    if (w !== current) { current = w; plot.setSize({ width: w, height: 160 }); }
  });
  const resize = new ResizeObserver(fit);
  resize.observe(box);
  fit();
  return { box, plot, stop: () => { resize.disconnect(); plot.destroy(); } };
}

/** The agent page's Performance panel; returns the section and a stop function. */
export function perfPanel(pc) {
  let range = RANGES[0];
  let charts = [];
  const status = h('p', { class: 'muted', 'data-testid': 'perf-status', role: 'status' });
  const area = h('div', { class: 'charts' });
  const buttons = RANGES.map((r) => h('button', {
    type: 'button', 'data-range': r[0], 'aria-pressed': String(r === range),
    onclick: () => { range = r; buttons.forEach((b) => b.setAttribute('aria-pressed', String(b.dataset.range === r[0]))); load(); },
  }, r[0]));
  const clear = () => { charts.forEach((c) => c.stop()); charts = []; };
  async function load() {
    let r;
    const now = Date.now();
    try { r = await api('GET', `/api/agents/${encodeURIComponent(pc)}/perf?since=${now - range[1]}&until=${now}`); }
    catch (e) { status.textContent = `Could not read the samples: ${e.message}`; return; }
    const s = r.samples;
    clear();
    fill(area);
    if (!s.length) {
      status.textContent = `No samples in the last ${range[0]}. Is host_perf_interval 0s (off) in the settings below?`;
      return;
    }
    const n = s.reduce((sum, p) => sum + (p.samples || 1), 0);
    const what = r.resolution === 'raw' ? `${n} samples` : `${s.length} averages over ${RESOLUTION[r.resolution] || r.resolution} (${n} samples)`;
    fill(status, `${what}${r.truncated ? ', the newest part of the range' : ''}; last at `, time(s[s.length - 1].at));
    const xs = s.map((p) => p.at / 1000);
    const pct = (v) => (v == null ? '' : `${v.toFixed(1)}%`);
    const rate = (v) => (v == null ? '' : `${bytes(v)}/s`);
    const cpu = [{ label: 'CPU' }];
    const cpuData = [xs, s.map((p) => p.cpu_pct)];
    if (r.resolution !== 'raw') { cpu.push({ label: 'peak', dash: [4, 4] }); cpuData.push(s.map((p) => p.cpu_max_pct)); }
    charts = [
      chart('cpu', 'CPU', cpu, pct, cpuData),
      chart('memory', 'Memory', [{ label: 'used' }, { label: 'total', dash: [4, 4] }, { label: 'swap' }], bytes,
        [xs, s.map((p) => p.mem_used_bytes), s.map((p) => p.mem_total_bytes), s.map((p) => p.swap_used_bytes)]),
      chart('disk', 'Disk', [{ label: 'read' }, { label: 'write' }], rate,
        [xs, s.map((p) => p.disk_read_bytes_per_s), s.map((p) => p.disk_write_bytes_per_s)]),
      chart('network', 'Network', [{ label: 'in' }, { label: 'out' }], rate,
        [xs, s.map((p) => p.net_rx_bytes_per_s), s.map((p) => p.net_tx_bytes_per_s)]),
    ];
    area.append(...charts.map((c) => c.box));
  }
  const timer = setInterval(load, REFRESH_MS);
  load();
  const section = h('section', { class: 'panel', 'aria-labelledby': 'perf-h', id: 'perf' },
    h('h2', { id: 'perf-h' }, 'Performance'),
    h('div', { class: 'toolbar', role: 'group', 'aria-label': 'Time range' }, ...buttons), status, area);
  return { section, stop: () => { clearInterval(timer); clear(); } };
}

/** A field as the agent sees it: its PC scope beats its groups', which beat the fleet's. */
function effective(config, pc, field) {
  const find = (name) => (config.scopes.find((s) => s.scope === name) || { config: {} }).config[field];
  const pcValue = find(`pc:${pc}`);
  if (pcValue !== undefined) return pcValue;
  for (const g of config.groups) { const v = find(`group:${g}`); if (v !== undefined) return v; }
  return find('global');
}

/** Investigation mode: its state (from every scope that applies), a button to start or end
 *  it, and a stacked chart of the busiest processes (CPU, by process name) over the last hour. */
export function processPanel(pc, config) {
  let plot = null;
  const status = h('p', { 'data-testid': 'investigation-status', role: 'status' });
  const area = h('div', { class: 'charts' });
  const errors = h('div');
  const until = () => effective(config, pc, 'process_perf_expires_at');
  const on = () => effective(config, pc, 'process_perf_enabled') === true && until() && Date.parse(until()) > Date.now();
  const setMode = async (edit, message) => {
    fill(errors);
    try {
      const r = await api('PATCH', `/api/agent/config/${encodeURIComponent(`pc:${pc}`)}`, edit);
      config.scopes = config.scopes.filter((s) => s.scope !== r.scope).concat([r]);
      toast(message);
      load();
    } catch (err) { errors.append(problems(err)); }
  };
  const start = h('button', { type: 'button', id: 'investigate', class: 'primary', onclick: () => setMode(
    { process_perf_enabled: true, process_perf_expires_at: new Date(Date.now() + 2 * 3600e3).toISOString() },
    `Investigating ${pc} for 2 hours`) }, 'Investigate for 2 hours');
  // Off at the PC's own scope: that beats an investigation its group or the fleet started.
  const end = h('button', { type: 'button', id: 'investigate-end', onclick: () => setMode(
    { process_perf_enabled: false, process_perf_expires_at: null }, `Investigation of ${pc} ended`) }, 'End investigation');
  async function load() {
    if (on()) fill(status, 'Investigation running until ', time(Date.parse(until())), '.');
    else fill(status, 'No investigation running: processes are not sampled.');
    start.hidden = !can('operator') || on();
    end.hidden = !can('operator') || !on();
    let r;
    try { r = await api('GET', `/api/agents/${encodeURIComponent(pc)}/processes?since=${Date.now() - 3600e3}&limit=720`); }
    catch (e) { status.append(` Could not read process samples: ${e.message}`); return; }
    if (plot) { plot.stop(); plot = null; }
    fill(area);
    if (!r.samples.length) return;
    // CPU per process name in each sample; the busiest names over the hour get a band each.
    const perSample = r.samples.map((s) => {
      const byName = new Map();
      for (const p of s.processes) byName.set(p.name, (byName.get(p.name) || 0) + p.cpu_pct);
      return byName;
    });
    const peak = new Map();
    perSample.forEach((m) => m.forEach((v, k) => peak.set(k, Math.max(peak.get(k) || 0, v))));
    const names = [...peak.entries()].sort((a, b) => b[1] - a[1]).slice(0, STACKED).map(([k]) => k);
    // Stacked: each band is drawn as the running total, the largest total first so the
    // smaller ones paint over it.
    const running = perSample.map(() => 0);
    const totals = names.map((n) => perSample.map((m, i) => { running[i] += m.get(n) || 0; return running[i]; }));
    const order = names.map((n, i) => i).reverse();
    const series = order.map((i) => ({ label: names[i], fill: `${COLORS[i % COLORS.length]}99`, stroke: COLORS[i % COLORS.length] }));
    const xs = r.samples.map((s) => s.at / 1000);
    plot = chart('processes', 'Top processes by CPU (stacked, % of one core)', series, (v) => (v == null ? '' : `${v.toFixed(0)}%`),
      [xs, ...order.map((i) => totals[i])]);
    const latest = r.samples[r.samples.length - 1];
    area.append(plot.box,
      h('table', { 'data-testid': 'top-processes' }, h('caption', {}, 'Latest sample, ', time(latest.at)),
        h('thead', {}, h('tr', {}, ...['PID', 'Name', 'CPU', 'Memory'].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, ...latest.processes.map((p) => h('tr', {}, h('td', { class: 'num' }, String(p.pid)), h('td', {}, p.name),
          h('td', { class: 'num' }, `${p.cpu_pct.toFixed(1)}%`), h('td', { class: 'num' }, bytes(p.mem_bytes)))))));
  }
  const timer = setInterval(load, REFRESH_MS);
  load();
  const section = h('section', { class: 'panel', 'aria-labelledby': 'processes-h', id: 'processes' },
    h('h2', { id: 'processes-h' }, 'Investigation mode'), status, h('div', { class: 'toolbar' }, start, end), errors, area);
  return { section, stop: () => { clearInterval(timer); if (plot) plot.stop(); } };
}
