// Shared by every page: the session, API calls, element building, formatting, the router.
// Text always goes in through textContent (never innerHTML), so no API value can inject markup.

const TOKEN = 'kanade.token';
const USER = 'kanade.user';

// Kept in sessionStorage: it survives a reload but not the tab, and is never sent as a cookie.
export const session = {
  get token() { return sessionStorage.getItem(TOKEN); },
  get user() { try { return JSON.parse(sessionStorage.getItem(USER)) || null; } catch { return null; } },
  set(token, user) { sessionStorage.setItem(TOKEN, token); sessionStorage.setItem(USER, JSON.stringify(user)); },
  clear() { sessionStorage.removeItem(TOKEN); sessionStorage.removeItem(USER); },
};

const RANK = { viewer: 1, operator: 2, admin: 3 };
/** Whether the signed-in user has at least `role`. */
export function can(role) {
  const u = session.user;
  return !!u && (RANK[u.role] || 0) >= RANK[role];
}

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.code = (body && body.code) || '';
    // Validation problems, one per line: `detail.problems` of the API's error shape.
    const list = body && body.detail && body.detail.problems;
    this.detail = Array.isArray(list) ? list : [];
  }
}

/** Call the API. `body` is JSON unless `yaml` text is given. A 401 ends the session. */
export async function api(method, path, body, { yaml } = {}) {
  // The audit trail says which client acted.
  const headers = { 'X-Kanade-Source': 'dashboard' };
  if (session.token) headers.Authorization = `Bearer ${session.token}`;
  let payload;
  if (yaml !== undefined) { headers['Content-Type'] = 'application/yaml'; payload = yaml; }
  else if (body !== undefined) { headers['Content-Type'] = 'application/json'; payload = JSON.stringify(body); }
  const res = await fetch(path, { method, headers, body: payload });
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { error: text }; }
  if (res.status === 401 && !path.startsWith('/api/auth/login')) {
    session.clear();
    location.hash = '#/login';
    throw new ApiError(401, data);
  }
  // The fleet is frozen: a run goes ahead only when the operator confirms (the override is
  // audited by the backend).
  if (res.status === 409 && data && data.code === 'frozen' && !path.includes('override_freeze=')
      && window.confirm(`${data.error}\n\nRun anyway?`)) {
    return api(method, `${path}${path.includes('?') ? '&' : '?'}override_freeze=true`, body, { yaml });
  }
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

/** h('a', {href: '#/x'}, 'text', child...) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    // Through the CSSOM: the content security policy blocks style attributes, not this.
    else if (k === 'style') el.style.cssText = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replace `el`'s children; like h(), nested arrays are flattened and empty values skipped. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function badge(status) {
  return h('span', { class: `badge s-${status}` }, String(status).replace('_', ' '));
}

export function time(ms) {
  if (ms === null || ms === undefined) return '';
  const d = new Date(ms);
  return h('time', { datetime: d.toISOString(), title: d.toISOString() }, d.toLocaleString());
}

export function ago(ms) {
  if (!ms) return 'never';
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  if (s < 86400) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86400)}d ago`;
}

export function link(href, text) { return h('a', { href }, text); }

/** Execution ids are time-ordered UUIDs: their start repeats, so show the tail (full id on hover). */
export function execLink(id) { return h('a', { href: `#/executions/${id}`, title: id }, `…${id.slice(-8)}`); }

/**
 * A table. `columns`: [{ label, cell(row) → node/text, num?, sort? }]. When `sorted` is given
 * ({key, desc, onSort}), headers with a `sort` key become buttons.
 */
export function table(columns, rows, { empty = 'Nothing yet.', sorted, caption } = {}) {
  if (!rows.length) return h('p', { class: 'muted' }, empty);
  const head = columns.map((c) => {
    const cls = c.num ? 'num' : undefined;
    if (!sorted || !c.sort) return h('th', { class: cls, scope: 'col' }, c.label);
    const active = sorted.key === c.sort;
    const aria = active ? (sorted.desc ? 'descending' : 'ascending') : 'none';
    return h('th', { class: cls, scope: 'col', 'aria-sort': aria },
      h('button', { type: 'button', onclick: () => sorted.onSort(c.sort) }, c.label, active ? (sorted.desc ? ' ▼' : ' ▲') : ''));
  });
  return h('div', { class: 'scroll' }, h('table', {},
    caption ? h('caption', { class: 'sr-only' }, caption) : null,
    h('thead', {}, h('tr', {}, head)),
    h('tbody', {}, rows.map((r) => h('tr', {}, columns.map((c) => h('td', { class: c.num ? 'num' : undefined }, c.cell(r))))))));
}

export function toast(message, bad = false) {
  const box = document.getElementById('toast');
  const item = h('div', { class: bad ? 'bad' : '' }, message);
  box.append(item);
  setTimeout(() => item.remove(), 6000);
}

/** The messages of an API error as a list (validation problems one per line). */
export function problems(err) {
  const lines = err.detail && err.detail.length ? err.detail : [err.message];
  return h('ul', { class: 'errors', role: 'alert' }, lines.map((l) => h('li', {}, l)));
}

/** Run `fn` at most once per `ms`, trailing. */
export function debounce(fn, ms = 400) {
  let t = null;
  return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); };
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : '';
}
