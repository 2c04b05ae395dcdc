// The live stream client: GET /api/live read with fetch streaming (so the read token goes in an
// Authorization header, never in a URL), parsed as Server-Sent Events. On a drop it reconnects
// with backoff and sends `Last-Event-ID`, so the collector replays what was missed; ids already
// seen are skipped, so a replay never shows a row twice. A silent connection (no heartbeat for
// 45 s) is treated as dropped. The first connect asks for a `snapshot` of the open sessions: the
// collector sends it first, then replays what was streamed but not yet in that snapshot, so a
// session that starts between the page's first reads and the subscription is not missed.
import { tokens } from './api.js';

/** Message types that carry data (and a fresh id); the rest are control messages. */
export const DATA_KINDS = new Set(['span', 'event', 'model_call', 'tool_call', 'session', 'command', 'approval', 'task', 'alert']);
const SILENCE_MS = 45000;
const BACKOFF_MS = [250, 500, 1000, 2000, 4000, 8000];

export class LiveStream {
  /**
   * onMessages(list of {id, type, data}) is called per network chunk; onStatus(status) on changes:
   * {state: 'connecting'|'live'|'reconnecting'|'unauthorized', attempt, since, lastId, error}.
   */
  constructor({ onMessages, onControl, onStatus }) {
    this.onMessages = onMessages;
    this.onControl = onControl;
    this.onStatus = onStatus;
    this.lastId = null;
    this.attempt = 0;
    this.since = null;
    this.stopped = true;
    this.controller = null;
    this.status = { state: 'connecting', attempt: 0, since: null, lastId: null, error: null };
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.loop();
  }

  /** Reconnect now (after a login), keeping the position. */
  restart() {
    this.stop();
    this.attempt = 0;
    this.start();
  }

  stop() {
    this.stopped = true;
    if (this.controller) this.controller.abort();
  }

  setStatus(state, error = null, unreachable = false) {
    if (state === 'live') { this.attempt = 0; this.since = null; } else if (!this.since && state === 'reconnecting') this.since = new Date();
    this.status = { state, attempt: this.attempt, since: this.since, lastId: this.lastId, error, unreachable };
    this.onStatus(this.status);
  }

  async loop() {
    while (!this.stopped) {
      let error = null;
      let unreachable = false;
      try {
        const done = await this.connect();
        if (done === 'unauthorized') {
          this.stopped = true;
          this.setStatus('unauthorized');
          return;
        }
        error = 'the stream ended';
      } catch (e) {
        if (this.stopped) return;
        error = e && e.message ? e.message : String(e);
        // fetch() itself failing (not a stream cut short) means nothing answers at that address.
        unreachable = e instanceof TypeError && !this.streaming;
      }
      if (this.stopped) return;
      this.attempt += 1;
      this.setStatus('reconnecting', error, unreachable);
      const wait = BACKOFF_MS[Math.min(this.attempt - 1, BACKOFF_MS.length - 1)];
      await new Promise((r) => setTimeout(r, wait));
    }
  }

  async connect() {
    const controller = new AbortController();
    this.controller = controller;
    const headers = { Accept: 'text/event-stream' };
    if (tokens.read) headers.Authorization = 'Bearer ' + tokens.read;
    if (this.lastId !== null) headers['Last-Event-ID'] = String(this.lastId);
    const url = this.lastId === null ? '/api/live?snapshot=true' : '/api/live';
    if (this.attempt === 0) this.setStatus('connecting');
    this.streaming = false;
    const res = await fetch(url, { headers, signal: controller.signal, cache: 'no-store' });
    if (res.status === 401) return 'unauthorized';
    if (!res.ok || !res.body) throw new Error('live stream answered ' + res.status);
    this.setStatus('live');
    this.streaming = true;
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    let timer = null;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => controller.abort(), SILENCE_MS);
    };
    arm();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return 'ended';
        arm();
        buf += value.indexOf('\r') >= 0 ? value.replace(/\r\n?/g, '\n') : value;
        let end = buf.lastIndexOf('\n\n');
        if (end < 0) continue;
        const complete = buf.slice(0, end);
        buf = buf.slice(end + 2);
        this.dispatch(complete);
      }
    } finally {
      clearTimeout(timer);
      controller.abort();
    }
  }

  dispatch(text) {
    const out = [];
    for (const block of text.split('\n\n')) {
      let id = null;
      let type = 'message';
      let data = '';
      for (const line of block.split('\n')) {
        if (!line || line[0] === ':') continue;
        const c = line.indexOf(':');
        const field = c < 0 ? line : line.slice(0, c);
        let v = c < 0 ? '' : line.slice(c + 1);
        if (v[0] === ' ') v = v.slice(1);
        if (field === 'id') id = Number(v);
        else if (field === 'event') type = v;
        else if (field === 'data') data = data ? data + '\n' + v : v;
      }
      if (DATA_KINDS.has(type)) {
        // A replay after a reconnect can overlap what was already shown: skip ids seen.
        if (id !== null && this.lastId !== null && id <= this.lastId) continue;
        if (id !== null) this.lastId = id;
        let parsed = null;
        try { parsed = JSON.parse(data); } catch { continue; }
        out.push({ id, type, data: parsed });
      } else {
        if (id !== null && (this.lastId === null || id > this.lastId)) this.lastId = id;
        let parsed = null;
        try { parsed = data ? JSON.parse(data) : null; } catch { parsed = null; }
        this.onControl({ id, type, data: parsed });
      }
    }
    if (out.length) this.onMessages(out);
  }
}
