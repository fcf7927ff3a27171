/** Terminal output: colours only on a TTY (and never with NO_COLOR), aligned tables, times. */
const useColor = (stream: NodeJS.WriteStream = process.stdout) => Boolean(stream.isTTY) && !process.env.NO_COLOR && process.env.TERM !== 'dumb';

const paint = (code: string) => (s: string) => (useColor() ? `\x1b[${code}m${s}\x1b[0m` : s);
export const c = {
  green: paint('32'),
  red: paint('31'),
  yellow: paint('33'),
  blue: paint('34'),
  cyan: paint('36'),
  dim: paint('2'),
  bold: paint('1'),
};

const STATUS_COLOR: Record<string, (s: string) => string> = {
  succeeded: c.green,
  delivered: c.green,
  running: c.blue,
  dispatched: c.blue,
  accepted: c.blue,
  partial: c.yellow,
  timed_out: c.yellow,
  retrying: c.yellow,
  failed: c.red,
  rejected: c.red,
  dead_lettered: c.red,
  cancelled: c.dim,
  skipped: c.dim,
  pending: c.dim,
};
export const status = (s: string) => (STATUS_COLOR[s] ?? ((x: string) => x))(s);

const ICON: Record<string, string> = { succeeded: '✔', failed: '✖', dispatched: '▶', pending: '·', cancelled: '⊘', skipped: '↷', timed_out: '⏱', retrying: '↻' };
export const icon = (s: string) => (STATUS_COLOR[s] ?? ((x: string) => x))(ICON[s] ?? '?');

// eslint-disable-next-line no-control-regex
const visible = (s: string) => s.replace(/\x1b\[[0-9;]*m/g, '').length;

/** Left-aligned columns; `right` lists the columns to right-align (numbers). */
export function table(head: string[], rows: string[][], right: number[] = []): string {
  const widths = head.map((h, i) => Math.max(visible(h), ...rows.map((r) => visible(r[i] ?? ''))));
  const line = (r: string[]) =>
    r
      .map((cell, i) => {
        const pad = ' '.repeat(Math.max(0, widths[i]! - visible(cell)));
        return right.includes(i) ? pad + cell : cell + pad;
      })
      .join('  ')
      .trimEnd();
  return [c.dim(line(head)), ...rows.map(line)].join('\n');
}

export function duration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return '-';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(2)} s`;
  return `${Math.floor(ms / 60_000)}m${String(Math.round((ms % 60_000) / 1000)).padStart(2, '0')}s`;
}

export function ago(t: string | number | null | undefined, now = Date.now()): string {
  if (t === null || t === undefined) return '-';
  const s = Math.round((now - new Date(t).getTime()) / 1000);
  if (s < 2) return 'just now';
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  if (s < 172_800) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86_400)}d ago`;
}

export const clip = (s: string, n: number) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);
