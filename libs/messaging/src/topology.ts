import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  RetentionPolicy,
  StorageType,
  type ConsumerInfo,
  type JetStreamManager,
  type NatsConnection,
  type StreamConfig,
  type StreamInfo,
  type ConsumerConfig,
  nanos,
} from 'nats';
import type { Logger } from '@jetflow/logging';
import { JetStreamApiCodes as C, isJsError } from './js-errors.js';
import { retryTransient } from './transient.js';

/**
 * The JetStream topology: every stream, consumer and KV bucket name in one place.
 * These names are a deployment contract (KEDA scales on stream + consumer); deploy/ must use the same.
 */
export const SUBJECTS = {
  ingest: 'jetflow.ingest', // jetflow.ingest.<tenant>.<flow>: the NATS door, tenants publish here
  submit: 'jetflow.submit', // jetflow.submit.<tenant>.<flowId>: submissions the ingest service validated; no tenant may publish here
  task: 'jetflow.task', // jetflow.task.<kind>.<name>
  result: 'jetflow.result', // jetflow.result.<partition>.<flowId>
  callback: 'jetflow.callback', // jetflow.callback.<tenant>
  event: 'jetflow.event', // jetflow.event.<tenant>.<flowId>
  dlq: 'jetflow.dlq', // jetflow.dlq.<source>.<...original tokens>
  admission: 'jetflow.admission', // jetflow.admission.load / .ended: orchestrator replicas' admission counts (core NATS, no stream)
} as const;

export const STREAMS = {
  ingest: 'JETFLOW_INGEST',
  tasks: 'JETFLOW_TASKS',
  results: 'JETFLOW_RESULTS',
  callbacks: 'JETFLOW_CALLBACKS',
  events: 'JETFLOW_EVENTS',
  dlq: 'JETFLOW_DLQ',
} as const;

export const CONSUMERS = {
  /**
   * Per tenant on the ingest stream, one for each of its subject families (every subject there has the tenant
   * as its third token; nats-server 2.9 takes no `jetflow.*.<tenant>.>` filter there), so a tenant's backlog
   * never queues another's: the orchestrator pulls them in weighted turns (services/orchestrator admission.ts).
   */
  ingest: (tenant: string) => `${INGEST_CONSUMER_PREFIXES.ingest}${tenant}`,
  submit: (tenant: string) => `${INGEST_CONSUMER_PREFIXES.submit}${tenant}`,
  callbacks: 'callback-sender',
  /** One per result partition. */
  results: (p: number) => `orchestrator-p${p}`,
  /** One per task subject: jetflow.task.dataset.text -> task-dataset-text. */
  task: (subject: string) => `task-${subject.slice(SUBJECTS.task.length + 1).replace(/\./g, '-')}`,
  /**
   * A task subject's consumer for one priority band: the normal band's is the subject's own (task-…), the
   * others taskhigh-… and tasklow-… (no task subject's consumer starts so: they all start with task-).
   */
  taskBand: (subject: string, band: PriorityBand) => (band === 'normal' ? CONSUMERS.task(subject) : `task${band}-${subject.slice(SUBJECTS.task.length + 1).replace(/\./g, '-')}`),
  /** Every consumer of a task subject: its bands, high first. */
  taskAll: (subject: string) => PRIORITY_BANDS.map((b) => CONSUMERS.taskBand(subject, b)),
} as const;

/**
 * Priority bands of the task stream (README, "Priorities"; docs/WORKERS.md, "Priority bands"). A task of
 * priority 8..10 is published on `<subject>.high`, 1..3 on `<subject>.low`, the rest (the default 5, and
 * every task from before priorities) on the subject itself; each has its consumer (CONSUMERS.taskBand), and
 * the worker runtime hands its free slots to the bands with a backlog in weighted turns (BAND_WEIGHTS).
 */
export const PRIORITY_BANDS = ['high', 'normal', 'low'] as const;
export type PriorityBand = (typeof PRIORITY_BANDS)[number];
/** Turns per round while every band has a backlog: high 6, normal 3, low 1 (bands.ts). */
export const BAND_WEIGHTS: Readonly<Record<PriorityBand, number>> = { high: 6, normal: 3, low: 1 };
/** A priority's band: 8..10 high, 1..3 low, anything else (4..7, 0 for none) normal. */
export const bandOf = (priority: number): PriorityBand => (priority >= 8 && priority <= 10 ? 'high' : priority >= 1 && priority <= 3 ? 'low' : 'normal');
/** The subject a task of `subject` is published on in `band`. */
export const bandSubject = (subject: string, band: PriorityBand): string => (band === 'normal' ? subject : `${subject}.${band}`);
/** The task subject a delivered message belongs to (jetflow.task.<kind>.<name>, without its band's token). */
export const baseTaskSubject = (subject: string): string => {
  const tokens = subject.split('.');
  return tokens.length === 5 && (tokens[4] === 'high' || tokens[4] === 'low') ? tokens.slice(0, 4).join('.') : subject;
};

/** The ingest stream's subject families (jetflow.<family>.<tenant>.…) and the prefix of their per-tenant consumers. */
export const INGEST_CONSUMER_PREFIXES = { ingest: 'orchestrator-ingest-', submit: 'orchestrator-submit-' } as const;
/** The single ingest consumer of earlier versions: a work-queue stream refuses filtered consumers beside it. */
export const LEGACY_INGEST_CONSUMER = 'orchestrator-ingest';

/** A tenant's consumers on the ingest stream: the NATS door's subjects and the ingest service's; made by the orchestrator. */
export function ingestConsumerConfigs(tenant: string): Array<Partial<ConsumerConfig> & { durable_name: string }> {
  const common = { ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All, ack_wait: nanos(5_000), max_ack_pending: 2_000, max_deliver: -1 };
  return [
    { ...common, durable_name: CONSUMERS.ingest(tenant), filter_subject: `${SUBJECTS.ingest}.${tenant}.>` },
    { ...common, durable_name: CONSUMERS.submit(tenant), filter_subject: `${SUBJECTS.submit}.${tenant}.>` },
  ];
}

/** The tenant a per-tenant ingest-stream consumer is for (undefined for any other consumer name). */
export function tenantOfIngestConsumer(name: string): string | undefined {
  for (const prefix of Object.values(INGEST_CONSUMER_PREFIXES)) if (name.startsWith(prefix)) return name.slice(prefix.length) || undefined;
  return undefined;
}

export const BUCKETS = {
  flows: 'jetflow_flows',
  idempotency: 'jetflow_idempotency',
  cancel: 'jetflow_cancel',
  leases: 'jetflow_leases',
  cache: 'jetflow_cache',
  /** Every flow definition a flow started on, `<name>.v<version>.<hash>`; never expires (libs/flows versions.ts). */
  definitions: 'jetflow_definitions',
  /** The worker registry: `<worker name>.<instance>` → what it serves, renewed every few seconds (worker-registry.ts). */
  workers: 'jetflow_workers',
  /** Cron schedules, `<tenant>.<schedule id>`; written by ingest, fired by the orchestrator owning their partition; never expire. */
  schedules: 'jetflow_schedules',
  /** Signals to flows, `<flowId>.<signal>.<signal id>` → payload: written by ingest before the control goes out, read by the orchestrator (a control without its record is refused). */
  signals: 'jetflow_signals',
  /** Pause flags, `flow.<flowId>`: set and deleted by ingest's pause API, read by the orchestrator (a pause control applies what the flag says). */
  pauses: 'jetflow_pauses',
  /** Concurrency leases and rate-limit start times of tasks by key (task-limiter.ts); an hour without a write removes a key. */
  limits: 'jetflow_limits',
} as const;

/** Max age of a worker registry entry: one not renewed for this long (its worker was killed) is removed. */
export const WORKER_REGISTRY_TTL_MS = 30_000;

export interface TopologyOptions {
  /** Number of result partitions (fixed per deployment: changing it needs a drain). */
  partitions: number;
  /** Task subjects to create consumers for (from the flow definitions). */
  taskSubjects: string[];
  /** Copies of every stream and KV bucket (JETFLOW_REPLICAS); consumers follow their stream. Default 1. */
  replicas?: number;
  /** Told when provisioning changes an existing stream or bucket (e.g. its replica count) or retries a step. */
  log?: Pick<Logger, 'info' | 'warn'>;
  /** How long provisioning keeps retrying steps JetStream did not answer in time (default 60 s). */
  provisionTimeoutMs?: number;
  /**
   * Dedupe window of the ingest stream (default 100 ms, the least nats-server takes). Idempotency of
   * submissions is the claim in KV jetflow_idempotency, for every door: the orchestrator must see a
   * NATS-door message that reuses a Nats-Msg-Id with another body, which a longer window would swallow
   * with no more than `duplicate: true` in its PubAck.
   */
  ingestDuplicateWindowMs?: number;
  /** Dedupe window of internal streams: must cover the longest replay gap after a crash. */
  duplicateWindowMs?: number;
  flowStateTtlMs?: number;
  taskAckWaitMs?: number;
  taskMaxAckPending?: number;
}

export const DEFAULT_PARTITIONS = 8;

export function partitionOf(flowId: string, partitions: number): number {
  // FNV-1a: cheap, stable across processes and languages.
  let h = 0x811c9dc5;
  for (let i = 0; i < flowId.length; i++) {
    h ^= flowId.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % partitions;
}

export const resultSubject = (partitions: number, flowId: string) => `${SUBJECTS.result}.${partitionOf(flowId, partitions)}.${flowId}`;
export const eventSubject = (tenant: string, flowId: string) => `${SUBJECTS.event}.${tenant}.${flowId}`;
export const callbackSubject = (tenant: string) => `${SUBJECTS.callback}.${tenant}`;
export const ingestSubject = (tenant: string, flow: string) => `${SUBJECTS.ingest}.${tenant}.${flow}`;
export const submitSubject = (tenant: string, flowId: string) => `${SUBJECTS.submit}.${tenant}.${flowId}`;
/** Dead letters keep the original subject below jetflow.dlq.<source>. */
export const dlqSubject = (source: string, original: string) => `${SUBJECTS.dlq}.${source}.${original}`;

export function streamConfigs(o: TopologyOptions): Array<Partial<StreamConfig> & { name: string; subjects: string[] }> {
  const replicas = o.replicas ?? 1;
  const dup = nanos(o.duplicateWindowMs ?? 120_000);
  const base = { storage: StorageType.File, num_replicas: replicas, discard: DiscardPolicy.Old };
  return [
    {
      ...base,
      name: STREAMS.ingest,
      subjects: [`${SUBJECTS.ingest}.>`, `${SUBJECTS.submit}.>`],
      retention: RetentionPolicy.Workqueue,
      duplicate_window: nanos(o.ingestDuplicateWindowMs ?? 100),
      discard: DiscardPolicy.New,
      max_bytes: 4 * 1024 ** 3,
    },
    { ...base, name: STREAMS.tasks, subjects: [`${SUBJECTS.task}.>`], retention: RetentionPolicy.Workqueue, duplicate_window: dup },
    { ...base, name: STREAMS.results, subjects: [`${SUBJECTS.result}.>`], retention: RetentionPolicy.Workqueue, duplicate_window: dup },
    { ...base, name: STREAMS.callbacks, subjects: [`${SUBJECTS.callback}.>`], retention: RetentionPolicy.Workqueue, duplicate_window: dup },
    { ...base, name: STREAMS.events, subjects: [`${SUBJECTS.event}.>`], retention: RetentionPolicy.Limits, max_age: nanos(3_600_000), max_bytes: 1024 ** 3, duplicate_window: nanos(1_000) },
    { ...base, name: STREAMS.dlq, subjects: [`${SUBJECTS.dlq}.>`], retention: RetentionPolicy.Limits, max_age: nanos(14 * 86_400_000), duplicate_window: dup },
  ];
}

export function consumerConfigs(o: TopologyOptions): Array<{ stream: string; config: Partial<ConsumerConfig> & { durable_name: string } }> {
  const out: Array<{ stream: string; config: Partial<ConsumerConfig> & { durable_name: string } }> = [];
  const common = { ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All };
  // The ingest stream's consumers are per tenant, made by the orchestrator (ingestConsumerConfigs).
  for (let p = 0; p < o.partitions; p++) {
    // max_deliver -1: deadline timers are redelivered by delayed nak until due; poison is handled by the router.
    out.push({
      stream: STREAMS.results,
      config: { ...common, durable_name: CONSUMERS.results(p), filter_subject: `${SUBJECTS.result}.${p}.>`, ack_wait: nanos(5_000), max_ack_pending: 50_000, max_deliver: -1 },
    });
  }
  out.push({ stream: STREAMS.callbacks, config: { ...common, durable_name: CONSUMERS.callbacks, ack_wait: nanos(10_000), max_ack_pending: 1_000, max_deliver: -1 } });
  // A subject's consumer may be made long after its first tasks (a flow registered while running, its worker
  // started later): the work-queue stream keeps them, and deliver_policy all hands them to the new consumer.
  // Each subject has one per priority band (high and low on <subject>.high / .low: no overlap in a work queue).
  for (const s of o.taskSubjects) {
    for (const band of PRIORITY_BANDS)
      out.push({
        stream: STREAMS.tasks,
        config: {
          ...common,
          durable_name: CONSUMERS.taskBand(s, band),
          filter_subject: bandSubject(s, band),
          ack_wait: nanos(o.taskAckWaitMs ?? 5_000),
          max_ack_pending: o.taskMaxAckPending ?? 1_000,
          max_deliver: -1,
        },
      });
  }
  return out;
}

export function bucketConfigs(o: TopologyOptions) {
  const replicas = o.replicas ?? 1;
  return [
    { name: BUCKETS.flows, ttl: o.flowStateTtlMs ?? 24 * 3_600_000, history: 1, replicas },
    { name: BUCKETS.idempotency, ttl: 24 * 3_600_000, history: 1, replicas },
    { name: BUCKETS.cancel, ttl: 3_600_000, history: 1, replicas },
    { name: BUCKETS.leases, ttl: 6_000, history: 1, replicas },
    { name: BUCKETS.cache, ttl: 300_000, history: 1, replicas },
    { name: BUCKETS.definitions, ttl: 0, history: 1, replicas },
    { name: BUCKETS.workers, ttl: WORKER_REGISTRY_TTL_MS, history: 1, replicas },
    { name: BUCKETS.schedules, ttl: 0, history: 1, replicas },
    { name: BUCKETS.signals, ttl: o.flowStateTtlMs ?? 24 * 3_600_000, history: 1, replicas },
    { name: BUCKETS.pauses, ttl: o.flowStateTtlMs ?? 24 * 3_600_000, history: 1, replicas },
    { name: BUCKETS.limits, ttl: 3_600_000, history: 1, replicas },
  ];
}

// What JetStream answers a create when another service created the same thing a moment before (or
// holds the name with an older config): not a failure, the object is there; re-read it and reconcile.
const STREAM_TAKEN = [C.StreamNameInUse, C.StreamSubjectOverlap];
const CONSUMER_TAKEN = [C.ConsumerNameExists, C.ConsumerAlreadyExists, C.ConsumerExistingActive, C.ConsumerWQConsumerNotUnique];

/** Another service created it, but this server cannot show it yet (a cluster catching up): the step tries again. */
class NotVisibleYet extends Error {
  readonly notVisibleYet = true;
}
const isNotVisibleYet = (err: unknown) => (err as { notVisibleYet?: unknown } | null)?.notVisibleYet === true;
const notVisibleYet = (what: string, err: unknown) => new NotVisibleYet(`${what}: JetStream answered "${(err as Error).message}", but it cannot be read yet`, { cause: err });

async function streamInfo(jsm: JetStreamManager, name: string): Promise<StreamInfo | undefined> {
  try {
    return await jsm.streams.info(name);
  } catch (err) {
    if (isJsError(err, C.StreamNotFound)) return undefined;
    throw err;
  }
}

/** Creates the stream, or updates in place what may change on one that exists (however it came to exist). */
async function ensureStream(jsm: JetStreamManager, cfg: Partial<StreamConfig> & { name: string; subjects: string[] }, log?: Pick<Logger, 'info'>) {
  let info = await streamInfo(jsm, cfg.name);
  if (!info) {
    try {
      await jsm.streams.add(cfg);
      return;
    } catch (err) {
      if (!isJsError(err, ...STREAM_TAKEN)) throw err;
      info = await streamInfo(jsm, cfg.name);
      if (!info) {
        const owner = isJsError(err, C.StreamSubjectOverlap) ? await otherStreamOwning(jsm, cfg) : undefined;
        if (owner)
          throw new Error(`stream ${cfg.name}: its subjects ${cfg.subjects.join(', ')} overlap with those of stream ${owner}, which is not Jetflow's; remove or rename it`, { cause: err });
        throw notVisibleYet(`stream ${cfg.name}`, err);
      }
    }
  }
  // Update only what may change in place; retention and storage cannot.
  const cur = info.config;
  const changed =
    JSON.stringify(cur.subjects) !== JSON.stringify(cfg.subjects) ||
    (cfg.max_age !== undefined && cur.max_age !== cfg.max_age) ||
    (cfg.duplicate_window !== undefined && cur.duplicate_window !== cfg.duplicate_window);
  const replicas = replicasDiffer(cur, cfg);
  if (replicas) logReplicas(log, cfg.name, cur.num_replicas, cfg.num_replicas!);
  if (changed || replicas) await jsm.streams.update(cfg.name, { ...cur, ...cfg });
}

/** A stream of another name whose subjects overlap cfg's, if any (undefined when it cannot be told). */
async function otherStreamOwning(jsm: JetStreamManager, cfg: { name: string; subjects: string[] }): Promise<string | undefined> {
  try {
    for (const subject of cfg.subjects) {
      for await (const name of jsm.streams.names(subject)) if (name !== cfg.name) return name;
    }
  } catch {
    // Not every identity may list streams (STREAM.NAMES): then the retries and their deadline decide.
  }
  return undefined;
}

async function consumerInfo(jsm: JetStreamManager, stream: string, name: string): Promise<ConsumerInfo | undefined> {
  try {
    return await jsm.consumers.info(stream, name);
  } catch (err) {
    if (isJsError(err, C.ConsumerNotFound)) return undefined;
    // Provisioned just before: on a cluster, this server may not show another service's new stream yet.
    if (isJsError(err, C.StreamNotFound)) throw notVisibleYet(`stream ${stream}`, err);
    throw err;
  }
}

export async function ensureConsumer(jsm: JetStreamManager, stream: string, cfg: Partial<ConsumerConfig> & { durable_name: string }) {
  let info = await consumerInfo(jsm, stream, cfg.durable_name);
  if (!info) {
    try {
      await jsm.consumers.add(stream, cfg);
      return;
    } catch (err) {
      if (isJsError(err, C.StreamNotFound)) throw notVisibleYet(`stream ${stream}`, err);
      if (!isJsError(err, ...CONSUMER_TAKEN)) throw err;
      info = await consumerInfo(jsm, stream, cfg.durable_name);
      if (!info) throw notVisibleYet(`consumer ${stream}/${cfg.durable_name}`, err);
    }
  }
  const cur = info.config;
  if (cur.ack_wait !== cfg.ack_wait || cur.max_ack_pending !== cfg.max_ack_pending) {
    await jsm.consumers.update(stream, cfg.durable_name, { ack_wait: cfg.ack_wait, max_ack_pending: cfg.max_ack_pending });
  }
}

/** Opens (creating if needed) a KV bucket and sets its replica count in place. */
async function ensureBucket(nc: NatsConnection, jsm: JetStreamManager, b: ReturnType<typeof bucketConfigs>[number], log?: Pick<Logger, 'info'>) {
  const stream = `KV_${b.name}`;
  try {
    await nc.jetstream().views.kv(b.name, { ttl: b.ttl, history: b.history, replicas: b.replicas });
  } catch (err) {
    // The client read "no such bucket", then another service created it before our create.
    if (!isJsError(err, ...STREAM_TAKEN)) throw err;
  }
  // Opening an existing bucket leaves its replica count alone: change it on the bucket's stream.
  const info = await streamInfo(jsm, stream);
  if (!info) throw new NotVisibleYet(`bucket ${b.name}: created, but its stream ${stream} cannot be read yet`);
  const cur = info.config;
  if (replicasDiffer(cur, { num_replicas: b.replicas })) {
    logReplicas(log, stream, cur.num_replicas, b.replicas);
    await jsm.streams.update(stream, { ...cur, num_replicas: b.replicas });
  }
}

/**
 * Idempotently provisions every stream, consumer and bucket. Any service may call it at start, and all
 * of them may at the same moment: whatever another one created first counts as created.
 */
export async function provisionTopology(nc: NatsConnection, o: TopologyOptions): Promise<void> {
  const jsm = await nc.jetstreamManager();
  // Each step is idempotent, so a step that failed on a busy or re-electing cluster (creating
  // replicated consumers while every service starts can take longer than a request's timeout) is
  // simply tried again, instead of the service dying at start.
  const until = Date.now() + (o.provisionTimeoutMs ?? 60_000);
  // Besides timeouts: on a cluster a stream or consumer another service has just created is not
  // readable on every server at once; the next try sees it.
  const step = <T>(what: string, fn: () => Promise<T>) => retryTransient(fn, { until, what: `provisioning ${what}`, ...(o.log ? { log: o.log } : {}), also: isNotVisibleYet });
  try {
    for (const s of streamConfigs(o)) await step(`stream ${s.name}`, () => ensureStream(jsm, s, o.log));
    await Promise.all(consumerConfigs(o).map((c) => step(`consumer ${c.stream}/${c.config.durable_name}`, () => ensureConsumer(jsm, c.stream, c.config))));
    for (const b of bucketConfigs(o)) await step(`bucket ${b.name}`, () => ensureBucket(nc, jsm, b, o.log));
  } catch (err) {
    if ((o.replicas ?? 1) > 1 && isJsError(err, C.InsufficientResources, C.ClusterNoPeers, C.StreamReplicasNotSupported)) {
      throw new Error(`${(err as Error).message} (replicas ${o.replicas}: JETFLOW_REPLICAS needs a JetStream cluster with at least that many servers up)`, { cause: err });
    }
    throw err;
  }
}

const replicasDiffer = (cur: Partial<StreamConfig>, want: Partial<StreamConfig>) => want.num_replicas !== undefined && (cur.num_replicas || 1) !== want.num_replicas;

function logReplicas(log: Pick<Logger, 'info'> | undefined, stream: string, from: number | undefined, to: number) {
  // JetStream moves the data itself (new copies catch up from the leader); the stream stays available.
  log?.info({ stream, from: from || 1, to }, 'changing the replica count of a stream');
}

/** Content type of a FlowRequest published by the ingest service (already validated); taken only on SUBJECTS.submit. */
export const INGEST_CONTENT_TYPE = 'application/x-jetflow-flow-request';
