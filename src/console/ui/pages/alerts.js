// Alerts (issue 13): firing and recent alerts with links to their session or task and the action
// the rule suggests (an ordinary session command: the rule's pause / kill, else pause for a session
// scope), and the rules list. Live `alert` messages
// re-read the lists. On a collector without /api/alerts the page says so.
import { html, useState } from '../lib/html.js';
import { api } from '../lib/api.js';
import { datetime, short } from '../lib/format.js';
import { sessionHref, taskHref } from '../lib/route.js';
import { useFetch, useStore } from '../lib/state.js';
import { ErrorBox, NotAvailable, Section } from '../components/common.js';

const enc = encodeURIComponent;

/** An alert's scope: the API's `kind:id` string (`session:abc`, `task:T-1`, `agent:a1`, `day:...`, `all`) or an object. */
export function parseScope(a) {
  const s = a.scope;
  if (typeof s === 'string') {
    const i = s.indexOf(':');
    return i > 0 ? { kind: s.slice(0, i), id: s.slice(i + 1) } : { kind: s };
  }
  return s || {};
}

function scopeLink(a) {
  const scope = parseScope(a);
  const sid = a.session_id || scope.session_id || (scope.kind === 'session' && scope.id);
  const tid = a.task_id || scope.task_id || (scope.kind === 'task' && scope.id);
  if (sid) return html`<a href=${sessionHref(sid)} data-testid="alert-session">session ${short(sid, 24)}</a>`;
  if (tid) return html`<a href=${taskHref(tid)} data-testid="alert-task">task ${short(tid, 24)}</a>`;
  if (scope.kind === 'agent' && scope.id) return html`<a href=${'/sessions?agent=' + enc(scope.id)}>agent ${short(scope.id, 24)}</a>`;
  return html`<span>${scope.id ? `${scope.kind} ${scope.id}` : scope.kind || 'fleet'}</span>`;
}

/** The one-click action an alert suggests: its rule's own session action, else pause for a session scope. */
function suggested(a, rule) {
  const act = (rule && rule.action) || a.action || a.suggested_action;
  const kind = act && (typeof act === 'string' ? act : act.kind);
  if (kind === 'pause' || kind === 'kill') return kind;
  return parseScope(a).kind === 'session' ? 'pause' : null;
}

function Action({ a, rule, done }) {
  const [msg, setMsg] = useState(null);
  const kind = suggested(a, rule);
  const scope = parseScope(a);
  const sid = a.session_id || scope.session_id || (scope.kind === 'session' && scope.id);
  if (!kind || !sid || (a.state || a.status) === 'resolved') return null;
  const run = async () => {
    try {
      const r = await api.send('POST', `/api/sessions/${enc(sid)}/commands`, { kind, reason: `alert ${a.rule || a.rule_name || ''}`.trim() });
      setMsg(`${kind}: ${(r && (r.status || r.state)) || 'sent'}`);
      done();
    } catch (e) {
      setMsg(`${kind} refused: ${e.message}`);
    }
  };
  return html`<button data-action=${'alert-' + kind} onClick=${run}>${kind} session</button>${msg ? html` <span class="muted small" data-testid="alert-action-result">${msg}</span>` : null}`;
}

function AlertRow({ a, rule, done }) {
  const state = a.state || a.status || (a.resolved_at ? 'resolved' : 'firing');
  return html`<tr data-alert=${a.id || a.alert_id} data-state=${state}>
    <td><span class=${'pill al-' + state}>${state}</span></td><td>${a.rule || a.rule_name}</td><td>${scopeLink(a)}</td>
    <td class="num">${a.value ?? ''}</td><td class="num">${a.threshold ?? ''}</td>
    <td>${datetime(a.fired_at || a.started_at || a.time)}${a.tier ? html` <span class="muted small">tier ${Math.round(a.tier * 100)}%</span>` : null}</td><td><${Action} a=${a} rule=${rule} done=${done} /></td></tr>`;
}

export function AlertsPage() {
  const st = useStore();
  const live = st.kinds.alert || 0;
  const alerts = useFetch(`alerts:${live}`, () => api.get('/api/alerts', { limit: 200 }), { keep: true });
  const rules = useFetch(`rules:${Boolean(alerts.data)}`, () => (alerts.data ? api.get('/api/alerts/rules') : Promise.resolve(null)));
  if (alerts.error && alerts.error.notFound) {
    return html`<div class="page" data-page="alerts" data-ready="1"><${NotAvailable} what="Alerting" route="/api/alerts" issue="the tasks-and-alerts issue (13)" /></div>`;
  }
  const list = alerts.data ? (Array.isArray(alerts.data) ? alerts.data : alerts.data.alerts || []) : [];
  const firing = list.filter((a) => (a.state || a.status || (a.resolved_at ? 'resolved' : 'firing')) !== 'resolved');
  const recent = list.filter((a) => !firing.includes(a));
  const ruleList = rules.data ? (Array.isArray(rules.data) ? rules.data : rules.data.rules || []) : [];
  const byName = new Map(ruleList.map((r) => [r.name, r]));
  const table = (rows, testid) => html`<table class="t" data-testid=${testid}><thead><tr><th>state</th><th>rule</th><th>scope</th><th class="num">value</th><th class="num">threshold</th><th>since (UTC)</th><th></th></tr></thead>
    <tbody>${rows.map((a) => html`<${AlertRow} a=${a} rule=${byName.get(a.rule || a.rule_name)} done=${alerts.reload} />`)}</tbody></table>`;
  return html`<div class="page alerts" data-page="alerts" data-ready=${alerts.data || alerts.error ? '1' : undefined}>
    <${ErrorBox} error=${alerts.error} retry=${alerts.reload} />
    <${Section} title=${'Firing (' + firing.length + ')'} testid="firing">${firing.length ? table(firing, 'firing-t') : html`<p class="muted">Nothing is firing.</p>`}</${Section}>
    <${Section} title="Recent" testid="recent">${recent.length ? table(recent, 'recent-t') : html`<p class="muted">No recent alert.</p>`}</${Section}>
    <${Section} title="Rules" testid="rules">
      <${ErrorBox} error=${rules.error} />
      <table class="t"><thead><tr><th>name</th><th>kind</th><th>scope</th><th>threshold</th><th>action</th></tr></thead>
      <tbody>${ruleList.map((r) => html`<tr><td>${r.name}</td><td>${r.kind}</td><td>${r.scope == null ? 'all' : typeof r.scope === 'object' ? JSON.stringify(r.scope) : r.scope}</td>
        <td>${r.threshold ?? r.threshold_usd ?? ''}</td><td>${r.action == null ? '—' : typeof r.action === 'object' ? JSON.stringify(r.action) : r.action}</td></tr>`)}</tbody></table>
    </${Section}>
  </div>`;
}
