/**
 * The OpenTelemetry SDK, loaded only through startTelemetry()'s dynamic import: it takes over a second
 * to load, which a process that does not trace (or the CLI) must not pay.
 */
import { NodeSDK } from '@opentelemetry/sdk-node';
import { defaultResource, resourceFromAttributes } from '@opentelemetry/resources';
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions';

export function startSdk(service: string, o: { instanceId?: string | undefined; serviceVersion?: string | undefined }): () => Promise<void> {
  const attrs: Record<string, string> = { [ATTR_SERVICE_NAME]: service, 'service.namespace': 'jetflow' };
  if (o.serviceVersion) attrs[ATTR_SERVICE_VERSION] = o.serviceVersion;
  if (o.instanceId) attrs['service.instance.id'] = o.instanceId;
  const sdk = new NodeSDK({
    // OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES (the env detector) still override these.
    resource: defaultResource().merge(resourceFromAttributes(attrs)),
    // Traces only: spans are made by hand where messages cross processes; metrics are Prometheus's,
    // logs are pino's on stdout.
    instrumentations: [],
    metricReaders: [],
    logRecordProcessors: [],
  });
  sdk.start();
  return () => sdk.shutdown();
}
