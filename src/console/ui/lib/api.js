// Fetch wrappers for /api/*. Tokens live in sessionStorage (gone when the tab closes) and go out
// as bearer headers; the read token on reads and the live stream, the control token (else the
// read token) on state-changing calls. `conn` tracks whether the collector answers at all.

const READ_KEY = 'agent-console.read-token';
const CONTROL_KEY = 'agent-console.control-token';

function stored(key) {
  try { return sessionStorage.getItem(key) || ''; } catch { return ''; }
}

export const tokens = {
  get read() { return stored(READ_KEY); },
  get control() { return stored(CONTROL_KEY); },
  set(read, control) {
    try {
      if (read != null) read ? sessionStorage.setItem(READ_KEY, read) : sessionStorage.removeItem(READ_KEY);
      if (control != null) control ? sessionStorage.setItem(CONTROL_KEY, control) : sessionStorage.removeItem(CONTROL_KEY);
    } catch { /* storage disabled: tokens last for this page only */ }
    conn.set({ auth: 'unknown' });
  },
};

/** Connection state shared by the header banner and the pages. */
export const conn = {
  // api: 'ok' | 'unreachable'; auth: 'unknown' | 'ok' | 'need-read'
  state: { api: 'ok', auth: 'unknown', since: null },
  listeners: new Set(),
  set(patch) {
    const next = { ...this.state, ...patch };
    if (next.api !== this.state.api) next.since = patch.api === 'ok' ? null : new Date();
    if (next.api === this.state.api && next.auth === this.state.auth) return;
    this.state = next;
    for (const f of this.listeners) f(next);
  },
};

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status; // 0 = the collector did not answer
    this.body = body;
  }
  get unreachable() { return this.status === 0; }
  get notFound() { return this.status === 404; }
  get unauthorized() { return this.status === 401; }
}

function query(params) {
  if (!params) return '';
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? '?' + s : '';
}

async function call(method, path, { params, body, control = false, contentType } = {}) {
  const headers = { Accept: 'application/json' };
  const token = control ? (tokens.control || tokens.read) : tokens.read;
  if (token) headers.Authorization = 'Bearer ' + token;
  let payload;
  if (body !== undefined) {
    if (typeof body === 'string') {
      payload = body;
      headers['Content-Type'] = contentType || 'text/plain; charset=utf-8';
    } else {
      payload = JSON.stringify(body);
      headers['Content-Type'] = 'application/json';
    }
  }
  let res;
  try {
    res = await fetch(path + query(params), { method, headers, body: payload, cache: 'no-store' });
  } catch (e) {
    conn.set({ api: 'unreachable' });
    throw new ApiError(0, 'the collector did not answer (' + e.message + ')');
  }
  conn.set({ api: 'ok' });
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  if (!res.ok) {
    if (res.status === 401 && !control) conn.set({ auth: 'need-read' });
    const msg = (json && json.error) || text.slice(0, 300) || res.statusText;
    throw new ApiError(res.status, `${res.status} ${msg}`, json);
  }
  if (!control) conn.set({ auth: 'ok' });
  return json;
}

export const api = {
  get: (path, params) => call('GET', path, { params }),
  /** A state-changing call, under the control token. */
  send: (method, path, body, contentType) => call(method, path, { body, control: true, contentType }),
  /** Read-only SQL through POST /api/sql (a read, under the read token). */
  sql: (sql) => call('POST', '/api/sql', { body: { sql } }),
};

/** A SQL string literal. */
export function sqlString(s) {
  return "'" + String(s).replaceAll("'", "''") + "'";
}
