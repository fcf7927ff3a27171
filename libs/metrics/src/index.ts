import { collectDefaultMetrics, register as globalRegistry, type Registry } from 'prom-client';
import { addErrorSink } from '@jetflow/logging';
import { unexpectedErrorsCounter, zeroSeries } from './instruments.js';

export * from './instruments.js';
export * from './consumers.js';
export * from './server.js';
export { globalRegistry as registry };

let initialised = false;

/**
 * Process-wide metrics set-up, once per service process: the default process metrics (CPU, memory,
 * event-loop lag, GC), a `service` label on every series, and a count of what reportError sees, at
 * zero for the places (`where`) this service reports from.
 */
export function initMetrics(service: string, registry: Registry = globalRegistry, errorSites: readonly string[] = ['unhandledRejection']): void {
  if (initialised) return;
  initialised = true;
  registry.setDefaultLabels({ service });
  // The event-loop lag histogram samples on a timer of this period. prom-client's default (10 ms) wakes an
  // idle process 100 times a second: 0.35-0.4 % of a core per service on the 2-core box, most of what an
  // idle stack cost (docs/PERFORMANCE.md, "Idle"); at 100 ms it is 0.05 %. Stalls long enough to matter
  // still show in the max and the percentiles (a blocked loop delays the next sample).
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 100 });
  // Gauges named like counters (promtool check metrics refuses them); the per-type gauges without
  // _total stay, and sum() over them is the same number.
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) registry.removeSingleMetric(name);
  const errors = unexpectedErrorsCounter(registry);
  zeroSeries(errors, { where: errorSites });
  addErrorSink((_err, r) => errors.inc({ where: typeof r.context.where === 'string' ? r.context.where : 'unknown' }));
}

/** Prometheus text of a registry, for servers that have their own router (ingest's fastify). */
export async function metricsText(registry: Registry = globalRegistry): Promise<{ contentType: string; body: string }> {
  return { contentType: registry.contentType, body: await registry.metrics() };
}
