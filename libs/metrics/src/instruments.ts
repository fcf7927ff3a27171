import { Counter, Gauge, Histogram, register as globalRegistry, type Registry } from 'prom-client';
import { ErrorCodes } from '@jetflow/errors';

/**
 * Every Jetflow metric name, in one place: the Grafana dashboard (deploy/grafana/jetflow.json) and the
 * docs use these, and a test checks the dashboard names nothing else.
 */
export const METRICS = {
  flowDuration: 'jetflow_flow_duration_seconds',
  taskDuration: 'jetflow_task_duration_seconds',
  taskRetries: 'jetflow_task_retries_total',
  deadLetters: 'jetflow_dead_letters_total',
  callbackAttempts: 'jetflow_callback_attempts_total',
  submissions: 'jetflow_submissions_total',
  consumerPending: 'jetflow_consumer_pending_messages',
  consumerAckPending: 'jetflow_consumer_ack_pending_messages',
  consumerRedelivered: 'jetflow_consumer_redelivered_messages',
  consumerWaiting: 'jetflow_consumer_waiting_pulls',
  unexpectedErrors: 'jetflow_unexpected_errors_total',
  consumerDelivered: 'jetflow_consumer_delivered_messages_total',
  streamMessages: 'jetflow_stream_messages',
  streamBytes: 'jetflow_stream_bytes',
  streamPublished: 'jetflow_stream_published_messages_total',
  scheduleFirings: 'jetflow_schedule_firings_total',
  taskLimitDelays: 'jetflow_task_limit_delays_total',
} as const;

/**
 * Label values known in advance. Their series are created at zero when a service starts (see
 * zeroSeries): a counter series born at its first event has no earlier sample, so rate() and
 * increase() over it miss that event (two partial flows and a retry read as zero).
 */
export const LABEL_VALUES = {
  flowStatus: ['succeeded', 'partial', 'failed', 'cancelled'],
  taskOutcome: ['succeeded', 'failed', 'retried', 'dead_lettered', 'cancelled'],
  callbackOutcome: ['delivered', 'retry', 'dead_lettered'],
  submissionResult: ['accepted', 'rejected', 'overloaded', 'unavailable', 'error'],
  /** A schedule's fire times: fired (a flow submitted), skipped (overlap skip), missed (the catch-up policy). */
  scheduleOutcome: ['fired', 'skipped', 'missed'],
  /** The codes each source dead-letters with (a plugin's own task code appears on first use). */
  deadLetterCodes: {
    task: [...Object.values(ErrorCodes), 'decode_error'],
    ingest: [ErrorCodes.INVALID_ARGUMENT, 'forbidden_content_type', 'idempotency_conflict'],
    result: ['unknown_flow', 'invalid_message', 'definition_unavailable', 'bad_token', 'unknown_task', 'unexpected_result', 'unverified_cancel'],
    callback: ['callback_failed', 'callback_blocked', 'decode_error'],
  },
} as const;

/** Every combination of the given label values: {a: [1, 2], b: [x]} → [{a: 1, b: x}, {a: 2, b: x}]. */
export function combinations<L extends string>(values: Record<L, readonly string[]>): Array<Record<L, string>> {
  let out: Array<Record<string, string>> = [{}];
  for (const [k, vs] of Object.entries<readonly string[]>(values)) out = out.flatMap((o) => vs.map((v) => ({ ...o, [k]: v })));
  return out;
}

/** Creates each label combination at zero (counters at 0, histograms with empty buckets), once. */
export function zeroSeries<L extends string>(m: Counter<L> | Histogram<L>, values: Record<L, readonly string[]>): void {
  for (const labels of combinations(values)) {
    if (m instanceof Histogram) m.zero(labels);
    else m.inc(labels as never, 0);
  }
}

/** Seconds; the flow deadline defaults to 10 s, so resolution is finest below it. */
export const FLOW_BUCKETS = [0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 7.5, 10, 15, 30, 60];
export const TASK_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

type Kind = 'counter' | 'gauge' | 'histogram';

/** Get-or-create, so two parts of one process asking for the same instrument share it. */
function instrument<T>(registry: Registry, kind: Kind, name: string, make: () => T): T {
  const existing = registry.getSingleMetric(name) as unknown as { constructor: { name: string } } | undefined;
  if (existing) {
    const want = kind === 'counter' ? 'Counter' : kind === 'gauge' ? 'Gauge' : 'Histogram';
    if (existing.constructor.name !== want) throw new Error(`metric ${name} is already registered as another type`);
    return existing as unknown as T;
  }
  return make();
}

export function flowDurationHistogram(registry: Registry = globalRegistry): Histogram<'flow' | 'status'> {
  return instrument(
    registry,
    'histogram',
    METRICS.flowDuration,
    () =>
      new Histogram({
        name: METRICS.flowDuration,
        help: 'Time from submission to the end of a flow (finishedAt - submittedAt), by flow and final status.',
        labelNames: ['flow', 'status'],
        buckets: FLOW_BUCKETS,
        registers: [registry],
      }),
  );
}

export function taskDurationHistogram(registry: Registry = globalRegistry): Histogram<'task' | 'outcome'> {
  return instrument(
    registry,
    'histogram',
    METRICS.taskDuration,
    () =>
      new Histogram({
        name: METRICS.taskDuration,
        help: 'Task attempt duration in a worker, by task and outcome (succeeded, failed, retried, dead_lettered, cancelled).',
        labelNames: ['task', 'outcome'],
        buckets: TASK_BUCKETS,
        registers: [registry],
      }),
  );
}

export function taskRetriesCounter(registry: Registry = globalRegistry): Counter<'task'> {
  return instrument(
    registry,
    'counter',
    METRICS.taskRetries,
    () => new Counter({ name: METRICS.taskRetries, help: 'Task attempts that failed and were handed back for a retry with backoff.', labelNames: ['task'], registers: [registry] }),
  );
}

export function deadLettersCounter(registry: Registry = globalRegistry): Counter<'source' | 'code'> {
  return instrument(
    registry,
    'counter',
    METRICS.deadLetters,
    () =>
      new Counter({
        name: METRICS.deadLetters,
        help: 'Messages moved to the dead-letter subject, by source (task, ingest, result, callback) and error code.',
        labelNames: ['source', 'code'],
        registers: [registry],
      }),
  );
}

export function taskLimitDelaysCounter(registry: Registry = globalRegistry): Counter<'subject' | 'limit'> {
  return instrument(
    registry,
    'counter',
    METRICS.taskLimitDelays,
    () =>
      new Counter({
        name: METRICS.taskLimitDelays,
        help: 'Tasks that waited for their concurrency limit or rate limit by key before they started, by task subject and limit (concurrency, rate).',
        labelNames: ['subject', 'limit'],
        registers: [registry],
      }),
  );
}

export function callbackAttemptsCounter(registry: Registry = globalRegistry): Counter<'outcome'> {
  return instrument(
    registry,
    'counter',
    METRICS.callbackAttempts,
    () => new Counter({ name: METRICS.callbackAttempts, help: 'Callback delivery attempts, by outcome (delivered, retry, dead_lettered).', labelNames: ['outcome'], registers: [registry] }),
  );
}

export function submissionsCounter(registry: Registry = globalRegistry): Counter<'door' | 'result'> {
  return instrument(
    registry,
    'counter',
    METRICS.submissions,
    () =>
      new Counter({
        name: METRICS.submissions,
        help: 'Flow submissions by front door (http, grpc, nats) and result (accepted, rejected, overloaded, unavailable, error).',
        labelNames: ['door', 'result'],
        registers: [registry],
      }),
  );
}

export function scheduleFiringsCounter(registry: Registry = globalRegistry): Counter<'outcome'> {
  return instrument(
    registry,
    'counter',
    METRICS.scheduleFirings,
    () =>
      new Counter({
        name: METRICS.scheduleFirings,
        help: "Cron schedules' fire times by outcome: fired (a flow submitted), skipped (overlap skip: the previous flow still ran), missed (given up by the catch-up policy).",
        labelNames: ['outcome'],
        registers: [registry],
      }),
  );
}

export function unexpectedErrorsCounter(registry: Registry = globalRegistry): Counter<'where'> {
  return instrument(
    registry,
    'counter',
    METRICS.unexpectedErrors,
    () =>
      new Counter({
        name: METRICS.unexpectedErrors,
        help: 'Errors that reached reportError (bugs, broker trouble), by where they were caught.',
        labelNames: ['where'],
        registers: [registry],
      }),
  );
}

export function consumerGauge(registry: Registry, name: string, help: string, collect: (g: Gauge<'stream' | 'consumer'>) => Promise<void>): Gauge<'stream' | 'consumer'> {
  return instrument(
    registry,
    'gauge',
    name,
    () =>
      new Gauge({
        name,
        help,
        labelNames: ['stream', 'consumer'],
        registers: [registry],
        async collect() {
          await collect(this);
        },
      }),
  );
}
