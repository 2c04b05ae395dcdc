// Session controls (the control plane, issue 12): pause, resume, inject, kill and approve / deny
// held tool calls via POST /api/sessions/{id}/commands, each button disabled with the reason the
// session's `capabilities` give; the command list with each command's delivery state and its audit
// trail (the `command` items of the session's timeline); the session's held tool calls (GET /api/approvals). On a collector without the control
// plane (the commands route answers 404) the panel says so and every button is disabled.
// Kept in its own module so it can be finished against the merged API without touching the rest.
import { html, useState } from '../lib/html.js';
import { api, tokens } from '../lib/api.js';
import { clock, short } from '../lib/format.js';
import { useFetch, useStore } from '../lib/state.js';
import { Section } from '../components/common.js';

const KINDS = ['pause', 'resume', 'inject', 'kill'];
const enc = encodeURIComponent;

/**
 * `capabilities` as the API may send it, as {kind: {ok, reason}}: an object of kind -> true |
 * false | "reason" | {ok|available|enabled, reason}, or a list of the kinds that work.
 */
export function normaliseCapabilities(caps) {
  const out = {};
  for (const k of [...KINDS, 'approve', 'deny']) out[k] = { ok: false, reason: 'this session reports no capabilities' };
  if (!caps) return out;
  if (Array.isArray(caps)) {
    for (const k of Object.keys(out)) out[k] = caps.includes(k) ? { ok: true, reason: null } : { ok: false, reason: `${k} is not supported for this session` };
    return out;
  }
  const reasons = caps.reasons || {};
  const list = Array.isArray(caps.kinds) ? caps.kinds : null;
  for (const k of Object.keys(out)) {
    const v = list ? list.includes(k) : caps[k];
    if (v === true) out[k] = { ok: true, reason: null };
    else if (typeof v === 'string') out[k] = { ok: false, reason: v };
    else if (v && typeof v === 'object') {
      const ok = Boolean(v.ok ?? v.available ?? v.enabled ?? v.can ?? v.supported);
      out[k] = { ok, reason: ok ? null : v.reason || v.why || `${k} is not available` };
    } else out[k] = { ok: false, reason: reasons[k] || `${k} is not supported for this session` };
  }
  return out;
}

function stateOf(c) {
  return c.state || c.status || 'accepted';
}

function CommandRow({ c, trail }) {
  const steps = trail || c.audit || c.steps || c.history || [];
  const times = Object.entries(c).filter(([k, v]) => k.endsWith('_at') && v);
  return html`<li class="cmd" data-command=${c.id || c.command_id} data-kind=${c.kind} data-state=${stateOf(c)}>
    <b>${c.kind}</b> <span class=${'pill cs-' + stateOf(c)}>${stateOf(c)}</span>
    ${c.message ? html` <span class="muted">“${short(c.message, 60)}”</span>` : null}
    ${c.reason ? html` <span class="muted">${short(c.reason, 60)}</span>` : null}
    <div class="muted small">${times.map(([k, v]) => html`<span>${k.replace(/_at$/, '')} ${clock(v)} </span>`)}${c.by || c.issued_by ? html` · by ${c.by || c.issued_by}` : null}</div>
    ${steps.length ? html`<ul class="plain small audit" data-testid="audit">${steps.map((s) => html`<li>${clock(s.time || s.at)} ${s.action || s.step || s.state || ''} <span class="muted">${s.actor || s.who || s.by || ''}</span> ${s.result || ''}</li>`)}</ul>` : null}
  </li>`;
}

export function SessionControls({ id, session }) {
  const st = useStore();
  const [message, setMessage] = useState('');
  const [hard, setHard] = useState(false);
  const [busy, setBusy] = useState(null);
  const [result, setResult] = useState(null);
  const [needToken, setNeedToken] = useState(false);
  const [token, setToken] = useState('');
  const liveKey = `${st.kinds.command || 0}:${st.kinds.approval || 0}`;
  const cmds = useFetch(`commands:${id}:${liveKey}`, () => api.get(`/api/sessions/${enc(id)}/commands`), { keep: true });
  const unavailable = cmds.error && cmds.error.notFound;
  // Held tool calls are asked for only where the control plane exists (one 404 probe, not two).
  const cmdsOk = Boolean(cmds.data);
  const approvals = useFetch(`approvals:${id}:${liveKey}:${cmdsOk}`, () => (cmdsOk ? api.get('/api/approvals', { session: id }) : Promise.resolve(null)), { keep: true });
  // The audit trail: every step of every command (control_audit, as `command` timeline items).
  const audit = useFetch(`audit:${id}:${liveKey}:${cmdsOk}`, () => (cmdsOk ? api.get(`/api/sessions/${enc(id)}/timeline`, { types: 'command', limit: 1000 }) : Promise.resolve(null)), { keep: true });
  const trails = new Map();
  for (const it of (audit.data && audit.data.items) || []) {
    if (!it.command_id) continue;
    if (!trails.has(it.command_id)) trails.set(it.command_id, []);
    trails.get(it.command_id).push(it);
  }
  const caps = normaliseCapabilities(session && session.capabilities);

  const send = async (kind, extra = {}) => {
    if (kind === 'kill' && !window.confirm(`Kill session ${id}${hard ? ' and end its process' : ''}?`)) return;
    setBusy(kind);
    setResult(null);
    try {
      const r = await api.send('POST', `/api/sessions/${enc(id)}/commands`, { kind, ...extra });
      setResult({ ok: true, text: `${kind}: ${stateOf(r || {})}` });
      if (kind === 'inject') setMessage('');
      cmds.reload();
    } catch (e) {
      if (e.unauthorized) setNeedToken(true);
      setResult({ ok: false, text: `${kind} refused: ${e.message}` });
    } finally {
      setBusy(null);
    }
  };

  const why = (k) => (unavailable ? 'this collector has no control plane (POST /api/sessions/{id}/commands)' : caps[k].ok ? null : caps[k].reason);
  const button = (k, label, extra) => html`<button data-action=${k} disabled=${Boolean(why(k)) || busy !== null} title=${why(k) || ''} onClick=${() => send(k, extra)}>${busy === k ? '…' : label}</button>`;
  const list = cmds.data ? (Array.isArray(cmds.data) ? cmds.data : cmds.data.commands || []) : [];
  const held = approvals.data ? (Array.isArray(approvals.data) ? approvals.data : approvals.data.approvals || []) : [];

  return html`<${Section} title="Controls" testid="controls">
    ${unavailable ? html`<p class="muted" data-testid="controls-unavailable">Control is not available on this collector: it has no <code>/api/sessions/{id}/commands</code> (the control plane, issue 12).</p>` : null}
    <div class="controls">
      ${button('pause', 'Pause')} ${button('resume', 'Resume')}
      ${button('kill', 'Kill', { hard })}
      <label class="small"><input type="checkbox" checked=${hard} onChange=${(e) => setHard(e.target.checked)} /> hard (end the process)</label>
    </div>
    <div class="controls">
      <input placeholder="message to inject" value=${message} onInput=${(e) => setMessage(e.target.value)} aria-label="message" />
      ${html`<button data-action="inject" disabled=${Boolean(why('inject')) || !message.trim() || busy !== null} title=${why('inject') || ''} onClick=${() => send('inject', { message })}>Inject</button>`}
    </div>
    ${!unavailable ? html`<ul class="plain reasons small">${KINDS.filter((k) => why(k)).map((k) => html`<li><b>${k}</b>: ${why(k)}</li>`)}</ul>` : null}
    ${needToken ? html`<form class="controls" onSubmit=${(e) => { e.preventDefault(); tokens.set(null, token.trim()); setNeedToken(false); }}>
      <input type="password" placeholder="control token" value=${token} onInput=${(e) => setToken(e.target.value)} aria-label="control token" /><button type="submit">Use</button></form>` : null}
    ${result ? html`<p class=${result.ok ? 'ok' : 'bad'} data-testid="command-result">${result.text}</p>` : null}
    ${held.length ? html`<h3>Held tool calls</h3><ul class="plain">${held.map((a) => html`<li data-approval=${a.tool_use_id || a.id}>
      <b>${a.tool_name || 'tool'}</b> <code>${short(typeof a.input === 'string' ? a.input : JSON.stringify(a.input || a.tool_input || ''), 90)}</code>
      <button data-action="approve" disabled=${Boolean(why('approve'))} title=${why('approve') || ''} onClick=${() => send('approve', { tool_use_id: a.tool_use_id || a.id })}>Approve</button>
      <button data-action="deny" disabled=${Boolean(why('deny'))} title=${why('deny') || ''} onClick=${() => send('deny', { tool_use_id: a.tool_use_id || a.id, reason: 'denied from the console' })}>Deny</button>
    </li>`)}</ul>` : null}
    ${list.length ? html`<h3>Commands</h3><ul class="plain">${list.slice(-20).reverse().map((c) => html`<${CommandRow} c=${c} trail=${trails.get(c.command_id || c.id)} />`)}</ul>` : null}
  </${Section}>`;
}
