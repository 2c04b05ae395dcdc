// The console's entry: layout (header, navigation, connection state), login when the collector
// wants a read token, and the router (the URL names the page and holds its filters).
import { html, render, useEffect, useState } from './lib/html.js';
import { conn, tokens } from './lib/api.js';
import { useLocation } from './lib/route.js';
import { dismissNotice, startLive, store, useStore, watchReady } from './lib/state.js';
import { FleetPage } from './pages/fleet.js';
import { SessionsPage } from './pages/sessions.js';
import { SessionPage } from './pages/session.js';
import { CostPage } from './pages/cost.js';
import { TasksPage, TaskPage } from './pages/tasks.js';
import { AlertsPage } from './pages/alerts.js';

const NAV = [
  ['/', 'Fleet', (p) => p.length === 0 || p[0] === 'fleet'],
  ['/sessions', 'Sessions', (p) => p[0] === 'sessions'],
  ['/tasks', 'Tasks', (p) => p[0] === 'tasks'],
  ['/cost', 'Cost', (p) => p[0] === 'cost'],
  ['/alerts', 'Alerts', (p) => p[0] === 'alerts'],
];

function useConn() {
  const [s, set] = useState(conn.state);
  useEffect(() => {
    conn.listeners.add(set);
    return () => conn.listeners.delete(set);
  }, []);
  return s;
}

function ConnState() {
  const st = useStore();
  const c = useConn();
  const live = st.live;
  let state = live.state;
  let text;
  if ((c.api === 'unreachable' || live.unreachable) && live.state !== 'live') {
    state = 'unreachable';
    const since = live.since || c.since;
    text = `Collector unreachable${since ? ' since ' + since.toISOString().slice(11, 19) + ' UTC' : ''}: retrying (attempt ${live.attempt || 1}); the stream resumes after #${live.lastId ?? '-'}`;
  } else if (live.state === 'live') text = 'Live';
  else if (live.state === 'reconnecting') text = `Stream dropped${live.since ? ' at ' + live.since.toISOString().slice(11, 19) + ' UTC' : ''}: reconnecting (attempt ${live.attempt}), resuming after #${live.lastId ?? '-'}`;
  else if (live.state === 'unauthorized') text = 'Not signed in';
  else text = 'Connecting…';
  return html`<div class=${'conn conn-' + state} data-testid="conn" data-state=${state} title=${live.error || ''}>
    <span class="dot"></span><span class="conn-t">${text}</span></div>`;
}

function Login() {
  const [read, setRead] = useState('');
  const [control, setControl] = useState('');
  const submit = (e) => {
    e.preventDefault();
    tokens.set(read.trim(), control.trim());
    restartLive();
  };
  return html`<div class="card login" data-testid="login" data-ready="1">
    <h2>This collector needs a read token</h2>
    <p>It was started with <code>--read-token</code>. The token is kept in this tab only (sessionStorage) and sent as a bearer header.</p>
    <form onSubmit=${submit}>
      <label>Read token <input type="password" autocomplete="off" value=${read} onInput=${(e) => setRead(e.target.value)} data-testid="read-token" /></label>
      <label>Control token (optional: pause, kill, moves, prices) <input type="password" autocomplete="off" value=${control} onInput=${(e) => setControl(e.target.value)} /></label>
      <button type="submit">Sign in</button>
    </form>
  </div>`;
}

let live = null;
function restartLive() {
  if (live) live.restart();
  store.refresh += 1;
}

function Page({ loc }) {
  const [p0, p1] = loc.parts;
  switch (p0) {
    case undefined:
    case 'fleet': return html`<${FleetPage} loc=${loc} />`;
    case 'sessions': return p1 ? html`<${SessionPage} id=${p1} loc=${loc} />` : html`<${SessionsPage} loc=${loc} />`;
    case 'cost': return html`<${CostPage} loc=${loc} />`;
    case 'tasks': return p1 ? html`<${TaskPage} id=${p1} loc=${loc} />` : html`<${TasksPage} loc=${loc} />`;
    case 'alerts': return html`<${AlertsPage} loc=${loc} />`;
    default: return html`<div class="card" data-ready="1"><h2>No such page</h2><p><a href="/">Back to the fleet</a></p></div>`;
  }
}

function App() {
  const loc = useLocation();
  const c = useConn();
  const st = useStore();
  useEffect(() => { live = startLive(); }, []);
  const signOut = () => { tokens.set('', ''); restartLive(); };
  return html`<div class="layout">
    <header class="top">
      <a class="brand" href="/">agent-console</a>
      <nav>${NAV.map(([href, label, on]) => html`<a href=${href} class=${on(loc.parts) ? 'on' : ''} data-nav=${label.toLowerCase()}>${label}</a>`)}</nav>
      <${ConnState} />
      ${tokens.read ? html`<button class="link" onClick=${signOut}>Sign out</button>` : null}
    </header>
    ${st.notice ? html`<div class="notice" data-testid="notice">${st.notice} <button class="link" onClick=${dismissNotice}>dismiss</button></div>` : null}
    <main>${c.auth === 'need-read' ? html`<${Login} />` : html`<${Page} loc=${loc} />`}</main>
  </div>`;
}

const root = document.getElementById('app');
root.textContent = '';
watchReady(root);
render(html`<${App} />`, root);
