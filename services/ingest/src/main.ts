import * as grpc from '@grpc/grpc-js';
import { CallbackPolicy, followDefinitions, taskSubjects } from '@jetflow/flows';
import { createLogger, reportError } from '@jetflow/logging';
import { BUCKETS, JetStreamPublisher, connectNats, openKv, provisionTopology, waitingKey, waitingOf, watchWorkerRegistry } from '@jetflow/messaging';
import { loadConfig } from './config.js';
import { FlowHandlers } from './handlers/flows.js';
import { JetStreamGateway } from './adapters/gateway.js';
import { Authenticator } from './adapters/auth.js';
import { buildHttpServer } from './adapters/http.js';
import { buildGrpcServer } from './adapters/grpc.js';
import { addReflection } from './adapters/grpc-reflection.js';
import { addHealth } from './adapters/grpc-health.js';
import { operations } from './adapters/ops.js';
import { startIngestObservability } from './adapters/observability.js';
import { startIngestStorage } from './adapters/storage.js';
import { TenantQuota } from './handlers/quota.js';
import { TenantLoad } from './adapters/tenant-load.js';
import { workerDoor } from './adapters/worker-door.js';

const cfg = loadConfig();
const log = createLogger('ingest', cfg.logLevel);
process.on('unhandledRejection', (err) => reportError(log, err, { where: 'unhandledRejection' }));
const obs = await startIngestObservability(cfg, log);

const registry = cfg.registry;
const defs = registry.defs;
const nc = await connectNats({ servers: cfg.natsServers, name: 'ingest', log, auth: cfg.natsAuth });
await provisionTopology(nc, { partitions: cfg.partitions, taskSubjects: taskSubjects(defs), replicas: cfg.replicas, log });
obs.watchConsumers(nc);
// The idempotency record is read only after a conflict, to compare bodies: from the leader (see openKv).
const [flowsKv, idemKv, cancelKv] = await Promise.all([openKv(nc, BUCKETS.flows), openKv(nc, BUCKETS.idempotency, { leader: true }), openKv(nc, BUCKETS.cancel)]);
// Signal records: created once per signal id (a retry finds its own), so read from the leader.
const signalsKv = await openKv(nc, BUCKETS.signals, { leader: true });
const pausesKv = await openKv(nc, BUCKETS.pauses, { leader: true });
// The marks of tasks waiting for their concurrency or rate limit (the flow view's waitingForLimit).
const limitsKv = await openKv(nc, BUCKETS.limits);
// Definitions: the file's seeded into KV jetflow_definitions, then the newest version of each name followed there.
const definitions = await followDefinitions(await openKv(nc, BUCKETS.definitions, { leader: true }), registry, { log });
const pub = new JetStreamPublisher(nc);
// The worker registry (KV jetflow_workers), watched: GET /v1/workers, and which tasks of a flow wait for a worker.
const workers = await watchWorkerRegistry(nc, log);
// S3 for the input claim check, DynamoDB for the history of finished flows.
const storage = await startIngestStorage(cfg, { nc, registry: cfg.registry, log });
const gateway = new JetStreamGateway(
  nc,
  pub,
  { flows: flowsKv, idempotency: idemKv, cancel: cancelKv, signals: signalsKv, pauses: pausesKv },
  cfg.partitions,
  cfg.publishTimeoutMs,
  storage.claim,
);
const policy = new CallbackPolicy(cfg.callbackAllowlist);
// Per-tenant limits: a rate per replica, and flows in flight from the orchestrators' reports.
const tenantLoad = new TenantLoad({ log, onReport: (l) => l.queuedNow && quota.reported() }).start(nc);
const quota: TenantQuota = new TenantQuota(cfg.tenantLimits, tenantLoad);
const flows = new FlowHandlers({
  gateway,
  registry,
  policy,
  maxPending: cfg.maxPending,
  maxTasksPerFlow: cfg.maxTasksPerFlow,
  inputRefPrefixes: cfg.storage.inputRefPrefixes ?? [],
  quota,
  workers,
  limits: {
    waiting: async (subject, flowId, task) => {
      const key = waitingKey(subject, { flowId, task });
      return key ? waitingOf(await limitsKv.get(key)) : undefined;
    },
  },
  ...(storage.history ? { history: storage.history } : {}),
});
const auth = new Authenticator(cfg.apiKeys, cfg.authDisabled);

const ops = operations({
  nc,
  pub,
  gateway,
  flows,
  registry,
  auth,
  log,
  jaegerUrl: cfg.jaegerUrl,
  operatorTenants: cfg.operatorTenants,
  publishTimeoutMs: cfg.publishTimeoutMs,
  limits: cfg.limits,
  lister: storage.lister,
  workers,
  definitions,
});
const app = await buildHttpServer({
  flows,
  auth,
  nc,
  log,
  maxBodyBytes: cfg.maxBodyBytes,
  limits: cfg.limits,
  ready: () => gateway.connected(),
  before: obs.before(ops.before),
  extend: obs.extend(ops.extend),
});
await app.listen({ port: cfg.httpPort, host: cfg.host });
const grpcServer = buildGrpcServer({ flows, bulk: ops.bulk, auth, nc, log, maxBodyBytes: cfg.maxBodyBytes, limits: cfg.limits, interceptors: obs.interceptors });
// The gRPC worker door (jetflow.v1.WorkerService): workers without a NATS client serve task subjects through it.
const door = workerDoor({
  nc,
  partitions: cfg.partitions,
  keys: cfg.workerKeys,
  authDisabled: cfg.authDisabled,
  maxMessageBytes: cfg.maxBodyBytes,
  subjects: () => taskSubjects(registry.defs),
  log: log.child({ door: 'worker' }),
});
grpcServer.addService(door.definition, door.implementation);
addReflection(grpcServer);
const grpcHealth = addHealth(grpcServer, () => gateway.connected());
const grpcPort = await new Promise<number>((resolve, reject) =>
  grpcServer.bindAsync(`${cfg.host.includes(':') ? `[${cfg.host}]` : cfg.host}:${cfg.grpcPort}`, grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))),
);
const httpAddr = app.server.address();
const httpPort = typeof httpAddr === 'object' && httpAddr ? httpAddr.port : cfg.httpPort;
log.info({ httpPort, grpcPort, auth: cfg.authDisabled ? 'disabled' : 'api keys' }, 'ingest listening');
// One machine-readable line for launchers and tests that bind port 0.
if (process.env.JETFLOW_PRINT_PORTS === '1') process.stdout.write(`JETFLOW_PORTS ${JSON.stringify({ http: httpPort, grpc: grpcPort })}\n`);

let stopping = false;
const shutdown = async (sig: string) => {
  if (stopping) return;
  stopping = true;
  log.info({ sig }, 'draining');
  const t = setTimeout(() => process.exit(1), 10_000);
  grpcHealth.close();
  // Workers' tasks go back to the stream at once, and their streams end (they reconnect elsewhere).
  await door.close();
  await new Promise<void>((r) => grpcServer.tryShutdown(() => r()));
  await app.close();
  pub.close();
  tenantLoad.stop();
  workers.stop();
  definitions.live.stop();
  await nc.drain();
  storage.close();
  await obs.close();
  clearTimeout(t);
  process.exit(0);
};
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));
