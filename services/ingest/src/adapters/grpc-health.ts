import type * as grpc from '@grpc/grpc-js';
import { HealthImplementation, type ServingStatus } from 'grpc-health-check';
import { IngestService } from '@jetflow/proto';

export interface GrpcHealth {
  /** Reports NOT_SERVING from now on (shutdown: probes and balancers stop sending before the server closes). */
  close(): void;
}

/**
 * The standard gRPC health service (`grpc.health.v1.Health`: Check, Watch, List) on the ingest gRPC
 * port, for Kubernetes gRPC probes and gRPC-aware balancers. The server ("") and IngestService are
 * SERVING only while `ready()` says so (NATS connected, as for HTTP /readyz); any other name is
 * NOT_FOUND. `ready()` is sampled every `pollMs`, and Watch streams hear only real changes.
 */
export function addHealth(server: Pick<grpc.Server, 'addService'>, ready: () => boolean, pollMs = 1_000): GrpcHealth {
  const names = ['', IngestService.typeName];
  const health = new HealthImplementation();
  let current: ServingStatus | undefined;
  const set = (status: ServingStatus) => {
    if (status === current) return;
    current = status;
    for (const n of names) health.setStatus(n, status);
  };
  const sample = () => set(ready() ? 'SERVING' : 'NOT_SERVING');
  sample();
  const timer = setInterval(sample, pollMs);
  timer.unref();
  health.addToServer(server);
  return {
    close() {
      clearInterval(timer);
      set('NOT_SERVING');
    },
  };
}
