// `jetflow submit --delay / --start-at`: the submission's delayed start (delayMs, startAt), checked here
// so a typo is a usage error before anything is sent (the server checks the bounds again).
import { UsageError } from './exit.js';

const UNIT_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `--delay`: milliseconds ("1500") or a duration of whole units, largest first ("90s", "5m", "1h30m", "250ms"). */
export function parseDelay(v: string): number {
  const s = v.trim();
  if (/^\d+$/.test(s)) return Number(s);
  const parts = [...s.matchAll(/(\d+)(ms|s|m|h|d)/g)];
  if (!parts.length || parts.map((p) => p[0]).join('') !== s) throw new UsageError(`--delay: expected milliseconds or a duration such as 90s, 5m, 1h30m (units ms, s, m, h, d), got "${v}"`);
  return parts.reduce((sum, p) => sum + Number(p[1]) * UNIT_MS[p[2]!]!, 0);
}

const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

/** `--start-at`: an RFC 3339 time with an offset, as the API takes it. */
export function parseStartAt(v: string): string {
  if (!RFC3339.test(v) || !Number.isFinite(Date.parse(v.replace(' ', 'T'))))
    throw new UsageError(`--start-at: expected an RFC 3339 time with an offset, e.g. 2030-01-31T12:00:00Z, got "${v}"`);
  return v;
}

/**
 * The submission with the command line's delayed start: `--delay` becomes delayMs, `--start-at` startAt,
 * either replacing the file's own (both together are refused).
 */
export function withStart(body: Record<string, unknown>, o: { delay?: string; startAt?: string }): Record<string, unknown> {
  if (o.delay !== undefined && o.startAt !== undefined) throw new UsageError('--delay and --start-at exclude each other: give one of them');
  if (o.delay !== undefined) {
    const { startAt: _s, ...rest } = body;
    return { ...rest, delayMs: parseDelay(o.delay) };
  }
  if (o.startAt !== undefined) {
    const { delayMs: _d, ...rest } = body;
    return { ...rest, startAt: parseStartAt(o.startAt) };
  }
  return body;
}
