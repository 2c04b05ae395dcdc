// Number, time and duration formats shared by the pages.

export function money(v) {
  const n = Number(v || 0);
  if (n === 0) return '$0';
  if (Math.abs(n) < 0.01) return '$' + n.toFixed(4);
  if (Math.abs(n) < 100) return '$' + n.toFixed(2);
  return '$' + Math.round(n).toLocaleString('en-US');
}

export function tokens(v) {
  const n = Number(v || 0);
  if (n < 1000) return String(n);
  if (n < 1e6) return (n / 1e3).toFixed(n < 1e4 ? 1 : 0) + 'k';
  if (n < 1e9) return (n / 1e6).toFixed(n < 1e7 ? 2 : 1) + 'M';
  return (n / 1e9).toFixed(2) + 'G';
}

export function count(v) {
  return Number(v || 0).toLocaleString('en-US');
}

export function duration(seconds) {
  let s = Math.max(0, Math.round(Number(seconds || 0)));
  if (s < 60) return s + 's';
  const m = Math.floor(s / 60);
  s %= 60;
  if (m < 60) return `${m}m ${String(s).padStart(2, '0')}s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h ${String(m % 60).padStart(2, '0')}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

export function ms(v) {
  if (v === null || v === undefined) return '';
  const n = Number(v);
  return n < 1000 ? Math.round(n) + ' ms' : (n / 1000).toFixed(1) + ' s';
}

/** Milliseconds since the epoch of an RFC 3339 string (NaN when absent). */
export function epoch(t) {
  return t ? Date.parse(t) : NaN;
}

export function ago(t, now = Date.now()) {
  const e = epoch(t);
  if (Number.isNaN(e)) return '';
  const s = Math.round((now - e) / 1000);
  if (s < 2) return 'now';
  if (s < 60) return s + 's ago';
  if (s < 3600) return Math.floor(s / 60) + 'm ago';
  if (s < 172800) return Math.floor(s / 3600) + 'h ago';
  return Math.floor(s / 86400) + 'd ago';
}

/** `HH:MM:SS.mmm` in UTC (times are stored in UTC). */
export function clock(t) {
  const e = epoch(t);
  if (Number.isNaN(e)) return '';
  return new Date(e).toISOString().slice(11, 23);
}

/** `YYYY-MM-DD HH:MM` in UTC. */
export function datetime(t) {
  const e = epoch(t);
  if (Number.isNaN(e)) return '';
  return new Date(e).toISOString().slice(0, 16).replace('T', ' ');
}

export function short(s, n = 80) {
  if (s === null || s === undefined) return '';
  const str = typeof s === 'string' ? s : JSON.stringify(s);
  return str.length > n ? str.slice(0, n - 1) + '…' : str;
}
