// The page's live state. Stream messages are only queued when they arrive; once per animation
// frame (or once a second while the tab is hidden) the queue is folded into plain maps
// (sessions, agents, a bounded feed ring) and the views are told once. Every map is bounded.
// `window.__console` exposes counters for tests and the frame-rate probe.
import { useEffect, useRef, useState } from './html.js';
import { LiveStream } from './live.js';
import { conn } from './api.js';

const FEED_MAX = 500;
const SESSIONS_MAX = 20000;
const AGENTS_MAX = 5000;
const STATUS_ORDER = ['running', 'errored', 'idle', 'paused', 'finished'];

export const store = {
  version: 0,
  /** Bumped when the list of sessions or their order may have changed. */
  sessionsVersion: 0,
  agentsVersion: 0,
  /** Bumped when pages must re-read the API (a gap in the stream, a reconnect to a restarted collector). */
  refresh: 0,
  sessions: new Map(),
  agents: new Map(),
  feed: [],
  feedVersion: 0,
  /** Per message type: how many were folded (pages that poll on a kind watch these). */
  kinds: {},
  /** The last few messages per session id, for the session page. */
  lastBySession: new Map(),
  live: { state: 'connecting', attempt: 0, since: null, lastId: null, error: null },
  notice: null,
};

const stats = {
  received: 0,
  flushed: 0,
  frames: 0,
  maxFrameGapMs: 0,
  lastFrame: 0,
  queued: 0,
  gaps: 0,
  duplicates: 0,
  reconnects: 0,
  lastId: null,
  ids: null,
  longTasks: 0,
  longTaskMs: 0,
  /** performance.now() when each page first showed its data (`data-ready`), and the frame after. */
  ready: {},
  painted: {},
  /** Reset the frame counters (the load test measures a window). */
  reset() { this.frames = 0; this.maxFrameGapMs = 0; this.lastFrame = 0; this.longTasks = 0; this.longTaskMs = 0; },
  /** Drop the live connection as a network failure would (the client reconnects and resumes). */
  dropStream() { if (stream && stream.controller) stream.controller.abort(); },
};
window.__console = stats;
try {
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) { stats.longTasks += 1; stats.longTaskMs += e.duration; }
  }).observe({ type: 'longtask', buffered: true });
} catch { /* no long-task timing in this browser */ }

/** Record when a page first has its data on screen (for the first-paint benchmark). */
export function watchReady(root) {
  const check = () => {
    const el = root.querySelector('[data-page][data-ready]');
    if (!el) return;
    const page = el.getAttribute('data-page');
    if (stats.ready[page] !== undefined) return;
    stats.ready[page] = performance.now();
    requestAnimationFrame(() => setTimeout(() => { stats.painted[page] = performance.now(); }, 0));
  };
  new MutationObserver(check).observe(root, { subtree: true, childList: true, attributes: true, attributeFilter: ['data-ready'] });
}

const listeners = new Set();
const queue = [];

function notify() {
  store.version += 1;
  for (const f of listeners) f(store.version);
}

/** Re-render the calling component whenever the store changes (at most once per frame). */
export function useStore() {
  const [, set] = useState(0);
  useEffect(() => {
    listeners.add(set);
    return () => listeners.delete(set);
  }, []);
  return store;
}

function statusOf(counts) {
  for (const s of STATUS_ORDER) if ((counts[s] || 0) > 0) return s;
  return 'finished';
}

function later(a, b) {
  if (!a) return b;
  if (!b) return a;
  return a > b ? a : b;
}

/** Sessions from the API (a page, a snapshot, one session): merged in, newest fields win. */
export function mergeSessions(rows) {
  for (const r of rows || []) {
    if (!r || !r.session_id) continue;
    const old = store.sessions.get(r.session_id);
    store.sessions.set(r.session_id, old ? { ...old, ...r } : { ...r });
  }
  trimSessions();
  store.sessionsVersion += 1;
  notify();
}

export function mergeAgents(rows) {
  for (const r of rows || []) {
    if (!r || !r.agent_id) continue;
    const old = store.agents.get(r.agent_id);
    store.agents.set(r.agent_id, old ? { ...old, ...r } : { ...r });
  }
  if (store.agents.size > AGENTS_MAX) {
    const keep = [...store.agents.values()].sort((a, b) => (b.last_activity || '').localeCompare(a.last_activity || '')).slice(0, AGENTS_MAX);
    store.agents = new Map(keep.map((a) => [a.agent_id, a]));
  }
  store.agentsVersion += 1;
  notify();
}

function trimSessions() {
  if (store.sessions.size <= SESSIONS_MAX * 1.1) return;
  const keep = [...store.sessions.values()].sort((a, b) => (b.last_seen || '').localeCompare(a.last_seen || '')).slice(0, SESSIONS_MAX);
  store.sessions = new Map(keep.map((s) => [s.session_id, s]));
}

function today() {
  return new Date().toISOString().slice(0, 10);
}

function feedLabel(m) {
  const d = m.data;
  switch (m.type) {
    case 'model_call': return `${d.model || 'model'} · ${d.input_tokens || 0}→${d.output_tokens || 0} tok${d.cost_usd ? ' · $' + Number(d.cost_usd).toFixed(4) : ''}`;
    case 'tool_call': return `${d.tool_name || 'tool'}${d.success === false ? ' failed' : ''}`;
    case 'span': return d.name || 'span';
    case 'event': return d.event_name || (typeof d.body === 'string' ? d.body : 'event');
    case 'session': return `${d.previous_status || 'new'} → ${d.status}${d.stuck ? ' (stuck)' : ''}${d.status_reason ? ': ' + d.status_reason : ''}`;
    default: return d.kind || d.state || d.status || m.type;
  }
}

function touchAgent(agentId, time) {
  const a = store.agents.get(agentId);
  if (a && time) a.last_activity = later(a.last_activity, time);
  return a;
}

function foldOne(m) {
  const d = m.data || {};
  const sid = d.session_id;
  const time = d.time;
  store.kinds[m.type] = (store.kinds[m.type] || 0) + 1;
  let s = sid ? store.sessions.get(sid) : null;
  switch (m.type) {
    case 'session': {
      const prev = s ? s.status : d.previous_status;
      const fresh = !s;
      s = s ? Object.assign(s, d) : { ...d };
      store.sessions.set(sid, s);
      store.sessionsVersion += 1;
      if (d.agent_id) {
        let a = store.agents.get(d.agent_id);
        if (!a) {
          a = { agent_id: d.agent_id, display_name: d.agent_id, status: d.status, status_counts: {}, sessions: 0, tokens_today: 0, cost_today: 0, last_activity: time };
          store.agents.set(d.agent_id, a);
        }
        const c = (a.status_counts = { ...(a.status_counts || {}) });
        if (fresh && !d.previous_status) a.sessions = (a.sessions || 0) + 1;
        if (prev && c[prev] > 0 && !(fresh && !d.previous_status)) c[prev] -= 1;
        c[d.status] = (c[d.status] || 0) + 1;
        a.status = statusOf(c);
        if (d.status !== 'finished') a.current_session = sid;
        else if (a.current_session === sid) a.current_session = null;
        if (d.model) a.current_model = d.model;
        a.last_activity = later(a.last_activity, d.last_activity || time);
        store.agentsVersion += 1;
      }
      break;
    }
    case 'model_call': {
      if (s) {
        s.model_calls = (s.model_calls || 0) + 1;
        s.input_tokens = (s.input_tokens || 0) + (d.input_tokens || 0);
        s.output_tokens = (s.output_tokens || 0) + (d.output_tokens || 0);
        s.cache_read_tokens = (s.cache_read_tokens || 0) + (d.cache_read_tokens || 0);
        s.cache_write_tokens = (s.cache_write_tokens || 0) + (d.cache_write_tokens || 0);
        s.cost_usd = (s.cost_usd || 0) + (d.cost_usd || 0);
        if (d.error) s.errors = (s.errors || 0) + 1;
        if (d.model) s.model = d.model;
      }
      const a = d.agent_id && touchAgent(d.agent_id, time);
      if (a) {
        if (d.model) a.current_model = d.model;
        if (!time || time.slice(0, 10) === today()) {
          a.tokens_today = (a.tokens_today || 0) + (d.input_tokens || 0) + (d.output_tokens || 0);
          a.cost_today = (a.cost_today || 0) + (d.cost_usd || 0);
        }
      }
      break;
    }
    case 'tool_call':
      if (s) {
        s.tool_calls = (s.tool_calls || 0) + 1;
        if (d.success === false) s.errors = (s.errors || 0) + 1;
      }
      if (d.agent_id) touchAgent(d.agent_id, time);
      break;
    case 'event':
      if (s && (d.severity_number >= 17 || d.event_name === 'claude_code.api_error' || d.event_name === 'StopFailure')) s.errors = (s.errors || 0) + 1;
      if (d.agent_id) touchAgent(d.agent_id, time);
      break;
    case 'span':
      if (s && (d.error || d.status_code === 'error') && d.span_type !== 'llm' && d.span_type !== 'tool') s.errors = (s.errors || 0) + 1;
      if (d.agent_id) touchAgent(d.agent_id, time);
      break;
    default:
      break;
  }
  if (s && time && m.type !== 'session') {
    const before = s.last_seen;
    s.last_seen = later(s.last_seen, time);
    s.last_activity = later(s.last_activity, time);
    if (s.last_seen !== before) store.sessionsVersion += 1;
  }
  if (sid) {
    let l = store.lastBySession.get(sid);
    if (!l) {
      if (store.lastBySession.size > 2000) store.lastBySession.clear();
      store.lastBySession.set(sid, (l = []));
    }
    l.push(m.id);
    if (l.length > 20) l.shift();
  }
  store.feed.push({ id: m.id, type: m.type, time, session_id: sid, agent_id: d.agent_id, label: feedLabel(m) });
}

// Views re-render at most every RENDER_MS while messages stream in (a person cannot read 60
// updates a second; the frames in between stay free for scrolling and input). Folding itself
// still happens every frame, so memory stays bounded and nothing is late by more than that.
const RENDER_MS = 100;
let lastRender = 0;
let renderPending = false;

function renderSoon(now) {
  if (now - lastRender >= RENDER_MS) {
    lastRender = now;
    renderPending = false;
    notify();
  } else renderPending = true;
}

function fold() {
  if (!queue.length) return;
  const n = queue.length;
  for (let i = 0; i < n; i++) foldOne(queue[i]);
  queue.length = 0;
  if (store.feed.length > FEED_MAX) store.feed.splice(0, store.feed.length - FEED_MAX);
  store.feedVersion += 1;
  stats.flushed += n;
  stats.queued = 0;
  renderSoon(performance.now());
}

function frame(t) {
  stats.frames += 1;
  if (stats.lastFrame) stats.maxFrameGapMs = Math.max(stats.maxFrameGapMs, t - stats.lastFrame);
  stats.lastFrame = t;
  fold();
  if (renderPending) renderSoon(t);
  requestAnimationFrame(frame);
}
requestAnimationFrame(frame);
// rAF stops in a hidden tab: keep folding (and so bounding memory) once a second.
setInterval(() => { if (document.hidden) { fold(); if (renderPending) renderSoon(performance.now()); } }, 1000);

let stream = null;

export function startLive() {
  if (stream) return stream;
  stream = new LiveStream({
    onMessages(list) {
      stats.received += list.length;
      for (const m of list) queue.push(m);
      stats.queued = queue.length;
      stats.lastId = list[list.length - 1].id;
      if (stats.ids) for (const m of list) { if (stats.ids.has(m.id)) stats.duplicates += 1; else stats.ids.add(m.id); }
      // A stream far ahead of the frames (hidden tab, slow device): fold now rather than hoard.
      if (queue.length > 20000) fold();
    },
    onControl(m) {
      if (m.type === 'snapshot' && m.data && Array.isArray(m.data.sessions)) {
        mergeSessions(m.data.sessions);
      } else if (m.type === 'gap') {
        stats.gaps += 1;
        store.notice = m.data && m.data.missed === null
          ? 'The collector restarted: the page re-read its data.'
          : `The stream skipped ${m.data ? m.data.missed : '?'} messages: the page re-read its data.`;
        store.refresh += 1;
        notify();
      }
    },
    onStatus(st) {
      if (st.state === 'reconnecting' && store.live.state === 'live') stats.reconnects += 1;
      const wasDown = store.live.state === 'reconnecting';
      store.live = st;
      if (st.state === 'unauthorized') conn.set({ auth: 'need-read' });
      if (st.state === 'live' && wasDown) {
        // Numbers folded while down may be stale; re-read what is on screen.
        store.refresh += 1;
      }
      notify();
    },
  });
  stream.start();
  // A page left for another (or kept in the back/forward cache) must not keep its stream: the
  // browser allows 6 connections per host over HTTP/1.1 and each stream holds one.
  window.addEventListener('pagehide', () => stream.stop());
  window.addEventListener('pageshow', (e) => { if (e.persisted) stream.restart(); });
  return stream;
}

/** Track every id folded, to count duplicates (tests turn this on). */
export function trackIds() {
  stats.ids = new Set();
}
stats.trackIds = trackIds;

/** Drop the notice banner. */
export function dismissNotice() {
  store.notice = null;
  notify();
}

/**
 * Load `fn()` when `key` changes and whenever the page must re-read the API (`store.refresh`);
 * keeps the last data while reloading; retries every 3 s while the collector is unreachable.
 */
export function useFetch(key, fn, opts = {}) {
  const [st, set] = useState({ data: null, error: null, loading: true, key: null });
  const s = useStore();
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let alive = true;
    let retry = null;
    // `keep`: show the previous answer while a new key loads (lists re-read on live messages).
    set((o) => ({ ...o, loading: true, error: o.key === key ? o.error : null, data: o.key === key || opts.keep ? o.data : null }));
    fn().then(
      (data) => { if (alive) set({ data, error: null, loading: false, key }); },
      (error) => {
        if (!alive) return;
        set((o) => ({ data: o.key === key ? o.data : null, error, loading: false, key }));
        if (error && error.unreachable) retry = setTimeout(() => setTick((t) => t + 1), 3000);
      },
    );
    return () => { alive = false; clearTimeout(retry); };
  }, [key, s.refresh, tick]);
  return { ...st, reload: () => setTick((t) => t + 1) };
}

/** `compute()` again when `deps` change, or when `version` moved and `ms` passed (sorting 10k rows at most 4x/s). */
export function useThrottled(compute, deps, version, ms = 250) {
  const ref = useRef({ v: -1, at: 0, value: [], deps: null, timer: null });
  const [, force] = useState(0);
  const r = ref.current;
  const depsChanged = !r.deps || deps.length !== r.deps.length || deps.some((d, i) => d !== r.deps[i]);
  const now = performance.now();
  if (depsChanged || (r.v !== version && now - r.at >= ms)) {
    r.value = compute();
    r.v = version;
    r.at = now;
    r.deps = deps;
  } else if (r.v !== version && !r.timer) {
    r.timer = setTimeout(() => { r.timer = null; force((x) => x + 1); }, Math.max(0, ms - (now - r.at)));
  }
  useEffect(() => () => clearTimeout(ref.current.timer), []);
  return r.value;
}
