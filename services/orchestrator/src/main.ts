import { CallbackPolicy, followDefinitions, taskSubjects } from '@jetflow/flows';
import { createLogger, reportError } from '@jetflow/logging';
import { BUCKETS, CONSUMERS, JetStreamPublisher, KvWriter, STREAMS, connectNats, openKv, partitionOf, provisionTopology, startPullLoop, type PullLoop } from '@jetflow/messaging';
import { loadConfig } from './config.js';
import { SagaEngine } from './engine.js';
import { FairAdmission } from './admission.js';
import { IngestLanes } from './ingest-lanes.js';
import { CallbackSender } from './callback.js';
import { PartitionLeases } from './leases.js';
import { DeadlineTimers } from './deadline-timers.js';
import { Scheduler } from './scheduler.js';
import { PausedDefinitions } from './paused-definitions.js';
import { startOrchestratorObservability } from './observability.js';
import { startOrchestratorStorage } from './storage.js';

const cfg = loadConfig();
const log = createLogger('orchestrator', cfg.logLevel);
process.on('unhandledRejection', (err) => reportError(log, err, { where: 'unhandledRejection' }));
// Tracing and metrics first: loops started later are traced.
const obs = await startOrchestratorObservability(cfg, log);

const registry = cfg.registry;
const defs = registry.defs;
const nc = await connectNats({ servers: cfg.natsServers, name: `orchestrator-${cfg.instanceId}`, log, auth: cfg.natsAuth });
await provisionTopology(nc, { partitions: cfg.partitions, taskSubjects: taskSubjects(defs), replicas: cfg.replicas, log });
const js = nc.jetstream();
// Saga state (read only on a cache miss) and leases are read from the stream leader: a replica's
// older revision would fail the compare-and-set that follows, again and again (see openKv).
const kv = await openKv(nc, BUCKETS.flows, { leader: true });
const pub = new JetStreamPublisher(nc);
const policy = new CallbackPolicy(cfg.callbackAllowlist);
// History (DynamoDB) and the NATS door's claim check (S3); neither is on the saga's hot path.
const storage = await startOrchestratorStorage(cfg, log);

const partitionLoops = new Map<number, PullLoop>();
const writer = new KvWriter(pub, BUCKETS.flows);
const definitions = await openKv(nc, BUCKETS.definitions, { leader: true });
// The file's definitions seeded into the store; from now on the newest version of each name (PUT /v1/flow-definitions) is followed there.
const live = await followDefinitions(definitions, registry, { log });
// Both read right after another writer's write (a claim, a cancel flag set before its control): from the leader.
const [idempotency, cancelFlags] = await Promise.all([openKv(nc, BUCKETS.idempotency, { leader: true }), openKv(nc, BUCKETS.cancel, { leader: true })]);
// Signal records, read right after ingest wrote them (before their control): from the leader.
const signals = await openKv(nc, BUCKETS.signals, { leader: true });
// Pause flags, read right after ingest set or deleted them: from the leader.
const pauses = await openKv(nc, BUCKETS.pauses, { leader: true });
// The pause flags, followed by a watch for the jetflow_paused gauge (a flow's start reads its definition's flag from the leader).
const pausedFlags = new PausedDefinitions(pauses, log);
// New flows start in weighted turns across tenants, within this replica's room and each tenant's in-flight limit.
const admission = new FairAdmission({
  maxRunning: cfg.maxRunningFlows,
  concurrency: cfg.concurrency,
  limits: cfg.tenantLimits,
  instance: cfg.instanceId,
  agingMs: cfg.priorityAgingMs,
  priorityLookahead: cfg.priorityLookahead,
  onChange: () => lanes.reportSoon(),
});
const lanes = new IngestLanes({ nc, admission, instanceId: cfg.instanceId, tenants: cfg.tenants, handle: (m) => startFlow(m), log });
// Finished flows' deadline timers leave the results stream when the flow ends, instead of coming back.
const timers = new DeadlineTimers(nc);
const engine = new SagaEngine({
  nc,
  kv,
  writer,
  pub,
  registry,
  definitions,
  idempotency,
  cancelFlags,
  signals,
  pauses,
  partitions: cfg.partitions,
  policy,
  log,
  onTerminal: (s) => {
    timers.ended(s.flowId);
    obs.flowEnded(s);
  },
  admission: lanes.hooks,
  ownsFlow: (id) => partitionLoops.has(partitionOf(id, cfg.partitions)),
  historyJobs: !!storage.history,
  maxTasksPerFlow: cfg.maxTasksPerFlow,
  inputRefPrefixes: cfg.storage.inputRefPrefixes ?? [],
  ...(storage.claimInput ? { claimInput: storage.claimInput } : {}),
  findDefinition: (name) => live.live.refresh(name),
});
const sender = new CallbackSender({
  nc,
  kv,
  writer,
  pub,
  policy,
  secrets: cfg.callbackSecrets,
  timeoutMs: cfg.callbackTimeoutMs,
  maxAttempts: cfg.callbackMaxAttempts,
  backoffInitialMs: cfg.callbackBackoffInitialMs,
  backoffMaxMs: cfg.callbackBackoffMaxMs,
  log,
  onAttempt: (outcome) => obs.callbackAttempt(outcome),
  ...(storage.history ? { history: storage.history } : {}),
});

const startFlow = obs.countIngest((m) => engine.handleIngest(m));
// Flows in flight come first: new flows are pulled only while this replica has room for them (admission).
await lanes.start();
const loops: PullLoop[] = [startPullLoop({ js, stream: STREAMS.callbacks, consumer: CONSUMERS.callbacks, concurrency: 64, mode: 'consume', handle: (m) => sender.handle(m), log })];
// Result partitions are owned through leases, so each flow has one writer across replicas.
const leases = new PartitionLeases({
  kv: await openKv(nc, BUCKETS.leases, { leader: true }),
  instanceId: cfg.instanceId,
  partitions: cfg.partitions,
  log,
  onAcquire: (p) => {
    log.info({ partition: p }, 'partition acquired');
    partitionLoops.set(
      p,
      startPullLoop({
        js,
        stream: STREAMS.results,
        consumer: CONSUMERS.results(p),
        concurrency: cfg.concurrency,
        mode: 'consume',
        handle: (m) => engine.handlePartition(timers.watch(m)),
        trace: { skip: obs.isControl },
        log,
      }),
    );
  },
  onRelease: async (p) => {
    const l = partitionLoops.get(p);
    partitionLoops.delete(p);
    await l?.stop();
    engine.releasePartition(p, (id) => partitionOf(id, cfg.partitions));
    timers.release((id) => partitionLoops.has(partitionOf(id, cfg.partitions)));
    log.info({ partition: p }, 'partition released');
  },
});
await leases.start();
// Cron schedules: every replica watches them; the owner of a schedule's partition fires it.
const scheduler = new Scheduler({
  schedules: await openKv(nc, BUCKETS.schedules, { leader: true }),
  flows: kv,
  idempotency,
  pub,
  owns: (key) => partitionLoops.has(partitionOf(key, cfg.partitions)),
  log,
});
await scheduler.start();
obs.watchConsumers(nc, cfg.partitions, () => lanes.consumers());
log.info({ partitions: cfg.partitions, owned: leases.owned(), instance: cfg.instanceId }, 'orchestrator started');

let stopping = false;
const shutdown = async (sig: string) => {
  if (stopping) return;
  stopping = true;
  log.info({ sig }, 'draining');
  const t = setTimeout(() => process.exit(1), cfg.graceMs + 2_000);
  await Promise.all([lanes.stop(), ...loops.map((l) => l.stop())]);
  await Promise.all([...partitionLoops.values()].map((l) => l.stop()));
  await engine.flushAll();
  engine.stop();
  scheduler.stop();
  await leases.stop();
  live.live.stop();
  pausedFlags.stop();
  pub.close();
  await nc.drain();
  storage.close();
  await obs.close();
  clearTimeout(t);
  log.info('stopped');
  process.exit(0);
};
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));
