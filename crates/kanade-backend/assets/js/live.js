// One EventSource on /api/stream for the whole app; pages subscribe to event types and
// unsubscribe when they are left. EventSource cannot send headers, so the session token
// travels as ?access_token= (accepted on this route only).

import { debounce, session } from './core.js';

let source = null;
const listeners = new Map(); // type -> Set<fn>

function connect() {
  if (source || !session.token) return;
  source = new EventSource(`/api/stream?access_token=${encodeURIComponent(session.token)}`);
  for (const type of ['agent_up', 'agent_down', 'result', 'execution', 'notification', 'lagged']) {
    source.addEventListener(type, (e) => {
      let data = {};
      try { data = JSON.parse(e.data); } catch { /* lagged carries a number */ }
      for (const fn of listeners.get(type) || []) fn(data);
      if (type === 'lagged') resync();
    });
  }
  // Events sent before this (re)connection never reach us — the page may have been
  // drawn before the stream opened, or the link dropped: re-read as after a gap.
  source.onopen = () => { document.body.dataset.live = 'on'; resync(); };
  source.onerror = () => { document.body.dataset.live = 'off'; };
}

/** After a gap, everything shown may be stale: let every page re-read (once each). */
function resync() {
  const fns = new Set();
  for (const set of listeners.values()) for (const fn of set) fns.add(fn);
  for (const fn of fns) fn({ lagged: true });
}

export function disconnect() {
  if (source) source.close();
  source = null;
  delete document.body.dataset.live;
}

/** Call `fn` for each event of `types`; returns the unsubscribe function. */
export function onLive(types, fn) {
  connect();
  for (const t of types) {
    if (!listeners.has(t)) listeners.set(t, new Set());
    listeners.get(t).add(fn);
  }
  return () => { for (const t of types) listeners.get(t)?.delete(fn); };
}

/**
 * Draw with `load` now, and again (debounced) on every event of `types` that `relevant` keeps.
 * The subscription comes before the first load, so nothing that happens while that load is in
 * flight is missed; the filter runs before the debounce, so an unrelated event arriving last
 * cannot swallow a relevant one. Returns the unsubscribe function.
 */
export async function follow(types, load, ms, relevant = () => true) {
  // A reload still waiting out its debounce when the page goes (sign-out included) does not
  // run, and one refused because the session ended meanwhile is not an error: api() already
  // sent the browser to the sign-in page.
  let stopped = false;
  const reload = async () => {
    if (stopped) return;
    try { await load(); } catch (err) { if (err.status !== 401) throw err; }
  };
  const again = debounce(reload, ms);
  const unsubscribe = onLive(types, (e) => { if (e.lagged || relevant(e)) again(); });
  const stop = () => { stopped = true; unsubscribe(); };
  try { await load(); } catch (err) { stop(); throw err; }
  return stop;
}
