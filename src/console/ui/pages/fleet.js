// Fleet: every agent with its live status, current session and model, elapsed, tokens and cost
// today and last activity (GET /api/agents, then the live stream), and the live activity feed.
import { html, useMemo } from '../lib/html.js';
import { api } from '../lib/api.js';
import { ago, clock, duration, epoch, money, short, tokens } from '../lib/format.js';
import { setQuery, sessionHref } from '../lib/route.js';
import { mergeAgents, mergeSessions, store, useFetch, useStore, useThrottled } from '../lib/state.js';
import { Windowed } from '../components/windowed.js';
import { ErrorBox, Status, Tile } from '../components/common.js';

const STATUSES = ['running', 'waiting', 'errored', 'idle', 'paused', 'finished'];

function elapsed(s, now) {
  if (!s || !s.first_seen) return '';
  const end = s.ended_at ? epoch(s.ended_at) : now;
  return duration((end - epoch(s.first_seen)) / 1000);
}

function AgentRow(a, now) {
  const cur = a.current_session ? store.sessions.get(a.current_session) : null;
  return html`<div class="row agents-grid" key=${a.agent_id} data-agent=${a.agent_id}>
    <span class="c-name" title=${a.agent_id}>${a.display_name || a.agent_id}</span>
    <span><${Status} status=${a.status} stuck=${cur && cur.stuck} waiting=${cur && cur.waiting} longTool=${cur && cur.long_tool} /></span>
    <span class="c-id">${a.current_session ? html`<a href=${sessionHref(a.current_session)} title=${a.current_session}>${short(cur && cur.display_name || a.current_session, 28)}</a>` : '—'}</span>
    <span class="opt" title=${a.current_model || ''}>${short(a.current_model || '', 26)}</span>
    <span class="num opt">${elapsed(cur, now)}</span>
    <span class="num">${tokens(a.tokens_today)}</span>
    <span class="num">${money(a.cost_today)}</span>
    <span class="num opt" title=${a.last_activity || ''}>${ago(a.last_activity, now)}</span>
  </div>`;
}

function FeedRow(f) {
  return html`<div class="row feed-grid" key=${f.id} data-id=${f.id}>
    <span class="muted">${clock(f.time)}</span>
    <span class=${'kind k-' + f.type}>${f.type.replace('_', ' ')}</span>
    <span class="c-id">${f.session_id ? html`<a href=${sessionHref(f.session_id)}>${short(f.session_id, 18)}</a>` : ''}</span>
    <span class="c-label" title=${f.label}>${f.label}</span>
  </div>`;
}

export function FleetPage({ loc }) {
  const st = useStore();
  const q = loc.query;
  const res = useFetch('agents', async () => {
    const r = await api.get('/api/agents', { limit: 1000 });
    mergeAgents(r.agents);
    return r.agents.length;
  });
  const now = Date.now();
  const text = (q.q || '').toLowerCase();
  const agents = useThrottled(() => {
    let list = [...st.agents.values()];
    if (q.status) list = list.filter((a) => a.status === q.status);
    if (text) list = list.filter((a) => `${a.agent_id} ${a.display_name || ''} ${a.current_model || ''}`.toLowerCase().includes(text));
    return list.sort((a, b) => (b.last_activity || '').localeCompare(a.last_activity || '') || a.agent_id.localeCompare(b.agent_id));
  }, [q.status, text, res.data], st.agentsVersion);
  const totals = useMemo(() => {
    const t = { agents: 0, running: 0, attention: 0, cost: 0, tokens: 0 };
    for (const a of st.agents.values()) {
      t.agents += 1;
      if (a.status === 'running') t.running += 1;
      if (a.status === 'errored' || a.status === 'waiting') t.attention += 1;
      t.cost += Number(a.cost_today || 0);
      t.tokens += Number(a.tokens_today || 0);
    }
    return t;
  }, [st.version]);
  const active = useMemo(() => {
    let n = 0;
    for (const a of st.agents.values()) {
      const c = a.status_counts || {};
      n += (c.running || 0) + (c.idle || 0) + (c.paused || 0) + (c.errored || 0) + (c.waiting || 0);
    }
    return n;
  }, [st.version]);
  // The agents' current sessions (for elapsed and the stuck flag), read after the first paint.
  useFetch(res.data === null ? 'active:wait' : 'active', async () => {
    if (res.data === null) return null;
    await new Promise((r) => setTimeout(r, 50));
    const r = await api.get('/api/sessions', { status: 'running,idle,paused,errored', limit: 1000 });
    mergeSessions(r.sessions);
    return r.sessions.length;
  });
  const feed = useMemo(() => st.feed.slice().reverse(), [st.feedVersion]);
  const ready = res.data !== null || res.error;

  return html`<div class="page fleet" data-page="fleet" data-ready=${ready ? '1' : undefined}>
    <div class="tiles">
      <${Tile} label="agents" value=${totals.agents} testid="tile-agents" />
      <${Tile} label="running" value=${totals.running} testid="tile-running" />
      <${Tile} label="need attention" value=${totals.attention} testid="tile-attention" />
      <${Tile} label="active sessions" value=${active} testid="tile-active" />
      <${Tile} label="tokens today" value=${tokens(totals.tokens)} testid="tile-tokens" />
      <${Tile} label="cost today (UTC)" value=${money(totals.cost)} testid="tile-cost" />
    </div>
    <${ErrorBox} error=${res.error} retry=${res.reload} />
    <div class="split">
      <section class="card grow">
        <div class="card-h"><h2>Agents</h2>
          <div class="filters">
            <select value=${q.status || ''} onChange=${(e) => setQuery({ status: e.target.value })} aria-label="status">
              <option value="">any status</option>
              ${STATUSES.map((s) => html`<option value=${s}>${s}</option>`)}
            </select>
            <input type="search" placeholder="filter agents" value=${q.q || ''} onInput=${(e) => setQuery({ q: e.target.value })} />
          </div>
        </div>
        <div class="row head agents-grid"><span>agent</span><span>status</span><span>current session</span><span class="opt">model</span><span class="num opt">elapsed</span><span class="num">tokens today</span><span class="num">cost today</span><span class="num opt">last activity</span></div>
        <${Windowed} items=${agents} rowHeight=${34} render=${(a) => AgentRow(a, now)} testid="agents" className="tall"
          empty=${res.loading ? 'Loading agents…' : 'No agent has reported yet. Point an OpenTelemetry exporter at this collector.'} />
      </section>
      <section class="card side">
        <div class="card-h"><h2>Live activity</h2><span class="muted" data-testid="received">${window.__console.received} received</span></div>
        <${Windowed} items=${feed} rowHeight=${28} render=${FeedRow} testid="feed" className="tall" empty="Waiting for activity…" />
      </section>
    </div>
  </div>`;
}
