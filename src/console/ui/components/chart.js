// uPlot wrapper: the plot is made once per set of series and only gets `setData` afterwards;
// its width follows the container.
import { html, useEffect, useRef } from '../lib/html.js';
import { money } from '../lib/format.js';

const PALETTE = ['#2563eb', '#16a34a', '#dc2626', '#9333ea', '#ea580c', '#0891b2', '#ca8a04', '#db2777', '#4b5563'];

/** `x`: seconds since the epoch; `series`: [{label, values}] aligned with x. */
export function TimeChart({ x, series, height = 260, testid }) {
  const box = useRef(null);
  const plot = useRef(null);
  const key = series.map((s) => s.label).join('\u0000');

  useEffect(() => {
    const el = box.current;
    const U = window.uPlot;
    if (!el || !U) return undefined;
    const opts = {
      width: Math.max(300, el.clientWidth),
      height,
      scales: { x: { time: true } },
      axes: [{}, { values: (u, vals) => vals.map((v) => money(v)), size: 70 }],
      series: [{}, ...series.map((s, i) => ({
        label: s.label,
        stroke: PALETTE[i % PALETTE.length],
        width: 2,
        points: { show: x.length < 60 },
        value: (u, v) => (v === null || v === undefined ? '' : money(v)),
      }))],
    };
    plot.current = new U(opts, [x, ...series.map((s) => s.values)], el);
    const ro = new ResizeObserver(() => plot.current && plot.current.setSize({ width: Math.max(300, el.clientWidth), height }));
    ro.observe(el);
    return () => {
      ro.disconnect();
      if (plot.current) plot.current.destroy();
      plot.current = null;
    };
  }, [key, height]);

  useEffect(() => {
    if (plot.current) plot.current.setData([x, ...series.map((s) => s.values)]);
  }, [x, series]);

  return html`<div class="chart" ref=${box} data-testid=${testid}></div>`;
}
