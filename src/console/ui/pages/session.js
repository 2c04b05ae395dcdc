// One session: its summary (live), cost split by source (reported / computed / unpriced), models,
// parent and children, state changes, the controls (pages/controls.js), and the timeline
// (GET .../timeline, paged with its cursor and windowed; while the session runs, new items are
// read after the last item's cursor, so none is shown twice). `?item=` selects an item.
import { html, useCallback, useEffect, useMemo, useRef, useState } from '../lib/html.js';
import { api, sqlString } from '../lib/api.js';
import { clock, count, datetime, duration, ms, money, short, tokens } from '../lib/format.js';
import { href, sessionHref, setQuery, taskHref } from '../lib/route.js';
import { mergeSessions, useFetch, useStore } from '../lib/state.js';
import { Windowed } from '../components/windowed.js';
import { ErrorBox, Section, Status } from '../components/common.js';
import { SessionControls } from './controls.js';
import { elapsedOf } from './sessions.js';

const TYPES = ['prompt', 'model_call', 'tool_call', 'error', 'transition', 'command', 'event'];
const DEFAULT_TYPES = TYPES.filter((t) => t !== 'event');
const PAGE = 500;
const MAX_ITEMS = 50000;
const enc = encodeURIComponent;

function summary(it) {
  switch (it.type) {
    case 'prompt': return it.prompt ? it.prompt : `(${it.prompt_length ?? '?'} characters; the text was not sent)`;
    case 'model_call': return `${it.model || 'model'} · ${tokens(it.input_tokens)} in → ${tokens(it.output_tokens)} out · ${money(it.cost_usd)}${it.cost_source && it.cost_source !== 'computed' ? ' ' + it.cost_source : ''} · ${ms(it.duration_ms)}${it.error ? ' · failed' : ''}`;
    case 'tool_call': return `${it.tool_name || 'tool'} ${it.success === false ? 'failed' : ''} · ${ms(it.duration_ms)}${it.input ? ' · ' + short(it.input, 120) : ''}`;
    case 'error': return `${it.name || 'error'}: ${it.message || ''}`;
    case 'event': return `${it.name || ''} ${it.body || ''}`;
    case 'transition': return `${it.from_status || 'new'} → ${it.to_status}${it.stuck ? ' (stuck)' : ''}${it.reason ? ': ' + it.reason : ''}`;
    case 'command': return `${it.kind || ''} ${String(it.action || '').replace(/^(command|approval)\./, '')} by ${it.actor || '?'}${it.result ? ' · ' + it.result : ''}`;
    default: return it.kind || it.state || JSON.stringify(it).slice(0, 120);
  }
}

function ItemRow(it, selected) {
  const bad = it.type === 'error' || it.error || it.success === false;
  return html`<div class=${'row tl-grid' + (selected === it.cursor ? ' sel' : '') + (bad ? ' bad-row' : '')} key=${it.cursor}
      data-type=${it.type} onClick=${() => setQuery({ item: it.cursor })}>
    <span class="muted">${clock(it.time)}</span>
    <span class=${'kind k-' + it.type}>${it.type.replace('_', ' ')}</span>
    <span class="c-label" title=${summary(it)}>${summary(it)}</span>
  </div>`;
}

function ItemDetail({ item }) {
  if (!item) return html`<p class="muted">Select an item of the timeline to see it whole.</p>`;
  const long = ['prompt', 'input', 'output', 'message', 'body', 'attributes'];
  const fields = Object.entries(item).filter(([k]) => k !== 'cursor' && !long.includes(k));
  return html`<div class="detail" data-testid="item-detail">
    <dl>${fields.map(([k, v]) => html`<dt>${k}</dt><dd>${v === null ? '—' : typeof v === 'object' ? JSON.stringify(v) : String(v)}</dd>`)}</dl>
    ${long.filter((k) => item[k] !== undefined && item[k] !== null).map((k) => html`<h3>${k}</h3><pre>${item[k]}</pre>`)}
    ${item.truncated ? html`<p class="muted">Cut at 8 KiB by the API.</p>` : null}
  </div>`;
}

function useTimeline(id, types, refresh, lastLive) {
  const [state, setState] = useState({ items: [], done: false, error: null, loading: true });
  const ref = useRef({ key: null, items: [], cursor: null, done: false, busy: false, polled: 0 });
  const key = id + '|' + types;
  const page = useCallback(async (cursor) => {
    const r = await api.get(`/api/sessions/${enc(id)}/timeline`, { limit: PAGE, types, cursor });
    return r;
  }, [key]);

  useEffect(() => {
    const me = { key, items: [], cursor: null, done: false, busy: true, polled: 0 };
    ref.current = me;
    setState((s) => ({ ...s, loading: true, error: null }));
    page(null).then((r) => {
      if (ref.current !== me) return;
      me.items = r.items;
      me.cursor = r.next_cursor;
      me.done = !r.next_cursor;
      me.busy = false;
      setState({ items: me.items, done: me.done, error: null, loading: false });
    }, (error) => { if (ref.current === me) { me.busy = false; setState({ items: [], done: false, error, loading: false }); } });
  }, [key, refresh]);

  const more = useCallback(() => {
    const me = ref.current;
    if (me.busy || me.done || !me.cursor || me.items.length >= MAX_ITEMS) return;
    me.busy = true;
    page(me.cursor).then((r) => {
      if (ref.current !== me) return;
      me.items = me.items.concat(r.items);
      me.cursor = r.next_cursor;
      me.done = !r.next_cursor;
      me.busy = false;
      setState({ items: me.items, done: me.done, error: null, loading: false });
    }, () => { me.busy = false; });
  }, [key]);

  // New activity in this session: read what follows the last item (at most once a second).
  useEffect(() => {
    const me = ref.current;
    if (!lastLive || !me.done || me.busy) return undefined;
    const wait = Math.max(0, 1000 - (Date.now() - me.polled));
    const t = setTimeout(() => {
      if (ref.current !== me || me.busy || !me.done) return;
      me.busy = true;
      me.polled = Date.now();
      const last = me.items.length ? me.items[me.items.length - 1].cursor : null;
      page(last).then((r) => {
        if (ref.current !== me) return;
        const seen = new Set(me.items.slice(-PAGE).map((i) => i.cursor));
        const fresh = r.items.filter((i) => !seen.has(i.cursor));
        me.items = fresh.length ? me.items.concat(fresh) : me.items;
        me.cursor = r.next_cursor || (me.items.length ? me.items[me.items.length - 1].cursor : null);
        me.done = !r.next_cursor;
        me.busy = false;
        setState({ items: me.items, done: me.done, error: null, loading: false });
      }, () => { me.busy = false; });
    }, wait);
    return () => clearTimeout(t);
  }, [lastLive]);

  return { ...state, more };
}

function CostSplit({ id, version }) {
  const res = useFetch('split:' + id + ':' + version, () => api.sql(
    `SELECT coalesce(cost_source, 'none') AS source, count(*) AS calls, coalesce(sum(cost_usd), 0) AS cost
     FROM model_calls WHERE session_id = ${sqlString(id)} GROUP BY 1 ORDER BY 1`));
  if (res.error) return html`<span class="muted">cost split unavailable (${res.error.message})</span>`;
  if (!res.data) return html`<span class="muted">…</span>`;
  const by = Object.fromEntries(res.data.rows.map((r) => [r[0], { calls: r[1], cost: r[2] }]));
  const part = (k, label) => html`<span class=${'split-part sp-' + k} data-source=${k}><b>${money(by[k] ? by[k].cost : 0)}</b> ${label} <span class="muted">(${count(by[k] ? by[k].calls : 0)} calls)</span></span>`;
  return html`<div class="cost-split" data-testid="cost-split">${part('reported', 'reported')} ${part('computed', 'computed')} ${part('unpriced', 'unpriced')}</div>`;
}

export function SessionPage({ id, loc }) {
  const st = useStore();
  const q = loc.query;
  const types = (q.types || DEFAULT_TYPES.join(',')).split(',').filter((t) => TYPES.includes(t)).join(',') || DEFAULT_TYPES.join(',');
  const detail = useFetch('session:' + id, async () => {
    const r = await api.get('/api/sessions/' + enc(id));
    mergeSessions([r.session, ...(r.children || [])]);
    return r;
  });
  const recent = st.lastBySession.get(id);
  const lastLive = recent && recent.length ? recent[recent.length - 1] : null;
  const tl = useTimeline(id, types, st.refresh, lastLive);
  const selected = q.item ? tl.items.find((i) => i.cursor === q.item) : null;
  const s = st.sessions.get(id) || (detail.data && detail.data.session);
  const now = Date.now();
  const splitVersion = useMemo(() => Math.floor((s && s.model_calls) || 0), [s && s.model_calls]);

  if (detail.error && detail.error.notFound) {
    return html`<div class="card" data-page="session" data-ready="1"><h2>No session ${id}</h2><p>The collector has no session with this id. <a href="/sessions">All sessions</a></p></div>`;
  }
  const d = detail.data;
  const toggleType = (t) => {
    const set = new Set(types.split(','));
    if (set.has(t)) set.delete(t); else set.add(t);
    setQuery({ types: TYPES.filter((x) => set.has(x)).join(','), item: null });
  };
  const ready = (d || detail.error) && !tl.loading;
  return html`<div class="page session" data-page="session" data-ready=${ready ? '1' : undefined}>
    <${ErrorBox} error=${detail.error} retry=${detail.reload} />
    ${s ? html`<section class="card">
      <div class="card-h"><h2 class="c-id" title=${id}>${s.display_name || id}</h2><${Status} status=${s.status} stuck=${s.stuck} waiting=${s.waiting} longTool=${s.long_tool} /></div>
      <div class="facts">
        <span><i>agent</i> ${s.agent_id ? html`<a href=${href('/sessions', { agent: s.agent_id })}>${s.agent_id}</a>` : '—'}</span>
        <span><i>task</i> ${s.task_id ? html`<a href=${taskHref(s.task_id)}>${s.task_id}</a>` : '—'}</span>
        <span><i>parent</i> ${s.parent_session_id ? html`<a href=${sessionHref(s.parent_session_id)} data-testid="parent">${short(s.parent_session_id, 30)}</a>` : '—'}</span>
        <span><i>model</i> ${s.model || '—'}</span>
        <span><i>elapsed</i> ${duration(elapsedOf(s, now))}</span>
        <span><i>started</i> ${datetime(s.first_seen)} UTC</span>
        <span><i>status since</i> ${datetime(s.status_since)}${s.status_reason ? ' · ' + s.status_reason : ''}</span>
        <span><i>calls</i> ${count(s.model_calls)} model · ${count(s.tool_calls)} tool · <span class=${s.errors ? 'bad' : ''}>${count(s.errors)} errors</span></span>
        <span><i>tokens</i> ${tokens(s.input_tokens)} in · ${tokens(s.output_tokens)} out · ${tokens(s.cache_read_tokens)} cache read · ${tokens(s.cache_write_tokens)} cache write</span>
        <span><i>cost</i> <b data-testid="session-cost">${money(s.cost_usd)}</b>${s.billing === 'subscription' ? html` <span class="muted" data-testid="session-estimate">estimate at list price (subscription${s.billing_plan ? ' ' + s.billing_plan : ''})</span>` : null}</span>
      </div>
      <${CostSplit} id=${id} version=${splitVersion} />
    </section>` : null}
    <div class="split">
      <section class="card grow">
        <div class="card-h"><h2>Timeline <span class="muted" data-testid="timeline-count">${tl.items.length}${tl.done ? '' : '+'}</span></h2>
          <span class="chips">${TYPES.map((t) => html`<button class=${'chip' + (types.split(',').includes(t) ? ' on' : '')} onClick=${() => toggleType(t)} data-filter=${t}>${t.replace('_', ' ')}</button>`)}</span>
        </div>
        <${ErrorBox} error=${tl.error} />
        <${Windowed} items=${tl.items} rowHeight=${30} render=${(it) => ItemRow(it, q.item)} onNearEnd=${tl.more} testid="timeline" className="tall"
          empty=${tl.loading ? 'Loading the timeline…' : 'Nothing in this session yet.'} />
      </section>
      <div class="side">
        <${Section} title="Item"><${ItemDetail} item=${selected} /></${Section}>
        <${SessionControls} id=${id} session=${s} />
        ${d && d.models && d.models.length ? html`<${Section} title="Models">
          <table class="t"><thead><tr><th>model</th><th class="num">calls</th><th class="num">tokens</th><th class="num">cost</th></tr></thead>
          <tbody>${d.models.map((m) => html`<tr><td>${m.model || '—'}<div class="muted">${m.provider || ''}</div></td><td class="num">${count(m.calls)}</td><td class="num">${tokens(m.input_tokens + m.output_tokens)}</td><td class="num">${money(m.cost_usd)}</td></tr>`)}</tbody></table>
        </${Section}>` : null}
        ${d && d.children && d.children.length ? html`<${Section} title=${'Children (' + d.children.length + ')'} testid="children">
          <ul class="plain">${d.children.map((c) => html`<li><${Status} status=${(st.sessions.get(c.session_id) || c).status} /> <a href=${sessionHref(c.session_id)}>${short(c.display_name || c.session_id, 40)}</a> <span class="muted">${money(c.cost_usd)}</span></li>`)}</ul>
        </${Section}>` : null}
        ${d && d.transitions && d.transitions.length ? html`<${Section} title="State changes">
          <ul class="plain">${d.transitions.slice(-50).reverse().map((t) => html`<li><span class="muted">${clock(t.time)}</span> ${t.from_status || 'new'} → <b>${t.to_status}</b>${t.reason ? html` <span class="muted">${t.reason}</span>` : null}</li>`)}</ul>
        </${Section}>` : null}
      </div>
    </div>
  </div>`;
}
