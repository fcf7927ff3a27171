import { Cron } from 'croner';
import { z } from 'zod';
import { invalid, type FieldIssue } from '@jetflow/errors';
import type { FlowRegistry } from './definitions.js';
import { validateSubmission, type Submission } from './submission.js';

/**
 * Cron schedules (README, "Schedules"; docs/OPERATIONS.md, "Schedules"): what a schedule is, how it is
 * validated, when it fires next, and the catch-up policy. Pure; KV jetflow_schedules holds the records
 * (`<tenant>.<id>`), ingest writes them, the orchestrator that owns a schedule's partition fires them.
 * Not re-exported from index.ts: croner stays out of what the worker SDK bundles.
 */

export const SCHEDULE_ID_RE = /^[a-z0-9][a-z0-9_-]{0,62}$/;
/** Fire times due within this long of now all fire; older ones are catch-up (planFirings). */
export const CATCH_UP_GRACE_MS = 30_000;
/** Most fire times one catch-up counts one by one (a longer outage counts this many missed). */
export const MAX_COUNTED_MISSES = 10_000;
/** A last flow with no state yet, fired this recently, is taken as queued (still running) for overlap `skip`. */
export const QUEUED_GRACE_MS = 5 * 60_000;

export const ScheduleSpecSchema = z
  .object({
    id: z.string().regex(SCHEDULE_ID_RE, 'lowercase letters, digits, - and _, starting with a letter or digit, at most 63 characters'),
    cron: z.string().min(1).max(200),
    timezone: z.string().min(1).max(64).default('UTC'),
    submission: z.record(z.string(), z.unknown()),
    overlap: z.enum(['skip', 'allow']).default('allow'),
  })
  .strict();

export interface ScheduleSpec {
  id: string;
  cron: string;
  timezone: string;
  /** A submission as POST /v1/flows takes it, without idempotencyKey, startAt or delayMs. */
  submission: Submission;
  overlap: 'skip' | 'allow';
}

/** The record in KV jetflow_schedules under `<tenant>.<id>`. */
export interface ScheduleRecord extends ScheduleSpec {
  tenant: string;
  paused: boolean;
  createdAt: number;
  updatedAt: number;
  /** The next fire time (epoch ms), or null when paused or when the expression fires no more. */
  nextFireAt: number | null;
  lastFireAt: number | null;
  lastFlowId: string | null;
  /** Flows submitted. */
  fired: number;
  /** Fire times not fired because the previous firing's flow was still running (overlap `skip`). */
  skipped: number;
  /** Fire times not fired because every orchestrator was down then (the catch-up policy). */
  missed: number;
}

export const scheduleKey = (tenant: string, id: string) => `${tenant}.${id}`;

/** The idempotency key of one firing: replicas and restarts that fire the same time submit the same flow. */
export const fireKey = (id: string, fireAt: number) => `${id}:${new Date(fireAt).toISOString()}`;

function cronOf(expr: string, timezone: string): Cron {
  return new Cron(expr, { timezone, paused: true });
}

/** What is wrong with a cron expression and time zone, as field issues (empty when fine). */
export function cronProblems(expr: string, timezone: string, now: number): FieldIssue[] {
  const out: FieldIssue[] = [];
  try {
    new Intl.DateTimeFormat('en', { timeZone: timezone });
  } catch {
    out.push({ path: 'timezone', message: `unknown time zone ${JSON.stringify(timezone.slice(0, 64))} (an IANA name, e.g. UTC or Europe/Berlin)` });
    return out;
  }
  const fields = expr.trim().split(/\s+/);
  if (fields.length !== 5 && fields.length !== 6) {
    out.push({ path: 'cron', message: `expected 5 fields (minute hour day month weekday) or 6 (seconds first), got ${fields.length}` });
    return out;
  }
  try {
    if (nextFireTime(expr, timezone, now) === undefined) out.push({ path: 'cron', message: 'the expression never fires' });
  } catch (err) {
    out.push({ path: 'cron', message: (err as Error).message.replace(/^CronPattern: /, '') });
  }
  return out;
}

/** The first fire time strictly after `afterMs`, or undefined when there is none. */
export function nextFireTime(expr: string, timezone: string, afterMs: number): number | undefined {
  const d = cronOf(expr, timezone).nextRun(new Date(afterMs));
  return d ? d.getTime() : undefined;
}

export interface ValidateScheduleOptions {
  registry: FlowRegistry;
  checkCallbackUrl?: (url: string) => string | undefined;
  now: number;
}

/** Validates a POST /v1/schedules body; throws invalid_argument naming every bad field. */
export function validateSchedule(body: unknown, o: ValidateScheduleOptions): ScheduleSpec {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw invalid([{ path: '', message: 'body must be a JSON object' }]);
  const parsed = ScheduleSpecSchema.safeParse(body);
  const details: FieldIssue[] = parsed.success
    ? []
    : parsed.error.issues.map((i) => ({
        path: i.path.map(String).join('.'),
        message: i.code === 'unrecognized_keys' ? `unknown field(s): ${(i as { keys?: string[] }).keys?.join(', ')}` : i.message,
      }));
  const raw = body as { cron?: unknown; timezone?: unknown; submission?: unknown };
  if (typeof raw.cron === 'string' && !details.some((d) => d.path === 'cron' || d.path === 'timezone'))
    details.push(...cronProblems(raw.cron, typeof raw.timezone === 'string' ? raw.timezone : 'UTC', o.now));
  let submission: Submission | undefined;
  if (raw.submission !== null && typeof raw.submission === 'object' && !Array.isArray(raw.submission)) {
    const sub = raw.submission as Record<string, unknown>;
    for (const f of ['idempotencyKey', 'startAt', 'delayMs'])
      if (sub[f] !== undefined) details.push({ path: `submission.${f}`, message: f === 'idempotencyKey' ? 'set by each firing (<schedule id>:<fire time>)' : 'not taken in a schedule' });
    try {
      submission = validateSubmission(sub, { registry: o.registry, ...(o.checkCallbackUrl ? { checkCallbackUrl: o.checkCallbackUrl } : {}), now: o.now });
    } catch (err) {
      const d = (err as { details?: FieldIssue[] }).details ?? [];
      details.push(...d.map((x) => ({ path: x.path ? `submission.${x.path}` : 'submission', message: x.message })));
    }
  }
  if (!parsed.success || details.length || !submission) throw invalid(details);
  return { ...parsed.data, submission };
}

/** A new schedule's record: its first fire time after `now`. */
export function newScheduleRecord(tenant: string, spec: ScheduleSpec, now: number): ScheduleRecord {
  return {
    ...spec,
    tenant,
    paused: false,
    createdAt: now,
    updatedAt: now,
    nextFireAt: nextFireTime(spec.cron, spec.timezone, now) ?? null,
    lastFireAt: null,
    lastFlowId: null,
    fired: 0,
    skipped: 0,
    missed: 0,
  };
}

/** Paused: no fire time. Resumed: the next one after now (the time paused is not caught up). */
export function setPaused(r: ScheduleRecord, paused: boolean, now: number): ScheduleRecord {
  return { ...r, paused, updatedAt: now, nextFireAt: paused ? null : (nextFireTime(r.cron, r.timezone, now) ?? null) };
}

export interface FiringPlan {
  /** Fire times to submit now, oldest first. */
  fire: number[];
  /** Due fire times not fired because the previous flow still runs (overlap `skip`). */
  skipped: number;
  /** Due fire times given up by the catch-up policy. */
  missed: number;
  /** The record's next fire time after this plan. */
  next: number | null;
}

/**
 * Which due fire times to submit at `now`. The catch-up policy: every fire time due within the last
 * CATCH_UP_GRACE_MS fires (a slow tick, a lease moving between replicas or a short pause of the owner
 * loses nothing). Older ones were missed while no orchestrator ran: of those only the most recent fires,
 * once, and only when no recent one does; the rest count as `missed`. With overlap `skip` and the
 * previous firing's flow still running nothing fires and every due time counts as `skipped`; when it has
 * ended, only the newest of the fire times chosen above fires (the others are skipped: they would overlap).
 */
export function planFirings(r: ScheduleRecord, now: number, o: { previousRunning: boolean }): FiringPlan {
  const none: FiringPlan = { fire: [], skipped: 0, missed: 0, next: r.nextFireAt };
  if (r.paused || r.nextFireAt === null || r.nextFireAt > now) return none;
  const cron = cronOf(r.cron, r.timezone);
  const recent: number[] = [];
  let lastOld: number | undefined;
  let old = 0;
  let t: number | undefined = r.nextFireAt;
  const horizon = now - CATCH_UP_GRACE_MS;
  while (t !== undefined && t <= now) {
    if (t < horizon) {
      old++;
      lastOld = t;
      if (old >= MAX_COUNTED_MISSES) {
        // A long outage: jump to the last fire time before the horizon instead of walking every one.
        const prev = cron.previousRuns(1, new Date(horizon))[0]?.getTime();
        if (prev !== undefined && prev > t) lastOld = prev;
        t = cron.nextRun(new Date(horizon - 1))?.getTime();
        continue;
      }
    } else recent.push(t);
    t = cron.nextRun(new Date(t))?.getTime();
  }
  const next = t ?? null;
  const chosen = recent.length ? recent : lastOld !== undefined ? [lastOld] : [];
  const missed = old - (recent.length ? 0 : lastOld !== undefined ? 1 : 0);
  if (r.overlap === 'skip') {
    if (o.previousRunning) return { fire: [], skipped: chosen.length, missed, next };
    return { fire: chosen.slice(-1), skipped: chosen.length - Math.min(1, chosen.length), missed, next };
  }
  return { fire: chosen, skipped: 0, missed, next };
}

/** The schedule as the API shows it. */
export function scheduleView(r: ScheduleRecord) {
  const iso = (n: number | null) => (n === null ? null : new Date(n).toISOString());
  return {
    id: r.id,
    cron: r.cron,
    timezone: r.timezone,
    overlap: r.overlap,
    submission: r.submission,
    paused: r.paused,
    createdAt: new Date(r.createdAt).toISOString(),
    updatedAt: new Date(r.updatedAt).toISOString(),
    nextFireAt: iso(r.nextFireAt),
    lastFireAt: iso(r.lastFireAt),
    lastFlowId: r.lastFlowId,
    fired: r.fired,
    skipped: r.skipped,
    missed: r.missed,
  };
}

/** A record read back from KV, checked field by field (anyone with write access could have put it). */
export function parseScheduleRecord(json: string): ScheduleRecord | undefined {
  let v: unknown;
  try {
    v = JSON.parse(json);
  } catch {
    return undefined;
  }
  const r = v as Partial<ScheduleRecord> | null;
  if (!r || typeof r !== 'object') return undefined;
  const num = (x: unknown) => typeof x === 'number' && Number.isFinite(x);
  const numOrNull = (x: unknown) => x === null || num(x);
  if (
    typeof r.id !== 'string' ||
    !SCHEDULE_ID_RE.test(r.id) ||
    typeof r.tenant !== 'string' ||
    typeof r.cron !== 'string' ||
    typeof r.timezone !== 'string' ||
    (r.overlap !== 'skip' && r.overlap !== 'allow') ||
    typeof r.paused !== 'boolean' ||
    !r.submission ||
    typeof r.submission !== 'object' ||
    typeof r.submission.flow !== 'string' ||
    !numOrNull(r.nextFireAt) ||
    !numOrNull(r.lastFireAt) ||
    !num(r.fired) ||
    !num(r.skipped) ||
    !num(r.missed) ||
    !num(r.createdAt) ||
    !num(r.updatedAt)
  )
    return undefined;
  return r as ScheduleRecord;
}
