// A windowed list: only the rows in view (plus a margin) are in the DOM, so 10,000 sessions or
// timeline items paint as fast as 40. Rows have one fixed height (CSS `--row`); the scroll box
// gets its height from CSS. `onNearEnd` asks for the next API page.
import { html, useEffect, useLayoutEffect, useRef, useState } from '../lib/html.js';

const MARGIN = 8;

export function Windowed({ items, rowHeight = 32, render, onNearEnd, testid, className = '', empty }) {
  const ref = useRef(null);
  const [view, setView] = useState({ top: 0, height: 600 });
  const pending = useRef(false);

  useLayoutEffect(() => {
    const el = ref.current;
    if (!el) return undefined;
    const measure = () => setView({ top: el.scrollTop, height: el.clientHeight || 600 });
    measure();
    const ro = new ResizeObserver(measure);
    ro.observe(el);
    return () => ro.disconnect();
  }, []);

  const onScroll = () => {
    if (pending.current) return;
    pending.current = true;
    requestAnimationFrame(() => {
      pending.current = false;
      const el = ref.current;
      if (el) setView({ top: el.scrollTop, height: el.clientHeight || 600 });
    });
  };

  const n = items.length;
  const first = Math.max(0, Math.floor(view.top / rowHeight) - MARGIN);
  const last = Math.min(n, Math.ceil((view.top + view.height) / rowHeight) + MARGIN);

  useEffect(() => {
    if (onNearEnd && n > 0 && last >= n - MARGIN * 2) onNearEnd();
  }, [last, n, onNearEnd]);

  const rows = [];
  for (let i = first; i < last; i++) rows.push(render(items[i], i));
  return html`<div class=${'win ' + className} ref=${ref} onScroll=${onScroll} data-testid=${testid} data-rows=${n}>
    ${n === 0 && empty ? html`<div class="empty">${empty}</div>` : null}
    <div class="win-inner" style=${{ height: n * rowHeight + 'px' }}>
      <div class="win-rows" style=${{ transform: `translateY(${first * rowHeight}px)` }}>${rows}</div>
    </div>
  </div>`;
}
