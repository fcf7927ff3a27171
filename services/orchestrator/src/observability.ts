import type { JsMsg, NatsConnection } from 'nats';
import type { FlowState } from '@jetflow/flows';
import type { Logger } from '@jetflow/logging';
import { CONSUMERS, STREAMS, SUBJECTS, onDeadLetter } from '@jetflow/messaging';
import {
  LABEL_VALUES,
  callbackAttemptsCounter,
  deadLettersCounter,
  flowDurationHistogram,
  initMetrics,
  registerConsumerGauges,
  startMetricsServer,
  submissionsCounter,
  zeroSeries,
} from '@jetflow/metrics';
import { ATTR, annotateActiveSpan, failActiveSpan, startTelemetry, tracingEnabled, type TelemetryConfig } from '@jetflow/telemetry';

/**
 * The orchestrator's tracing and metrics: flow latency (observed when a flow ends), callback attempts,
 * dead letters, submissions through the NATS door (the only door the orchestrator sees first-hand), and
 * the pending / ack-pending gauges of its consumers. Started before any loop, so loops are traced.
 */
export async function startOrchestratorObservability(cfg: { telemetry: TelemetryConfig; instanceId: string; metricsPort: number; registry?: { names(): string[] } }, log: Logger) {
  const telemetry = await startTelemetry('orchestrator', cfg.telemetry, cfg.instanceId);
  initMetrics('orchestrator', undefined, ['unhandledRejection', 'message handler']);
  const flowDuration = flowDurationHistogram();
  const callbacks = callbackAttemptsCounter();
  const deadLetters = deadLettersCounter();
  const submissions = submissionsCounter();
  // Every status, outcome and dead-letter code at zero from the start: rate() then sees the first one.
  zeroSeries(flowDuration, { flow: cfg.registry?.names() ?? [], status: LABEL_VALUES.flowStatus });
  zeroSeries(callbacks, { outcome: LABEL_VALUES.callbackOutcome });
  for (const source of ['ingest', 'result', 'callback'] as const) zeroSeries(deadLetters, { source: [source], code: LABEL_VALUES.deadLetterCodes[source] });
  zeroSeries(submissions, { door: ['nats'], result: ['accepted', 'rejected'] });
  const rejected = new WeakSet<JsMsg>();
  // Published straight to jetflow.ingest.<tenant>.<flow> by a client; the ingest service publishes to jetflow.submit.
  const natsDoor = (m: JsMsg) => m.subject.startsWith(`${SUBJECTS.ingest}.`);
  const stopObserving = onDeadLetter((source, code, m) => {
    deadLetters.inc({ source, code });
    if (source === 'ingest') {
      rejected.add(m);
      if (natsDoor(m)) submissions.inc({ door: 'nats', result: 'rejected' });
    }
  });
  const server = await startMetricsServer({ port: cfg.metricsPort });
  if (server.movedFrom) log.warn({ metricsPort: server.port, configured: server.movedFrom }, 'JETFLOW_METRICS_PORT is taken; serving metrics on a free port');
  log.info({ metricsPort: server.port, tracing: telemetry.tracing }, 'metrics listening');

  return {
    /** EngineDeps.onTerminal: once per flow, on the replica that ended it. */
    flowEnded(s: FlowState) {
      const end = s.finishedAt ?? Date.now();
      flowDuration.observe({ flow: s.flow, status: s.status }, Math.max(0, end - s.submittedAt) / 1000);
    },
    /** CallbackSender.onAttempt, called inside the delivery's span. */
    callbackAttempt(outcome: 'delivered' | 'retry' | 'dead_lettered') {
      callbacks.inc({ outcome });
      if (!tracingEnabled()) return;
      annotateActiveSpan({ [ATTR.outcome]: outcome });
      if (outcome !== 'delivered') failActiveSpan(`callback ${outcome}`);
    },
    /**
     * Wraps the ingest handler to count NATS-door submissions accepted (first delivery, not
     * dead-lettered). Submissions from the ingest service pass straight through: no extra promise.
     */
    countIngest(handle: (m: JsMsg) => Promise<void>) {
      const count = (m: JsMsg) => {
        if (m.info.deliveryCount === 1 && !rejected.has(m)) submissions.inc({ door: 'nats', result: 'accepted' });
      };
      return (m: JsMsg): Promise<void> => (natsDoor(m) ? handle(m).then(() => count(m)) : handle(m));
    },
    /** Control messages (durable deadline timers come back by delayed nak) get no span of their own. */
    isControl: (m: JsMsg) => m.headers?.get('Jetflow-Kind') === 'control',
    /** `ingest`: the per-tenant ingest consumers this replica pulls (they come and go with tenants). */
    watchConsumers(nc: NatsConnection, partitions: number, ingest: () => string[]) {
      const refs = [
        { stream: STREAMS.callbacks, consumer: CONSUMERS.callbacks },
        ...Array.from({ length: partitions }, (_, p) => ({ stream: STREAMS.results, consumer: CONSUMERS.results(p) })),
      ];
      registerConsumerGauges({ nc, consumers: () => [...ingest().map((consumer) => ({ stream: STREAMS.ingest, consumer })), ...refs] });
    },
    async close() {
      stopObserving();
      await server.close();
      await telemetry.shutdown();
    },
  };
}
