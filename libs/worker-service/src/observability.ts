import type { NatsConnection } from 'nats';
import type { Task } from '@jetflow/proto';
import type { WorkerConfig } from './config.js';
import type { Logger } from '@jetflow/logging';
import { ATTR, annotateActiveSpan, failActiveSpan, recordActiveSpanError, startTelemetry, tracingEnabled } from '@jetflow/telemetry';
import {
  LABEL_VALUES,
  deadLettersCounter,
  initMetrics,
  registerConsumerGauges,
  startMetricsServer,
  taskDurationHistogram,
  taskLimitDelaysCounter,
  taskRetriesCounter,
  zeroSeries,
} from '@jetflow/metrics';
import { CONSUMERS, STREAMS, onDeadLetter, type TaskWorkerOptions } from '@jetflow/messaging';

type Outcome = Parameters<NonNullable<TaskWorkerOptions['onOutcome']>>[1];

/**
 * Tracing, metrics and the /metrics endpoint of a task-worker process. Started first thing, so the
 * SDK is up before any consumer loop wraps its handler.
 */
export async function startWorkerObservability(service: string, cfg: WorkerConfig, log: Logger) {
  const telemetry = await startTelemetry(service, cfg.telemetry, cfg.instanceId);
  initMetrics(service);
  const duration = taskDurationHistogram();
  const retries = taskRetriesCounter();
  const deadLetters = deadLettersCounter();
  const limitDelays = taskLimitDelaysCounter();
  const stopObserving = onDeadLetter((source, code) => deadLetters.inc({ source, code }));
  const server = await startMetricsServer({ port: cfg.metricsPort });
  if (server.movedFrom) log.warn({ metricsPort: server.port, configured: server.movedFrom }, 'JETFLOW_METRICS_PORT is taken; serving metrics on a free port');
  log.info({ metricsPort: server.port, tracing: telemetry.tracing }, 'metrics listening');

  return {
    /**
     * The worker runtime's outcome hook: task duration by task and outcome, retries, and the span's
     * outcome. A failed attempt (retried or dead-lettered) has status ERROR with its exception recorded.
     */
    onOutcome(task: Task | undefined, outcome: Outcome, durationMs: number, error?: unknown) {
      const name = task?.task ?? 'undecodable';
      duration.observe({ task: name, outcome }, durationMs / 1000);
      if (outcome === 'retried') retries.inc({ task: name });
      if (!tracingEnabled()) return;
      if (task) annotateActiveSpan({ [ATTR.task]: task.task, [ATTR.tenant]: task.tenant, [ATTR.flow]: task.flow, [ATTR.outcome]: outcome });
      if (error !== undefined && (outcome === 'retried' || outcome === 'dead_lettered')) recordActiveSpanError(error);
      else if (outcome === 'failed' || outcome === 'dead_lettered') failActiveSpan(`task ${outcome}`);
    },
    /** The worker runtime's hook for tasks that waited for their concurrency or rate limit. */
    onLimitDelay(subject: string, limit: 'concurrency' | 'rate') {
      limitDelays.inc({ subject, limit });
    },
    /**
     * Pending / ack-pending gauges of the task consumers this process serves, and its task, retry and
     * dead-letter series at zero (so the first retry or dead letter is a rise rate() can see).
     */
    watchConsumers(nc: NatsConnection, subjects: string[]) {
      // Every priority band's consumer (task-…, taskhigh-…, tasklow-…): a band's backlog shows apart.
      const refs = subjects.flatMap((s) => CONSUMERS.taskAll(s).map((consumer) => ({ stream: STREAMS.tasks, consumer })));
      registerConsumerGauges({ nc, consumers: () => refs });
      const tasks = [...new Set(cfg.registry.defs.flatMap((d) => (d.tasks ?? d.stages!.flatMap((st) => st.tasks)).filter((t) => subjects.includes(t.subject)).map((t) => t.name)))];
      zeroSeries(duration, { task: tasks, outcome: LABEL_VALUES.taskOutcome });
      zeroSeries(retries, { task: tasks });
      zeroSeries(deadLetters, { source: ['task'], code: LABEL_VALUES.deadLetterCodes.task });
    },
    async close() {
      stopObserving();
      await server.close();
      await telemetry.shutdown();
    },
  };
}
