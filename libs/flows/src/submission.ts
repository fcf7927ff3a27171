import { createHash, randomBytes } from 'node:crypto';
import { z } from 'zod';
import { invalid, type FieldIssue } from '@jetflow/errors';
import type { FlowRegistry } from './definitions.js';
import { DEFAULT_MAX_TASKS_PER_FLOW, mapCounts } from './plan.js';

/** The furthest a delayed start may lie ahead (`startAt`, `delayMs`): 30 days. */
export const MAX_START_DELAY_MS = 30 * 86_400_000;

/** The submission as all three doors accept it (README, "Submit a flow"; GET /docs on ingest). */
const RecordSchema = z
  .object({
    id: z.string().min(1).max(200),
    text: z.string().max(20_000),
    fields: z.record(z.string(), z.union([z.number(), z.string().max(2_000), z.boolean(), z.null()])).optional(),
  })
  .strict();

const InsightsInputSchema = z
  .object({
    records: z
      .array(RecordSchema)
      .min(1)
      .max(10_000)
      .superRefine((recs, ctx) => {
        const seen = new Set<string>();
        recs.forEach((r, i) => {
          if (seen.has(r.id)) ctx.addIssue({ code: 'custom', path: [i, 'id'], message: `duplicate record id "${r.id}"` });
          seen.add(r.id);
        });
      }),
  })
  .strict();

/** Input schema per flow; flows without one accept any JSON object. */
export const INPUT_SCHEMAS: Readonly<Record<string, z.ZodType>> = { insights: InsightsInputSchema };

export const SubmissionSchema = z
  .object({
    flow: z.string().min(1).max(64),
    /** The input inline, or (`inputRef`) where it is in S3: exactly one of them. */
    input: z.record(z.string(), z.unknown()).optional(),
    inputRef: z.string().max(1_100).optional(),
    callbackUrl: z.string().max(2_048).optional(),
    idempotencyKey: z
      .string()
      .min(1)
      .max(256)
      .regex(/^[\x21-\x7e]+$/, 'printable ASCII without spaces')
      .optional(),
    deadlineMs: z.number().int().min(100).max(3_600_000).optional(),
    metadata: z
      .record(z.string().max(128), z.string().max(1_024))
      .refine((m) => Object.keys(m).length <= 32, 'at most 32 entries')
      .optional(),
    /** Delayed start: an RFC 3339 time (startProblem checks it against the clock) or a delay; not both. */
    startAt: z.string().max(64).optional(),
    delayMs: z.number().int().min(0).max(MAX_START_DELAY_MS).optional(),
    /** Under a backlog, higher first (README, "Priorities"): an integer 1..10, default 5. */
    priority: z.number().int('an integer 1..10').min(1, 'an integer 1..10').max(10, 'an integer 1..10').optional(),
  })
  .strict();

/** A flow's priority when its submission names none. */
export const DEFAULT_PRIORITY = 5;
/** The priority of a flow whose message says none (0 in messages from before priorities, or a bad value). */
export const priorityOf = (p: number | undefined): number => (p !== undefined && Number.isInteger(p) && p >= 1 && p <= 10 ? p : DEFAULT_PRIORITY);

const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$/;

/**
 * What is wrong with a submission's delayed start, or undefined: `startAt` must be an RFC 3339 time
 * with an offset and at most MAX_START_DELAY_MS after `now` (a time already past starts at once);
 * `delayMs` and `startAt` exclude each other.
 */
export function startProblem(raw: { startAt?: unknown; delayMs?: unknown }, now: number): FieldIssue | undefined {
  if (raw.startAt !== undefined && raw.delayMs !== undefined) return { path: 'startAt', message: 'give startAt or delayMs, not both' };
  if (typeof raw.startAt !== 'string') return undefined;
  const t = RFC3339.test(raw.startAt) && calendarOk(raw.startAt) ? Date.parse(raw.startAt.replace(' ', 'T')) : NaN;
  if (!Number.isFinite(t)) return { path: 'startAt', message: 'not an RFC 3339 time with an offset, e.g. 2030-01-31T12:00:00Z' };
  if (t - now > MAX_START_DELAY_MS) return { path: 'startAt', message: `at most ${MAX_START_DELAY_MS / 86_400_000} days ahead` };
  return undefined;
}

/** Date.parse rolls 2026-02-30 over into March: the fields must name a real day and time. */
function calendarOk(v: string): boolean {
  const [y, mo, d, h, mi, se] = [v.slice(0, 4), v.slice(5, 7), v.slice(8, 10), v.slice(11, 13), v.slice(14, 16), v.slice(17, 19)].map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  return mo >= 1 && mo <= 12 && d >= 1 && d <= new Date(Date.UTC(y, mo, 0)).getUTCDate() && h < 24 && mi < 60 && se < 60;
}

/** When a valid submission starts (epoch ms): `startAt`, or `now + delayMs`; undefined for at once. */
export function startTimeOf(sub: Pick<Submission, 'startAt' | 'delayMs'>, now: number): number | undefined {
  if (sub.startAt !== undefined) return Date.parse(sub.startAt.replace(' ', 'T'));
  if (sub.delayMs !== undefined) return now + sub.delayMs;
  return undefined;
}

export type Submission = z.infer<typeof SubmissionSchema>;

function issuesOf(err: z.ZodError, prefix = ''): FieldIssue[] {
  return err.issues.map((i) => {
    const path = [prefix, ...i.path.map((p) => (typeof p === 'number' ? `[${p}]` : String(p)))].filter(Boolean).join('.').replace(/\.\[/g, '[');
    let message = i.message;
    if (i.code === 'unrecognized_keys') message = `unknown field(s): ${(i as { keys?: string[] }).keys?.join(', ')}`;
    return { path, message };
  });
}

export interface ValidateOptions {
  registry: FlowRegistry;
  /** The submitting tenant (the `{tenant}` of inputRefPrefixes). */
  tenant?: string;
  /**
   * Where an `inputRef` may point (`s3://bucket/prefix`, `{tenant}` replaced by the tenant;
   * JETFLOW_INPUT_REF_PREFIXES): a tenant reads only its own uploads, never another's inputs or
   * datasets. Unset: any well-formed reference (the caller checks).
   */
  inputRefPrefixes?: readonly string[];
  /** Called for callbackUrl; returns an error message or undefined. */
  checkCallbackUrl?: (url: string) => string | undefined;
  /** The clock `startAt` is checked against (default Date.now()). */
  now?: number;
  /** Task instances a flow may make (a mapped task's chunks each count; JETFLOW_MAX_TASKS_PER_FLOW, default 10,000). */
  maxTasksPerFlow?: number;
}

/** Validates a parsed body; throws invalid_argument naming every bad field. */
export function validateSubmission(body: unknown, opts: ValidateOptions): Submission {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw invalid([{ path: '', message: 'body must be a JSON object' }]);
  const parsed = SubmissionSchema.safeParse(body);
  const raw = body as { flow?: unknown; input?: unknown; callbackUrl?: unknown };
  const details: FieldIssue[] = parsed.success ? [] : issuesOf(parsed.error);
  const ref = (body as { inputRef?: unknown }).inputRef;
  if ((raw.input === undefined) === (ref === undefined))
    details.push({ path: 'input', message: ref === undefined ? 'required: the input, or inputRef (s3://bucket/key of a JSON object or JSON lines)' : 'give input or inputRef, not both' });
  if (typeof ref === 'string' && !details.some((d) => d.path === 'inputRef')) {
    const why = inputRefProblem(ref, opts.tenant ?? '', opts.inputRefPrefixes);
    if (why) details.push({ path: 'inputRef', message: why });
  }
  const flowName = typeof raw.flow === 'string' ? raw.flow : undefined;
  const def = flowName ? opts.registry.get(flowName) : undefined;
  if (flowName !== undefined && !def) details.push({ path: 'flow', message: `unknown flow "${flowName}"; known: ${opts.registry.names().join(', ')}` });
  // Validate the input against its flow even when other fields are wrong, so one answer names every problem.
  const schema = flowName ? INPUT_SCHEMAS[flowName] : undefined;
  if (def && schema && raw.input !== null && typeof raw.input === 'object' && !Array.isArray(raw.input)) {
    const r = schema.safeParse(raw.input);
    if (!r.success) details.push(...issuesOf(r.error, 'input'));
  }
  // The callback URL's own checks run whatever else is wrong (a string the schema refused, e.g. too
  // long, is already named by the schema).
  const url = typeof raw.callbackUrl === 'string' ? raw.callbackUrl : undefined;
  if (url !== undefined && !details.some((d) => d.path === 'callbackUrl')) {
    let u: URL | undefined;
    try {
      u = new URL(url);
    } catch {
      details.push({ path: 'callbackUrl', message: 'not a valid URL' });
    }
    if (u && u.protocol !== 'http:' && u.protocol !== 'https:') details.push({ path: 'callbackUrl', message: 'must be http or https' });
    else if (u && opts.checkCallbackUrl) {
      const why = opts.checkCallbackUrl(url);
      if (why) details.push({ path: 'callbackUrl', message: why });
    }
  }
  // A mapped task's array must be in the input, and its chunks within the flow's task limit.
  if (def && (def.tasks ?? []).some((t) => t.map) && raw.input !== null && typeof raw.input === 'object' && !Array.isArray(raw.input)) {
    const m = mapCounts(def, raw.input);
    details.push(...m.problems);
    const max = opts.maxTasksPerFlow ?? DEFAULT_MAX_TASKS_PER_FLOW;
    if (!m.problems.length && m.instances > max)
      details.push({
        path: 'input',
        message: `flow ${def.name} would run ${m.instances} task instances (${Object.entries(m.chunks)
          .map(([t, n]) => `${t}: ${n} chunks`)
          .join(', ')}); at most ${max} per flow (JETFLOW_MAX_TASKS_PER_FLOW)`,
      });
  }
  if (!details.some((d) => d.path === 'startAt')) {
    const start = startProblem(body, opts.now ?? Date.now());
    if (start) details.push(start);
  }
  if (!parsed.success || details.length) throw invalid(details);
  return parsed.data;
}

/** An S3 bucket name (3 to 63 lowercase letters, digits, dots and hyphens, a letter or digit at each end). */
const BUCKET_RE = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/** The places an inputRef may name for a tenant: each prefix with `{tenant}` replaced. */
export function inputRefPrefixesFor(prefixes: readonly string[], tenant: string): string[] {
  return prefixes.map((p) => p.replaceAll('{tenant}', tenant));
}

/**
 * What is wrong with a submission's `inputRef`, or undefined: it must be `s3://<bucket>/<key>` (a key of
 * 1 to 1024 bytes, no leading slash, no `.` or `..` segment) under one of `prefixes` (with `{tenant}`
 * replaced), when given.
 */
export function inputRefProblem(ref: string, tenant: string, prefixes?: readonly string[]): string | undefined {
  const m = /^s3:\/\/([^/]+)\/([\s\S]+)$/.exec(ref);
  if (!m) return 'not an s3://bucket/key reference';
  const [, bucket, key] = m as unknown as [string, string, string];
  if (!BUCKET_RE.test(bucket)) return `"${bucket.slice(0, 70)}" is not an S3 bucket name`;
  if (Buffer.byteLength(key) > 1024) return 'the key is longer than 1024 bytes';
  if (key.startsWith('/') || key.split('/').some((seg) => seg === '.' || seg === '..')) return 'the key has an empty first segment, or a "." or ".." segment';
  if ([...key].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f)) return 'the key has a control character';
  if (prefixes) {
    const allowed = inputRefPrefixesFor(prefixes, tenant);
    if (!allowed.some((p) => ref.startsWith(p))) return `must be under ${allowed.join(' or ')} (JETFLOW_INPUT_REF_PREFIXES)`;
  }
  return undefined;
}

/** Canonical hash of a submission (for "same idempotency key, different body" → 409). */
export function submissionHash(sub: Submission): string {
  return createHash('sha256').update(canonicalJson(sub)).digest('hex');
}

function canonicalJson(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  const o = v as Record<string, unknown>;
  return `{${Object.keys(o)
    .filter((k) => o[k] !== undefined)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`)
    .join(',')}}`;
}

const B32 = '0123456789abcdefghijklmnopqrstuv';
function base32(buf: Uint8Array, chars: number): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const b of buf) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5 && out.length < chars) {
      out += B32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
    if (out.length >= chars) break;
  }
  return out;
}

/**
 * Flow ids. With an idempotency key (HTTP/gRPC idempotencyKey, or the NATS door's Nats-Msg-Id) the id
 * is derived, so every door and every retry gives the same one, and a publisher can compute it:
 *   "f" + first 25 base32hex chars (0-9a-v) of sha256("<tenant>\n<key>").
 * Without a key: HTTP/gRPC use a random "r…" id; the NATS door uses "n<ingest stream sequence>" (from the PubAck).
 */
export function deriveFlowId(tenant: string, idempotencyKey: string): string {
  return `f${base32(createHash('sha256').update(`${tenant}\n${idempotencyKey}`).digest(), 25)}`;
}

export function randomFlowId(): string {
  return `r${base32(randomBytes(16), 25)}`;
}

export function flowIdForSequence(seq: number): string {
  return `n${seq}`;
}

export const FLOW_ID_RE = /^[a-z0-9]{2,64}$/;

/** The idempotency key rule of every door (HTTP/gRPC `idempotencyKey`, the NATS door's `Nats-Msg-Id`). */
export const IDEMPOTENCY_KEY_RE = /^[\x21-\x7e]{1,256}$/;

/**
 * The key of a submission's claim in KV jetflow_idempotency, `<tenant>.<40 hex of sha256(key)>`: one
 * bucket for every door, so the same key with another body is refused whichever door it comes through.
 */
export function idempotencyClaimKey(tenant: string, idempotencyKey: string): string {
  return `${tenant}.${createHash('sha256').update(idempotencyKey).digest('hex').slice(0, 40)}`;
}
