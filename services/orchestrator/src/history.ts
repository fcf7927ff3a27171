import type { FinalFlowStatus, FlowRecords, FlowTaskError } from '@jetflow/storage';

/** The callback body (libs/flows callbackBody) as the history reads it. */
interface FinishedFlow {
  flowId: string;
  flow: string;
  tenant: string;
  status: FinalFlowStatus;
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  results?: unknown;
  datasets?: unknown;
  errors?: FlowTaskError[];
  metadata?: Record<string, string>;
  idempotencyKey?: string | null;
}

/**
 * Flow history in DynamoDB, written by the callback-job consumer: the orchestrator publishes exactly
 * one callback job per finished flow (deterministic message id), also for flows without a callback
 * URL, so the saga's hot path makes no AWS call and a failed write is retried by redelivery. The
 * write is conditional, so a redelivered job changes nothing.
 */
export class FlowHistory {
  constructor(private readonly records: Pick<FlowRecords, 'recordCompleted'>) {}

  /** Records the flow whose callback body this is. `callbackUrl` is empty when the flow has none. */
  async record(bodyJson: string, callbackUrl: string, traceparent?: string): Promise<void> {
    const f = JSON.parse(bodyJson) as FinishedFlow;
    const traceId = traceparent?.split('-')[1];
    // Start and end in one conditional write: one DynamoDB request per flow.
    await this.records.recordCompleted(
      {
        flowId: f.flowId,
        flow: f.flow,
        tenant: f.tenant,
        startedAt: f.startedAt,
        ...(f.idempotencyKey ? { idempotencyKey: f.idempotencyKey } : {}),
        ...(callbackUrl ? { callbackUrl } : {}),
        ...(f.metadata && Object.keys(f.metadata).length ? { metadata: f.metadata } : {}),
        ...(traceId && /^[0-9a-f]{32}$/.test(traceId) ? { traceId } : {}),
      },
      {
        status: f.status,
        finishedAt: f.finishedAt,
        durationMs: f.durationMs,
        ...(f.results !== undefined ? { results: f.results } : {}),
        ...(f.datasets !== undefined ? { datasets: f.datasets } : {}),
        ...(f.errors ? { errors: f.errors } : {}),
      },
    );
  }
}
