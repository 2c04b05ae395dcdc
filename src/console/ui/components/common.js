// Small shared pieces: status pills, tiles, error and "not available" states.
import { html } from '../lib/html.js';

/** A session's status pill with its flags: waiting for a human, a long tool call, stuck. */
export function Status({ status, stuck, waiting, longTool }) {
  const s = status || 'unknown';
  return html`<span class=${'pill st-' + s.replace(/[^a-z_]/g, '')} data-status=${s}>${s.replace(/_/g, ' ')}${waiting ? html` <b class="waiting" data-flag="waiting">waiting for a human</b>` : null}${longTool ? html` <b class="long-tool" data-flag="long_tool">long tool call</b>` : null}${stuck ? html` <b class="stuck">stuck</b>` : null}</span>`;
}

export function Tile({ label, value, testid }) {
  return html`<div class="tile" data-testid=${testid}><div class="tile-v">${value}</div><div class="tile-l">${label}</div></div>`;
}

export function ErrorBox({ error, retry }) {
  if (!error) return null;
  const text = error.unreachable
    ? 'The collector did not answer. The page retries when it is back.'
    : error.message || String(error);
  return html`<div class="error" role="alert" data-testid="error">${text}${retry ? html` <button onClick=${retry}>Retry</button>` : null}</div>`;
}

/** The state of a page whose API is not on this collector yet (the route answers 404). */
export function NotAvailable({ what, route, issue }) {
  return html`<div class="card unavailable" data-testid="not-available">
    <h2>${what} is not available on this collector</h2>
    <p>This collector does not serve <code>${route}</code> yet${issue ? html` (it comes with ${issue})` : null}.
    The page works as soon as a collector that has it is running; nothing else is affected.</p>
  </div>`;
}

export function Loading({ what }) {
  return html`<div class="loading">Loading ${what || ''}…</div>`;
}

export function Section({ title, children, actions, testid }) {
  return html`<section class="card" data-testid=${testid}>
    <div class="card-h"><h2>${title}</h2>${actions ? html`<div class="actions">${actions}</div>` : null}</div>
    ${children}
  </section>`;
}
