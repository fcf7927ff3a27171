import { z } from 'zod';
import { JetflowError, ErrorCodes, invalid } from '@jetflow/errors';
import { ID_RULES, type FlowState, type FlowStatus } from '@jetflow/flows';

/**
 * Listing of a tenant's recent flows. Implemented over the flows KV bucket for now
 * (adapters/kv-flow-lister.ts); a history store (DynamoDB) can implement the same interface.
 * The cursor is opaque to callers: each implementation encodes its own position in it.
 */
export interface FlowLister {
  list(q: ListFlowsQuery): Promise<FlowPage>;
}

export interface ListFlowsQuery {
  /** The tenant whose flows; `*` (operator keys only): every tenant's, from the flows KV bucket. */
  tenant: string;
  /** Only flows in one of these states; all when empty. */
  status: FlowStatus[];
  limit: number;
  cursor?: string;
  /** Only the flow submitted with this idempotency key. */
  idempotencyKey?: string;
  /** Only flows whose metadata has this key with this value. */
  metadata?: { key: string; value: string };
  /** Only flows of this definition. */
  flow?: string;
  /** Only flows submitted at or after this time (epoch ms). */
  submittedAfter?: number;
  /** Only flows submitted before this time (epoch ms). */
  submittedBefore?: number;
}

export interface FlowPage {
  flows: FlowSummary[];
  /** Pass back as `cursor` for older flows; null when there are none. A page may hold fewer than `limit`. */
  nextCursor: string | null;
}

export interface FlowSummary {
  flowId: string;
  flow: string;
  tenant: string;
  status: FlowStatus;
  stage: number;
  submittedAt: string;
  finishedAt: string | null;
  durationMs: number | null;
  /** When the flow's state last changed (the listing's order). */
  updatedAt: string | null;
  tasks: { total: number; succeeded: number; failed: number; running: number };
  errors: number;
  endReason: string | null;
  idempotencyKey: string | null;
  /** 1..10 (5: the default); absent from the history, which does not keep it. */
  priority?: number;
  metadata: Record<string, string>;
  /**
   * The callback's own state, apart from the flow's: null without a callback URL (or unknown, from
   * the history), `pending` until the flow ends and the sender records an attempt.
   */
  callback?: { status: 'pending' | 'delivered' | 'retrying' | 'dead_lettered'; attempts?: number; lastError?: string; lastStatusCode?: number } | null;
}

const STATUSES = ['scheduled', 'running', 'succeeded', 'partial', 'failed', 'cancelled'] as const;
export const MAX_LIST_LIMIT = 200;

const when = (what: string) =>
  z
    .string()
    .max(64)
    .refine((v) => !Number.isNaN(Date.parse(v)) && /^\d{4}-\d\d-\d\dT/.test(v), 'expected an RFC 3339 time, e.g. 2026-03-01T12:00:00Z')
    .optional()
    .describe(what);

/**
 * What selects flows: the listing's query string (GET /v1/flows) and the filter of a bulk cancel
 * (POST /v1/flows:cancel) are parsed by this one schema, so both select exactly the same flows.
 */
export const FlowFilterSchema = z.object({
  status: z
    .union([z.string(), z.array(z.string())])
    .optional()
    .transform((s) => (Array.isArray(s) ? s : s ? s.split(',') : []).map((x) => x.trim()).filter(Boolean))
    .pipe(z.array(z.enum(STATUSES, { message: `expected one or more of ${STATUSES.join(', ')} (comma-separated)` })))
    .describe(`Only these statuses, comma-separated (${STATUSES.join(', ')})`),
  flow: z.string().regex(ID_RULES.flow.re, `a flow definition name (${ID_RULES.flow.rule})`).optional().describe('Only flows of this definition'),
  idempotencyKey: z.string().min(1).max(256).optional().describe('Only the flow submitted with this idempotency key'),
  metadata: z
    .string()
    .max(1_200)
    .regex(/^[^=]{1,128}=/, 'expected key=value, e.g. source=batch-7')
    .optional()
    .describe('Only flows whose metadata has this entry, as key=value (e.g. source=batch-7)'),
  submittedAfter: when('Only flows submitted at or after this time (RFC 3339)'),
  submittedBefore: when('Only flows submitted before this time (RFC 3339)'),
  tenant: z
    .string()
    .max(64)
    .refine((t) => t === '*' || ID_RULES.tenant.re.test(t), 'a tenant name, or * for every tenant')
    .optional()
    .describe("Another tenant's flows (operator keys only), or * for every tenant's (from the flows changed in the last 24 h)"),
});

/** The query string of GET /v1/flows: validates requests, and the OpenAPI document is generated from it. */
export const ListQuerySchema = FlowFilterSchema.extend({
  limit: z.coerce.number().int().min(1).max(MAX_LIST_LIMIT).default(50).describe('Most flows on a page'),
  cursor: z.string().max(1_024).optional().describe('nextCursor of the previous page'),
});

/** The fields of a filter, parsed. */
export type FlowFilter = Omit<ListFlowsQuery, 'limit' | 'cursor'>;

/** Whether a flow (state, summary or history item) matches the listing's search fields. */
export function matchesSearch(
  f: { idempotencyKey?: string | null; metadata?: Record<string, string> | null; flow?: string; submittedAt?: number | string },
  q: Pick<ListFlowsQuery, 'idempotencyKey' | 'metadata' | 'flow' | 'submittedAfter' | 'submittedBefore'>,
): boolean {
  if (q.idempotencyKey !== undefined && f.idempotencyKey !== q.idempotencyKey) return false;
  if (q.flow !== undefined && f.flow !== q.flow) return false;
  if (q.submittedAfter !== undefined || q.submittedBefore !== undefined) {
    const at = typeof f.submittedAt === 'string' ? Date.parse(f.submittedAt) : f.submittedAt;
    if (at === undefined || Number.isNaN(at)) return false;
    if (q.submittedAfter !== undefined && at < q.submittedAfter) return false;
    if (q.submittedBefore !== undefined && at >= q.submittedBefore) return false;
  }
  if (q.metadata && !(f.metadata && Object.hasOwn(f.metadata, q.metadata.key) && f.metadata[q.metadata.key] === q.metadata.value)) return false;
  return true;
}

function issues(err: z.ZodError) {
  // status.0 -> status: the parameter is what the caller can fix.
  return err.issues.map((i) => ({ path: String(i.path[0] ?? ''), message: i.message }));
}

/**
 * The parsed fields of a filter (query string or bulk body), for the key's tenant. `tenant` is the
 * operator's: a tenant key naming another tenant is refused (403), its own is allowed.
 */
export function filterOf(tenant: string, operator: boolean, d: z.output<typeof FlowFilterSchema>, at = ''): FlowFilter {
  const q: FlowFilter = { tenant, status: d.status };
  if (d.tenant !== undefined && d.tenant !== tenant) {
    if (!operator)
      throw new JetflowError(ErrorCodes.PERMISSION_DENIED, `${at}tenant: another tenant's flows need an operator API key; this key belongs to tenant "${tenant}"`, {
        details: [{ path: `${at}tenant`, message: 'needs an operator key' }],
      });
    q.tenant = d.tenant;
  }
  if (d.idempotencyKey !== undefined) q.idempotencyKey = d.idempotencyKey;
  if (d.metadata !== undefined) {
    const eq = d.metadata.indexOf('=');
    q.metadata = { key: d.metadata.slice(0, eq), value: d.metadata.slice(eq + 1) };
  }
  if (d.flow !== undefined) q.flow = d.flow;
  if (d.submittedAfter !== undefined) q.submittedAfter = Date.parse(d.submittedAfter);
  if (d.submittedBefore !== undefined) q.submittedBefore = Date.parse(d.submittedBefore);
  return q;
}

/** Validates the query string of GET /v1/flows; errors name the bad parameter. */
export function parseListQuery(tenant: string, raw: unknown, operator = false): ListFlowsQuery {
  const r = ListQuerySchema.safeParse(raw ?? {});
  if (!r.success) throw invalid(issues(r.error));
  const q: ListFlowsQuery = { ...filterOf(tenant, operator, r.data), limit: r.data.limit };
  if (r.data.cursor) q.cursor = r.data.cursor;
  return q;
}

export function summarize(s: FlowState, updatedAtMs?: number): FlowSummary {
  const tasks = { total: 0, succeeded: 0, failed: 0, running: 0 };
  for (const t of Object.values(s.tasks)) {
    tasks.total++;
    if (t.status === 'succeeded') tasks.succeeded++;
    else if (t.status === 'failed' || t.status === 'timed_out') tasks.failed++;
    else if (t.status === 'dispatched') tasks.running++;
  }
  return {
    flowId: s.flowId,
    flow: s.flow,
    tenant: s.tenant,
    status: s.status,
    stage: s.stage,
    submittedAt: new Date(s.submittedAt).toISOString(),
    finishedAt: s.finishedAt ? new Date(s.finishedAt).toISOString() : null,
    durationMs: s.finishedAt ? s.finishedAt - s.submittedAt : null,
    updatedAt: updatedAtMs ? new Date(updatedAtMs).toISOString() : null,
    tasks,
    errors: s.errors.length,
    endReason: s.endReason ?? null,
    idempotencyKey: s.idempotencyKey ?? null,
    priority: s.priority ?? 5,
    metadata: s.metadata,
    callback: s.callbackUrl ? { status: 'pending' } : null,
  };
}
