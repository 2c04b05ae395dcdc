// The URL is the state of the view: path = page (and id), query = filters. Links are real
// hrefs (linkable, open in a new tab); plain clicks are turned into history.pushState.
import { useEffect, useState } from './html.js';

const listeners = new Set();

export function location() {
  const u = new URL(window.location.href);
  const parts = u.pathname.split('/').filter(Boolean).map((p) => {
    try { return decodeURIComponent(p); } catch { return p; }
  });
  return { path: u.pathname, parts, query: Object.fromEntries(u.searchParams), href: u.pathname + u.search };
}

function notify() {
  const l = location();
  for (const f of listeners) f(l);
}

export function navigate(href, { replace = false } = {}) {
  const now = window.location.pathname + window.location.search;
  if (href === now) return;
  window.history[replace ? 'replaceState' : 'pushState'](null, '', href);
  notify();
}

/** Set or clear query parameters of the current page (replaces the history entry). */
export function setQuery(patch, { replace = true } = {}) {
  const u = new URL(window.location.href);
  for (const [k, v] of Object.entries(patch)) {
    if (v === undefined || v === null || v === '') u.searchParams.delete(k);
    else u.searchParams.set(k, String(v));
  }
  navigate(u.pathname + u.search, { replace });
}

export function href(path, query) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query || {})) if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  const s = q.toString();
  return path + (s ? '?' + s : '');
}

export const sessionHref = (id) => '/sessions/' + encodeURIComponent(id);
export const taskHref = (id) => '/tasks/' + encodeURIComponent(id);

export function useLocation() {
  const [loc, setLoc] = useState(location());
  useEffect(() => {
    listeners.add(setLoc);
    return () => listeners.delete(setLoc);
  }, []);
  return loc;
}

window.addEventListener('popstate', notify);
document.addEventListener('click', (e) => {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const a = e.target.closest && e.target.closest('a[href]');
  if (!a || a.target || a.hasAttribute('download')) return;
  const url = new URL(a.href, window.location.href);
  if (url.origin !== window.location.origin || url.pathname.startsWith('/api/')) return;
  e.preventDefault();
  navigate(url.pathname + url.search);
  window.scrollTo(0, 0);
});
