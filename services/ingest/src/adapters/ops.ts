import { readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import type { NatsConnection } from 'nats';
import { taskSubjects, type DefinitionStore, type FlowRegistry, type LiveDefinitions } from '@jetflow/flows';
import type { JetStreamPublisher } from '@jetflow/messaging';
import type { Logger } from '@jetflow/logging';
import type { FlowHandlers, Gateway } from '../handlers/flows.js';
import type { FlowLister } from '../handlers/flow-lister.js';
import { DeadLetterHandlers } from '../handlers/deadletters.js';
import { BulkHandlers } from '../handlers/bulk.js';
import { ConsumerStats } from '../handlers/consumers.js';
import { WorkerHandlers, type WorkerRegistryReader } from '../handlers/workers.js';
import type { Authenticator } from './auth.js';
import type { ClientLimits } from '../config.js';
import { KvFlowLister } from './kv-flow-lister.js';
import { JetStreamDeadLetterStore } from './dlq-store.js';
import { JetStreamConsumerSource } from './consumer-source.js';
import { registerOpsRoutes } from './ops-routes.js';
import { registerScheduleRoutes } from './schedule-routes.js';
import { registerDefinitionRoutes } from './definition-routes.js';
import { registerDocs } from './openapi.js';
import { registerDashboard } from './dashboard.js';
import { findUp } from './find-up.js';

export interface OperationsDeps {
  nc: NatsConnection;
  pub: JetStreamPublisher;
  gateway: Gateway;
  flows: FlowHandlers;
  registry: FlowRegistry;
  auth: Authenticator;
  log: Logger;
  jaegerUrl: string | undefined;
  operatorTenants: readonly string[];
  publishTimeoutMs: number;
  limits: ClientLimits;
  /** Another history (e.g. DynamoDB) instead of the flows KV bucket. */
  lister?: FlowLister;
  /** The worker registry, watched: GET /v1/workers. */
  workers?: WorkerRegistryReader;
  /** The definitions store and its follower: the /v1/flow-definitions routes. */
  definitions?: { store: DefinitionStore; live: LiveDefinitions };
}

/**
 * Wires the operations surface into the HTTP server: `before` (OpenAPI, which must see every
 * route) and `extend` (ops API, dashboard) for buildHttpServer.
 */
export function operations(d: OperationsDeps) {
  const deadLetters = new DeadLetterHandlers({
    store: new JetStreamDeadLetterStore(d.nc, d.pub, d.publishTimeoutMs),
    getState: (id) => d.gateway.getState(id),
    operatorTenants: new Set(d.operatorTenants),
  });
  const source = new JetStreamConsumerSource(d.nc);
  const consumers = new ConsumerStats(source);
  const workers = d.workers ? new WorkerHandlers({ workers: d.workers, consumers: source, subjects: () => taskSubjects(d.registry.defs) }) : undefined;
  const lister = d.lister ?? new KvFlowLister(d.nc);
  const bulk = new BulkHandlers({ lister, flows: d.flows, deadLetters });
  return {
    /** Bulk actions by filter, for the gRPC door too. */
    bulk,
    before: (app: FastifyInstance) => registerDocs(app, { version: packageVersion() }),
    extend: (app: FastifyInstance) => {
      registerOpsRoutes(app, {
        auth: d.auth,
        flows: d.flows,
        registry: d.registry,
        lister,
        deadLetters,
        bulk,
        consumers,
        ...(workers ? { workers } : {}),
        nc: d.nc,
        log: d.log,
        jaegerUrl: d.jaegerUrl,
        limits: d.limits,
      });
      if (d.definitions) registerDefinitionRoutes(app, { auth: d.auth, registry: d.registry, ...d.definitions });
      registerScheduleRoutes(app, { auth: d.auth, nc: d.nc, registry: d.registry, checkCallbackUrl: (u) => d.flows.checkCallbackUrl(u) });
      registerDashboard(app);
    },
  };
}

function packageVersion(): string {
  try {
    return (JSON.parse(readFileSync(findUp('package.json'), 'utf8')) as { version?: string }).version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
}
