// Tasks (issue 13): the Kanban board (inbox, assigned, running, complete) with cost and flags per
// card, cards moved by hand (PATCH /api/tasks/{id} with the state override, a menu rather than
// drag-and-drop so it works on a phone and under WebDriver), and a task page with its sessions.
// Live `task` messages re-read the board (at most once a second). On a collector without
// /api/tasks the page says so.
import { html, useEffect, useState } from '../lib/html.js';
import { api } from '../lib/api.js';
import { money, short } from '../lib/format.js';
import { sessionHref, setQuery, taskHref } from '../lib/route.js';
import { useFetch, useStore } from '../lib/state.js';
import { ErrorBox, NotAvailable, Section, Status } from '../components/common.js';

export const COLUMNS = ['inbox', 'assigned', 'running', 'complete'];
const FLAGS = ['errored', 'stuck', 'waiting', 'paused'];
const enc = encodeURIComponent;

const idOf = (t) => t.task_id ?? t.id;
const stateOf = (t) => t.state ?? t.board_state ?? 'inbox';
const costOf = (t) => t.cost_usd ?? (t.cost && t.cost.total_usd) ?? 0;

/** Flags of a card, from `flags` (a list or an object of booleans) or top-level booleans. */
export function flagsOf(t) {
  const f = t.flags;
  if (Array.isArray(f)) return f;
  if (f && typeof f === 'object') return Object.keys(f).filter((k) => f[k]);
  return FLAGS.filter((k) => t[k] === true);
}

/** Re-read at most once a second while `task` messages arrive. */
function useLiveKey(kind) {
  const st = useStore();
  const n = st.kinds[kind] || 0;
  const [key, setKey] = useState(n);
  useEffect(() => {
    if (n === key) return undefined;
    const t = setTimeout(() => setKey(n), 1000);
    return () => clearTimeout(t);
  }, [n]);
  return key;
}

function Card({ t, move }) {
  const id = idOf(t);
  return html`<div class="task-card" data-task=${id} data-state=${stateOf(t)}>
    <a href=${taskHref(id)} class="task-title">${short(t.title || id, 60)}</a>
    <div class="muted small">${id}${t.agent_id || t.assignee ? ' · ' + (t.agent_id || t.assignee) : ''}</div>
    <div class="task-foot"><b>${money(costOf(t))}</b>
      ${flagsOf(t).map((f) => html` <span class=${'pill st-' + f}>${f}</span>`)}
      <select aria-label="move" data-action="move" value=${stateOf(t)} onChange=${(e) => move(t, e.target.value)}>
        ${COLUMNS.map((c) => html`<option value=${c}>${c}</option>`)}
      </select>
    </div>
  </div>`;
}

export function TasksPage({ loc }) {
  const q = loc.query;
  const live = useLiveKey('task');
  const [err, setErr] = useState(null);
  const res = useFetch(`tasks:${q.q || ''}:${live}`, () => api.get('/api/tasks', { limit: 500, q: q.q }));
  if (res.error && res.error.notFound) {
    return html`<div class="page" data-page="tasks" data-ready="1"><${NotAvailable} what="The task board" route="/api/tasks" issue="the tasks-and-alerts issue (13)" /></div>`;
  }
  const list = res.data ? (Array.isArray(res.data) ? res.data : res.data.tasks || []) : [];
  const move = async (t, state) => {
    setErr(null);
    try {
      await api.send('PATCH', `/api/tasks/${enc(idOf(t))}`, { state });
      res.reload();
    } catch (e) {
      setErr(e);
    }
  };
  const ready = res.data || res.error;
  return html`<div class="page tasks" data-page="tasks" data-ready=${ready ? '1' : undefined}>
    <${ErrorBox} error=${res.error || err} retry=${res.reload} />
    <div class="card-h"><h2>Tasks</h2><input type="search" placeholder="text" value=${q.q || ''} onChange=${(e) => setQuery({ q: e.target.value })} aria-label="text" /></div>
    <div class="board">
      ${COLUMNS.map((c) => {
        const cards = list.filter((t) => stateOf(t) === c);
        return html`<section class="column" data-column=${c}><h3>${c} <span class="muted">${cards.length}</span></h3>
          ${cards.map((t) => html`<${Card} t=${t} move=${move} key=${idOf(t)} />`)}</section>`;
      })}
    </div>
  </div>`;
}

export function TaskPage({ id }) {
  const live = useLiveKey('task');
  const st = useStore();
  const res = useFetch(`task:${id}:${live}`, () => api.get('/api/tasks/' + enc(id)));
  if (res.error && res.error.notFound) {
    // Before issue 13 there are no task records, but the cost rollup knows tasks by id.
    return html`<div class="page" data-page="task" data-ready="1">
      <${NotAvailable} what="This task's page" route=${'/api/tasks/' + id} issue="the tasks-and-alerts issue (13)" />
      <p><a href=${'/sessions?task=' + enc(id)}>Sessions of task ${id}</a></p></div>`;
  }
  const t = res.data && (res.data.task || res.data);
  const sessions = (res.data && (res.data.sessions || (t && t.sessions))) || [];
  return html`<div class="page task" data-page="task" data-ready=${res.data || res.error ? '1' : undefined}>
    <${ErrorBox} error=${res.error} retry=${res.reload} />
    ${t ? html`<${Section} title=${t.title || id}>
      <div class="facts"><span><i>id</i> ${id}</span><span><i>state</i> ${stateOf(t)}</span><span><i>cost</i> <b>${money(costOf(t))}</b></span>
        ${flagsOf(t).map((f) => html`<span class=${'pill st-' + f}>${f}</span>`)}
        ${t.url ? html`<span><i>link</i> ${t.url}</span>` : null}</div>
      ${t.description ? html`<p>${t.description}</p>` : null}
    </${Section}>
    <${Section} title=${'Sessions (' + sessions.length + ')'}>
      <ul class="plain">${sessions.map((s) => html`<li><${Status} status=${(st.sessions.get(s.session_id) || s).status} /> <a href=${sessionHref(s.session_id)}>${short(s.display_name || s.session_id, 48)}</a> <span class="muted">${money(s.cost_usd)}</span></li>`)}</ul>
    </${Section}>` : null}
  </div>`;
}
