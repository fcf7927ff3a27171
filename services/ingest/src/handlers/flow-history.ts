import { allTasks, stagesOf, type FlowDef, type FlowStatus } from '@jetflow/flows';
import type { FlowRecord, FlowSummary as HistorySummary } from '@jetflow/storage';
import type { FlowSummary } from './flow-lister.js';

/** Finished flows kept after their KV state expires (implemented by libs/storage FlowRecords over DynamoDB). */
export interface FlowHistoryReader {
  get(flowId: string): Promise<FlowRecord | undefined>;
}

/**
 * GET /v1/flows/{id} of a flow whose KV state has expired, from its history record: the same fields
 * as the live view where the record has them. History keeps the outcome (status, times, results,
 * datasets, errors), not each task's state, so `stages` is empty; `source` says where it came from.
 */
export function historyView(r: FlowRecord, def: FlowDef | undefined) {
  return {
    flowId: r.flowId,
    flow: r.flow,
    version: def?.version ?? 0,
    tenant: r.tenant,
    status: r.status,
    submittedAt: r.startedAt,
    startedAt: r.startedAt,
    deadlineAt: r.deadlineAt ?? null,
    finishedAt: r.finishedAt ?? null,
    durationMs: r.durationMs ?? null,
    endReason: null,
    idempotencyKey: r.idempotencyKey ?? null,
    metadata: r.metadata ?? {},
    stages: [],
    errors: r.errors ?? [],
    results: r.results ?? {},
    datasets: r.datasets ?? {},
    callback: null,
    source: 'history' as const,
  };
}

/**
 * A listing entry from a history summary. History keeps the outcome, not each task's state: task
 * counts come from the record's results and datasets when `record` is given (entries of tasks that
 * did not succeed are `{ status, error }`), else from the error count (exact for succeeded flows).
 */
export function summaryFromHistory(h: HistorySummary, def: FlowDef | undefined, record?: FlowRecord): FlowSummary {
  const total = def ? allTasks(def).length : 0;
  let failed = Math.min(total, h.errorCount ?? 0);
  let succeeded = total - failed;
  const outcomes = record ? [record.results, record.datasets].filter((o): o is Record<string, unknown> => !!o && typeof o === 'object') : [];
  if (outcomes.length === 2) {
    const entries = outcomes.flatMap((o) => Object.values(o));
    const unsettled = entries.filter(isNotSucceeded);
    succeeded = entries.length - unsettled.length;
    failed = unsettled.filter((e) => e.status === 'failed' || e.status === 'timed_out').length;
  }
  return {
    flowId: h.flowId,
    flow: h.flow,
    tenant: h.tenant,
    status: h.status as FlowStatus,
    stage: def ? stagesOf(def).length - 1 : 0,
    submittedAt: h.startedAt,
    finishedAt: h.finishedAt ?? null,
    durationMs: h.durationMs ?? null,
    updatedAt: h.finishedAt ?? null,
    tasks: { total, succeeded, failed, running: 0 },
    errors: h.errorCount ?? 0,
    endReason: null,
    idempotencyKey: h.idempotencyKey ?? null,
    metadata: h.metadata ?? {},
  };
}

const TASK_STATUSES = new Set(['pending', 'dispatched', 'failed', 'cancelled', 'skipped', 'timed_out']);

/** The callback's entry for a task that did not succeed: `{ status }` or `{ status, error }`. */
function isNotSucceeded(e: unknown): e is { status: string } {
  if (!e || typeof e !== 'object') return false;
  const keys = Object.keys(e);
  const status = (e as { status?: unknown }).status;
  return typeof status === 'string' && TASK_STATUSES.has(status) && keys.every((k) => k === 'status' || k === 'error');
}
