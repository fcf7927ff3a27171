import { collectDefaultMetrics, register as globalRegistry, type Registry } from 'prom-client';
import { addErrorSink } from '../../logging/src/index.js';
import { unexpectedErrorsCounter } from './instruments.js';

export * from './instruments.js';
export * from './consumers.js';
export * from './server.js';
export { globalRegistry as registry };

let initialised = false;

/**
 * Process-wide metrics set-up, once per service process: the default process metrics (CPU, memory,
 * event-loop lag, GC), a `service` label on every series, and a count of what reportError sees.
 */
export function initMetrics(service: string, registry: Registry = globalRegistry): void {
  if (initialised) return;
  initialised = true;
  registry.setDefaultLabels({ service });
  collectDefaultMetrics({ register: registry });
  const errors = unexpectedErrorsCounter(registry);
  addErrorSink((_err, r) => errors.inc({ where: typeof r.context.where === 'string' ? r.context.where : 'unknown' }));
}

/** Prometheus text of a registry, for servers that have their own router (ingest's fastify). */
export async function metricsText(registry: Registry = globalRegistry): Promise<{ contentType: string; body: string }> {
  return { contentType: registry.contentType, body: await registry.metrics() };
}
