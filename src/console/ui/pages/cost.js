// Cost: spend over time by model, agent or task (hour or day buckets, a range picker; GET
// /api/cost, answered from the hourly rollup because ranges start on whole hours), totals per
// group, top sessions and tasks, and models without a price with a form that adds one
// (POST /api/cost/reprice with a price-file entry; stored calls are re-priced).
import { html, useMemo, useState } from '../lib/html.js';
import { api } from '../lib/api.js';
import { count, datetime, money, short, tokens } from '../lib/format.js';
import { sessionHref, setQuery, taskHref } from '../lib/route.js';
import { useFetch, useStore } from '../lib/state.js';
import { TimeChart } from '../components/chart.js';
import { ErrorBox, Section } from '../components/common.js';

const RANGES = { '24h': 24, '7d': 24 * 7, '30d': 24 * 30, '90d': 24 * 90 };
const TOP = 8;
const HOUR = 3600e3;

/** `from` (and `to`) of a range, floored to the bucket so the rollup table answers. */
export function rangeOf(q, now = Date.now()) {
  const bucket = q.bucket === 'hour' ? 'hour' : 'day';
  if (q.range === 'custom' && q.from) return { from: q.from, to: q.to || undefined, bucket };
  const hours = RANGES[q.range] || RANGES['7d'];
  let from = now - hours * HOUR;
  from = bucket === 'day' ? Math.floor(from / (24 * HOUR)) * 24 * HOUR : Math.floor(from / HOUR) * HOUR;
  return { from: new Date(from).toISOString().replace('.000Z', 'Z'), to: undefined, bucket };
}

function chartData(rows) {
  const totals = new Map();
  for (const r of rows) totals.set(r.group ?? '(none)', (totals.get(r.group ?? '(none)') || 0) + Number(r.cost_usd || 0));
  const ranked = [...totals.entries()].sort((a, b) => b[1] - a[1]);
  const top = ranked.slice(0, TOP).map(([g]) => g);
  const other = ranked.length > TOP;
  const xs = [...new Set(rows.map((r) => Date.parse(r.bucket) / 1000))].filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  const index = new Map(xs.map((x, i) => [x, i]));
  const series = [...top, ...(other ? ['other'] : [])].map((label) => ({ label: String(label), values: xs.map(() => 0) }));
  const pos = new Map(top.map((g, i) => [g, i]));
  for (const r of rows) {
    const i = index.get(Date.parse(r.bucket) / 1000);
    if (i === undefined) continue;
    const g = r.group ?? '(none)';
    const s = pos.has(g) ? series[pos.get(g)] : series[series.length - 1];
    s.values[i] += Number(r.cost_usd || 0);
  }
  return { x: xs, series, ranked };
}

function tomlString(s) {
  return '"' + String(s).replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/[\u0000-\u001f]/g, '') + '"';
}

/** A price-file entry (the format of `src/cost/prices.toml`). */
export function priceEntry({ model, provider, effective, input, output, cache_read, cache_write }) {
  const lines = ['[[model]]', `id = ${tomlString(model.toLowerCase())}`];
  if (provider) lines.push(`provider = ${tomlString(provider)}`);
  lines.push(`effective = ${tomlString(effective)}`);
  lines.push(`input = ${Number(input)}`, `output = ${Number(output)}`);
  if (cache_read !== '' && cache_read !== undefined) lines.push(`cache_read = ${Number(cache_read)}`);
  if (cache_write !== '' && cache_write !== undefined) lines.push(`cache_write = ${Number(cache_write)}`);
  lines.push(`note = "added from the web console"`);
  return lines.join('\n') + '\n';
}

function PriceForm({ m, done }) {
  const [f, setF] = useState({ input: '', output: '', cache_read: '', cache_write: '' });
  const [msg, setMsg] = useState(null);
  const [busy, setBusy] = useState(false);
  const valid = f.input !== '' && f.output !== '' && !Number.isNaN(Number(f.input)) && !Number.isNaN(Number(f.output));
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    const entry = priceEntry({ model: m.model, provider: m.provider, effective: (m.first_seen || '2000-01-01').slice(0, 10), ...f });
    try {
      const r = await api.send('POST', '/api/cost/reprice', entry, 'application/toml');
      setMsg({ ok: true, text: `Priced. ${r && r.updated !== undefined ? r.updated + ' calls re-priced.' : ''}` });
      done();
    } catch (err) {
      setMsg({ ok: false, text: err.unauthorized ? 'The collector wants the control token for this (sign in again with it).' : err.message });
    } finally {
      setBusy(false);
    }
  };
  const field = (k, label) => html`<label>${label}<input inputmode="decimal" size="6" value=${f[k]} onInput=${(e) => setF({ ...f, [k]: e.target.value })} /></label>`;
  return html`<form class="price-form" onSubmit=${submit} data-model=${m.model}>
    ${field('input', 'input')} ${field('output', 'output')} ${field('cache_read', 'cache read')} ${field('cache_write', 'cache write')}
    <button type="submit" disabled=${!valid || busy}>Add price</button> <span class="muted small">USD per 1M tokens</span>
    ${msg ? html`<div class=${msg.ok ? 'ok' : 'bad'}>${msg.text}</div>` : null}
  </form>`;
}

function TopList({ rows, link, testid }) {
  const top = rows.slice().sort((a, b) => Number(b.cost_usd) - Number(a.cost_usd)).slice(0, 15);
  if (!top.length) return html`<p class="muted">Nothing in this range.</p>`;
  return html`<table class="t" data-testid=${testid}><thead><tr><th></th><th class="num">calls</th><th class="num">tokens</th><th class="num">cost</th></tr></thead>
    <tbody>${top.map((r) => html`<tr><td class="c-id">${r.group ? html`<a href=${link(r.group)} title=${r.group}>${short(r.group, 36)}</a>` : html`<span class="muted">(none)</span>`}</td>
      <td class="num">${count(r.calls)}</td><td class="num">${tokens(Number(r.input_tokens) + Number(r.output_tokens))}</td><td class="num">${money(r.cost_usd)}</td></tr>`)}</tbody></table>`;
}

export function CostPage({ loc }) {
  const st = useStore();
  const q = loc.query;
  const group = ['model', 'agent', 'task', 'provider'].includes(q.group) ? q.group : 'model';
  const r = rangeOf(q);
  const rangeKey = `${r.from}|${r.to || ''}|${r.bucket}`;
  const [priced, setPriced] = useState(0);
  const series = useFetch(`cost:${group}:${rangeKey}:${priced}`, () => api.get('/api/cost', { group_by: group, bucket: r.bucket, from: r.from, to: r.to }));
  const sessions = useFetch(`cost-s:${rangeKey}:${priced}`, () => api.get('/api/cost', { group_by: 'session', from: r.from, to: r.to }));
  const tasks = useFetch(`cost-t:${rangeKey}:${priced}`, () => api.get('/api/cost', { group_by: 'task', from: r.from, to: r.to }));
  const unpriced = useFetch(`unpriced:${priced}`, () => api.get('/api/cost/unpriced'));
  const chart = useMemo(() => (series.data ? chartData(series.data.rows || []) : null), [series.data]);
  const totals = series.data && series.data.totals;
  const ready = (series.data || series.error) && (unpriced.data || unpriced.error);
  const range = q.range || '7d';

  return html`<div class="page cost" data-page="cost" data-ready=${ready ? '1' : undefined}>
    <section class="card">
      <div class="card-h"><h2>Spend by ${group}</h2>
        <div class="filters">
          <span class="chips">${['model', 'agent', 'task', 'provider'].map((g) => html`<button class=${'chip' + (g === group ? ' on' : '')} onClick=${() => setQuery({ group: g })} data-group=${g}>${g}</button>`)}</span>
          <span class="chips">${['hour', 'day'].map((b) => html`<button class=${'chip' + (b === r.bucket ? ' on' : '')} onClick=${() => setQuery({ bucket: b })} data-bucket=${b}>${b}</button>`)}</span>
          <select value=${range} onChange=${(e) => setQuery({ range: e.target.value })} aria-label="range">
            ${Object.keys(RANGES).map((k) => html`<option value=${k}>last ${k}</option>`)}<option value="custom">dates…</option>
          </select>
          ${range === 'custom' ? html`<input type="date" value=${q.from || ''} onChange=${(e) => setQuery({ from: e.target.value })} aria-label="from" /><input type="date" value=${q.to || ''} onChange=${(e) => setQuery({ to: e.target.value })} aria-label="to" />` : null}
        </div>
      </div>
      <${ErrorBox} error=${series.error} retry=${series.reload} />
      ${totals ? html`<div class="facts" data-testid="cost-totals"><span><i>total</i> <b>${money(totals.cost_usd)}</b></span>${Number(totals.estimated_usd) > 0 ? html`<span data-testid="cost-estimate"><i>spend</i> ${money(totals.spend_usd)} · <i>estimate (subscriptions)</i> ${money(totals.estimated_usd)}</span>` : null}<span><i>calls</i> ${count(totals.calls)}</span>
        <span><i>tokens</i> ${tokens(totals.input_tokens)} in · ${tokens(totals.output_tokens)} out</span><span><i>from</i> ${datetime(r.from)} UTC</span><span class="muted">(${series.data.source})</span></div>` : null}
      ${chart && chart.x.length ? html`<${TimeChart} x=${chart.x} series=${chart.series} testid="cost-chart" />` : html`<p class="muted">${series.loading ? 'Loading…' : 'No spend in this range.'}</p>`}
      ${chart && chart.ranked.length ? html`<table class="t"><thead><tr><th>${group}</th><th class="num">cost</th><th class="num">share</th></tr></thead>
        <tbody>${chart.ranked.slice(0, 20).map(([g, c]) => html`<tr><td>${g}</td><td class="num">${money(c)}</td><td class="num">${totals && totals.cost_usd ? Math.round((100 * c) / totals.cost_usd) + '%' : ''}</td></tr>`)}</tbody></table>` : null}
    </section>
    <div class="split">
      <${Section} title="Top sessions" testid="top-sessions">${sessions.data ? html`<${TopList} rows=${sessions.data.rows || []} link=${sessionHref} testid="top-sessions-t" />` : html`<${ErrorBox} error=${sessions.error} />`}</${Section}>
      <${Section} title="Top tasks" testid="top-tasks">${tasks.data ? html`<${TopList} rows=${tasks.data.rows || []} link=${taskHref} testid="top-tasks-t" />` : html`<${ErrorBox} error=${tasks.error} />`}</${Section}>
    </div>
    <${Section} title="Models without a price" testid="unpriced">
      <${ErrorBox} error=${unpriced.error} />
      ${unpriced.data && !unpriced.data.models.length ? html`<p class="muted">Every model seen has a price.</p>` : null}
      ${unpriced.data && unpriced.data.models.length ? html`<ul class="plain">${unpriced.data.models.map((m) => html`<li class="unpriced-item">
        <b>${m.model || '(no model name)'}</b> <span class="muted">${m.provider || ''} · ${count(m.calls)} calls · ${tokens(m.input_tokens)} in · ${tokens(m.output_tokens)} out · since ${datetime(m.first_seen)}</span>
        ${m.model ? html`<${PriceForm} m=${m} done=${() => setPriced((n) => n + 1)} />` : null}
      </li>`)}</ul>` : null}
    </${Section}>
    <span class="muted small">${st.kinds.model_call || 0} model calls seen live since this page opened; reload the range to include them.</span>
  </div>`;
}
