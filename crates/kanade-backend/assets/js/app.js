// The router: hash routes (#/agents/PC-1) map to page modules; each page renders into <main>
// and may return a cleanup function (live subscriptions), called when the route changes.

import { session, can, h, api, fill } from './core.js';
import { disconnect } from './live.js';
import * as login from './pages/login.js';
import * as overview from './pages/overview.js';
import * as agents from './pages/agents.js';
import * as jobs from './pages/jobs.js';
import * as executions from './pages/executions.js';
import * as schedules from './pages/schedules.js';
import * as audit from './pages/audit.js';
import * as events from './pages/events.js';
import * as compliance from './pages/compliance.js';
import * as facts from './pages/facts.js';
import * as notifications from './pages/notifications.js';
import * as admin from './pages/admin.js';
import * as account from './pages/account.js';
import * as groups from './pages/groups.js';
import * as enroll from './pages/enroll.js';

const routes = [
  [/^\/login$/, login.render, 'Sign in'],
  [/^\/$/, overview.render, 'Overview'],
  [/^\/agents$/, agents.list, 'Agents'],
  [/^\/agents\/([^/]+)$/, agents.detail, 'Agent'],
  [/^\/jobs$/, jobs.list, 'Jobs'],
  [/^\/jobs\/new$/, jobs.editor, 'New job'],
  [/^\/jobs\/([^/]+)$/, jobs.detail, 'Job'],
  [/^\/executions$/, executions.list, 'Executions'],
  [/^\/executions\/([^/]+)$/, executions.detail, 'Execution'],
  [/^\/schedules$/, schedules.list, 'Schedules'],
  [/^\/events$/, events.list, 'Events'],
  [/^\/compliance$/, compliance.list, 'Compliance'],
  [/^\/facts$/, facts.list, 'Facts'],
  [/^\/facts\/([^/]+)$/, facts.detail, 'Facts table'],
  [/^\/compliance\/(.+)$/, compliance.detail, 'Check'],
  [/^\/notifications$/, notifications.list, 'Notifications'],
  [/^\/notifications\/([^/]+)$/, notifications.detail, 'Notification'],
  [/^\/audit$/, audit.list, 'Audit log'],
  [/^\/admin$/, admin.render, 'Users and tokens', 'admin'],
  [/^\/enroll$/, enroll.render, 'Enrol PCs', 'admin'],
  [/^\/account$/, account.render, 'Account'],
  [/^\/groups$/, groups.list, 'Dynamic groups'],
  [/^\/groups\/([^/]+)$/, groups.detail, 'Dynamic group'],
];

const NAV = [
  ['#/', 'Overview'], ['#/agents', 'Agents'], ['#/groups', 'Groups'], ['#/jobs', 'Jobs'], ['#/executions', 'Executions'],
  ['#/schedules', 'Schedules'], ['#/compliance', 'Compliance'], ['#/facts', 'Facts'], ['#/notifications', 'Notifications'], ['#/events', 'Events'], ['#/audit', 'Audit'], ['#/admin', 'Users', 'admin'], ['#/enroll', 'Enrol', 'admin'],
];

let cleanup = null;

function header(path) {
  const top = document.getElementById('top');
  fill(top);
  const user = session.user;
  if (!user) return;
  const current = (href) => {
    const p = href.slice(1);
    return p === '/' ? path === '/' : path === p || path.startsWith(`${p}/`);
  };
  freezeBanner();
  top.append(
    h('a', { class: 'brand', href: '#/' }, 'kanade'),
    h('nav', { 'aria-label': 'Main' },
      NAV.filter(([, , role]) => !role || can(role))
        .map(([href, label]) => h('a', { href, 'aria-current': current(href) ? 'page' : undefined }, label))),
    h('div', { class: 'who' },
      h('a', { href: '#/account', 'data-testid': 'whoami', title: 'Your account' }, `${user.name} (${user.role})`),
      h('button', { type: 'button', id: 'logout', onclick: logout }, 'Sign out')),
  );
}

/** While the fleet is frozen, every page says so above its content. A plain fetch, not api():
 *  a refused read here (a password still to change) must not end the session. */
async function freezeBanner() {
  const banner = document.getElementById('freeze-banner');
  if (!banner) return;
  banner.hidden = true;
  if (!session.token) return;
  try {
    const res = await fetch('/api/freeze', { headers: { Authorization: `Bearer ${session.token}` } });
    const s = res.ok ? await res.json() : null;
    const f = s && s.frozen ? s.freeze : null;
    banner.hidden = !f;
    fill(banner, f ? `Fleet frozen until ${f.until} — ${f.reason} (set by ${f.set_by}). Schedules are skipped, rollouts hold, runs need confirming.` : '');
  } catch { banner.hidden = true; }
}

export function logout() {
  disconnect();
  session.clear();
  location.hash = '#/login';
}

async function show() {
  const path = location.hash.replace(/^#/, '') || '/';
  if (cleanup) { try { cleanup(); } catch { /* a page's cleanup must not block navigation */ } cleanup = null; }
  if (!session.token && path !== '/login') { location.hash = '#/login'; return; }
  const main = document.getElementById('main');
  for (const [re, render, title, role] of routes) {
    const m = path.match(re);
    if (!m) continue;
    header(path);
    document.title = `${title} · kanade`;
    fill(main);
    // Busy until the page's first load is in: assistive tech waits, and so can a test.
    main.setAttribute('aria-busy', 'true');
    if (role && !can(role)) {
      main.append(h('h1', {}, title), h('p', {}, `This page needs the ${role} role.`));
      shown(main, path);
      return;
    }
    try {
      cleanup = (await render(main, ...m.slice(1).map(decodeURIComponent))) || null;
    } catch (e) {
      if (e.status !== 401) main.append(h('p', { class: 'errors', role: 'alert' }, `Could not load this page: ${e.message}`));
    }
    shown(main, path);
    main.focus({ preventScroll: true });
    return;
  }
  fill(main, h('h1', {}, 'Not found'), h('p', {}, h('a', { href: '#/' }, 'Back to the overview')));
  shown(main, path);
}

function shown(main, path) {
  main.dataset.route = path;
  main.setAttribute('aria-busy', 'false');
}

window.addEventListener('hashchange', show);
window.addEventListener('DOMContentLoaded', async () => {
  // A stored session may have expired while the tab slept: check it once.
  if (session.token) { try { await api('GET', '/api/auth/me'); } catch { /* api() handled a 401 */ } }
  show();
});
