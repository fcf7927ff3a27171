import { z } from 'zod';
import { invalid } from '../../../../libs/errors/src/index.js';
import type { FlowState, FlowStatus } from '../../../../libs/flows/src/index.js';

/**
 * Listing of a tenant's recent flows. Implemented over the flows KV bucket for now
 * (adapters/kv-flow-lister.ts); a history store (DynamoDB) can implement the same interface.
 * The cursor is opaque to callers: each implementation encodes its own position in it.
 */
export interface FlowLister {
  list(q: ListFlowsQuery): Promise<FlowPage>;
}

export interface ListFlowsQuery {
  tenant: string;
  /** Only flows in one of these states; all when empty. */
  status: FlowStatus[];
  limit: number;
  cursor?: string;
  /** Only the flow submitted with this idempotency key. */
  idempotencyKey?: string;
  /** Only flows whose metadata has this key with this value. */
  metadata?: { key: string; value: string };
}

export interface FlowPage {
  flows: FlowSummary[];
  /** Pass back as `cursor` for older flows; null when there are none. A page may hold fewer than `limit`. */
  nextCursor: string | null;
}

export interface FlowSummary {
  flowId: string;
  flow: string;
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
  metadata: Record<string, string>;
  /**
   * The callback's own state, apart from the flow's: null without a callback URL (or unknown, from
   * the history), `pending` until the flow ends and the sender records an attempt.
   */
  callback?: { status: 'pending' | 'delivered' | 'retrying' | 'dead_lettered'; attempts?: number; lastError?: string; lastStatusCode?: number } | null;
}

const STATUSES = ['scheduled', 'running', 'succeeded', 'partial', 'failed', 'cancelled'] as const;
export const MAX_LIST_LIMIT = 200;

/** The query string of GET /v1/flows: validates requests, and the OpenAPI document is generated from it. */
export const ListQuerySchema = z.object({
  status: z
    .string()
    .optional()
    .transform((s) =>
      s
        ? s
            .split(',')
            .map((x) => x.trim())
            .filter(Boolean)
        : [],
    )
    .pipe(z.array(z.enum(STATUSES, { message: `expected one or more of ${STATUSES.join(', ')} (comma-separated)` })))
    .describe(`Only these statuses, comma-separated (${STATUSES.join(', ')})`),
  limit: z.coerce.number().int().min(1).max(MAX_LIST_LIMIT).default(50).describe('Most flows on a page'),
  cursor: z.string().max(1_024).optional().describe('nextCursor of the previous page'),
  idempotencyKey: z.string().min(1).max(256).optional().describe('Only the flow submitted with this idempotency key'),
  metadata: z
    .string()
    .max(1_200)
    .regex(/^[^=]{1,128}=/, 'expected key=value, e.g. source=batch-7')
    .optional()
    .describe('Only flows whose metadata has this entry, as key=value (e.g. source=batch-7)'),
});

/** Whether a flow (state, summary or history item) matches the listing's search fields. */
export function matchesSearch(f: { idempotencyKey?: string | null; metadata?: Record<string, string> | null }, q: Pick<ListFlowsQuery, 'idempotencyKey' | 'metadata'>): boolean {
  if (q.idempotencyKey !== undefined && f.idempotencyKey !== q.idempotencyKey) return false;
  if (q.metadata && !(f.metadata && Object.hasOwn(f.metadata, q.metadata.key) && f.metadata[q.metadata.key] === q.metadata.value)) return false;
  return true;
}

function issues(err: z.ZodError) {
  // status.0 -> status: the parameter is what the caller can fix.
  return err.issues.map((i) => ({ path: String(i.path[0] ?? ''), message: i.message }));
}

/** Validates the query string of GET /v1/flows; errors name the bad parameter. */
export function parseListQuery(tenant: string, raw: unknown): ListFlowsQuery {
  const r = ListQuerySchema.safeParse(raw ?? {});
  if (!r.success) throw invalid(issues(r.error));
  const q: ListFlowsQuery = { tenant, status: r.data.status, limit: r.data.limit };
  if (r.data.cursor) q.cursor = r.data.cursor;
  if (r.data.idempotencyKey !== undefined) q.idempotencyKey = r.data.idempotencyKey;
  if (r.data.metadata !== undefined) {
    const at = r.data.metadata.indexOf('=');
    q.metadata = { key: r.data.metadata.slice(0, at), value: r.data.metadata.slice(at + 1) };
  }
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
    metadata: s.metadata,
    callback: s.callbackUrl ? { status: 'pending' } : null,
  };
}
