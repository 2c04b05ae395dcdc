// Sessions: the live feed of sessions, newest activity first (GET /api/sessions, paged with its
// cursor as the list scrolls, then the live stream), filtered by status, agent and task (by the
// API) and by text (over the rows loaded). The filters are in the URL.
import { html, useCallback, useRef, useState } from '../lib/html.js';
import { api } from '../lib/api.js';
import { ago, duration, epoch, money, short, tokens } from '../lib/format.js';
import { setQuery, sessionHref } from '../lib/route.js';
import { mergeSessions, useFetch, useStore, useThrottled } from '../lib/state.js';
import { Windowed } from '../components/windowed.js';
import { ErrorBox, Status } from '../components/common.js';

const STATUSES = ['running', 'idle', 'paused', 'errored', 'finished'];
const PAGE = 200;

export function elapsedOf(s, now) {
  if (!s.first_seen) return Number(s.elapsed_s || 0);
  const end = s.ended_at ? epoch(s.ended_at) : now;
  return Math.max(0, (end - epoch(s.first_seen)) / 1000);
}

function SessionRow(s, now) {
  return html`<div class="row sessions-grid" key=${s.session_id} data-session=${s.session_id}>
    <span><${Status} status=${s.status} stuck=${s.stuck} waiting=${s.waiting} longTool=${s.long_tool} /></span>
    <span class="c-id"><a href=${sessionHref(s.session_id)} title=${s.session_id}>${short(s.display_name || s.session_id, 40)}</a></span>
    <span class="opt" title=${s.agent_id || ''}>${short(s.agent_id || '', 24)}</span>
    <span class="opt" title=${s.task_id || ''}>${short(s.task_id || '', 18)}</span>
    <span class="opt" title=${s.model || ''}>${short(s.model || '', 24)}</span>
    <span class="num opt">${duration(elapsedOf(s, now))}</span>
    <span class="num opt">${tokens((s.input_tokens || 0) + (s.output_tokens || 0))}</span>
    <span class="num" title=${s.billing === 'subscription' ? 'subscription: an estimate at list price, not spend' : ''}>${money(s.cost_usd)}${s.billing === 'subscription' ? html`<sup class="muted" data-testid="estimate"> est</sup>` : null}</span>
    <span class="num opt">${s.errors ? html`<b class="bad">${s.errors}</b>` : '0'}</span>
    <span class="num" title=${s.last_seen || ''}>${ago(s.last_activity || s.last_seen, now)}</span>
  </div>`;
}

export function SessionsPage({ loc }) {
  const st = useStore();
  const q = loc.query;
  const statuses = (q.status || '').split(',').filter((s) => STATUSES.includes(s));
  const filterKey = JSON.stringify([statuses.join(','), q.agent || '', q.task || '']);
  const paging = useRef({ key: null, cursor: null, done: false, busy: false });
  const [pages, setPages] = useState(0);

  const params = { status: statuses.join(','), agent: q.agent, task: q.task, limit: PAGE };
  const res = useFetch('sessions:' + filterKey, async () => {
    const r = await api.get('/api/sessions', params);
    mergeSessions(r.sessions);
    paging.current = { key: filterKey, cursor: r.next_cursor, done: !r.next_cursor, busy: false };
    setPages(1);
    return r.sessions.length;
  });

  const more = useCallback(() => {
    const p = paging.current;
    if (p.key !== filterKey || p.done || p.busy || !p.cursor) return;
    p.busy = true;
    api.get('/api/sessions', { ...params, cursor: p.cursor }).then((r) => {
      mergeSessions(r.sessions);
      if (paging.current === p) {
        p.cursor = r.next_cursor;
        p.done = !r.next_cursor;
        p.busy = false;
        setPages((n) => n + 1);
      }
    }, () => { p.busy = false; });
  }, [filterKey]);

  const text = (q.q || '').toLowerCase();
  const now = Date.now();
  const list = useThrottled(() => {
    const out = [];
    for (const s of st.sessions.values()) {
      if (statuses.length && !statuses.includes(s.status)) continue;
      if (q.agent && s.agent_id !== q.agent) continue;
      if (q.task && s.task_id !== q.task) continue;
      if (text && !`${s.session_id} ${s.display_name || ''} ${s.agent_id || ''} ${s.task_id || ''} ${s.model || ''}`.toLowerCase().includes(text)) continue;
      out.push(s);
    }
    return out.sort((a, b) => (b.last_seen || '').localeCompare(a.last_seen || '') || (b.session_id < a.session_id ? -1 : 1));
  }, [filterKey, text, res.data, pages], st.sessionsVersion);

  const toggle = (s) => {
    const set = new Set(statuses);
    if (set.has(s)) set.delete(s); else set.add(s);
    setQuery({ status: [...set].join(',') });
  };
  const ready = res.data !== null || res.error;
  return html`<div class="page sessions" data-page="sessions" data-ready=${ready ? '1' : undefined}>
    <section class="card">
      <div class="card-h"><h2>Sessions <span class="muted" data-testid="count">${list.length}${paging.current.done ? '' : '+'}</span></h2>
        <div class="filters">
          <span class="chips">${STATUSES.map((s) => html`<button class=${'chip' + (statuses.includes(s) ? ' on' : '')} onClick=${() => toggle(s)} data-filter=${s}>${s}</button>`)}</span>
          <input placeholder="agent" value=${q.agent || ''} onChange=${(e) => setQuery({ agent: e.target.value.trim() })} aria-label="agent" />
          <input placeholder="task" value=${q.task || ''} onChange=${(e) => setQuery({ task: e.target.value.trim() })} aria-label="task" />
          <input type="search" placeholder="text" value=${q.q || ''} onInput=${(e) => setQuery({ q: e.target.value })} aria-label="text" />
        </div>
      </div>
      <${ErrorBox} error=${res.error} retry=${res.reload} />
      <div class="row head sessions-grid"><span>status</span><span>session</span><span class="opt">agent</span><span class="opt">task</span><span class="opt">model</span><span class="num opt">elapsed</span><span class="num opt">tokens</span><span class="num">cost</span><span class="num opt">errors</span><span class="num">last activity</span></div>
      <${Windowed} items=${list} rowHeight=${34} render=${(s) => SessionRow(s, now)} onNearEnd=${more} testid="sessions" className="tall"
        empty=${res.loading ? 'Loading sessions…' : 'No session matches.'} />
    </section>
  </div>`;
}
