import { AckPolicy, DeliverPolicy, DiscardPolicy, RetentionPolicy, StorageType, type JetStreamManager, type NatsConnection, type StreamConfig, type ConsumerConfig, nanos } from 'nats';
import type { Logger } from '../../logging/src/index.js';
import { retryTransient } from './transient.js';

/**
 * The JetStream topology: every stream, consumer and KV bucket name in one place.
 * These names are a deployment contract (KEDA scales on stream + consumer); deploy/ must use the same.
 */
export const SUBJECTS = {
  ingest: 'jetflow.ingest', // jetflow.ingest.<tenant>.<flow>
  task: 'jetflow.task', // jetflow.task.<kind>.<name>
  result: 'jetflow.result', // jetflow.result.<partition>.<flowId>
  callback: 'jetflow.callback', // jetflow.callback.<tenant>
  event: 'jetflow.event', // jetflow.event.<tenant>.<flowId>
  dlq: 'jetflow.dlq', // jetflow.dlq.<source>.<...original tokens>
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
  ingest: 'orchestrator-ingest',
  callbacks: 'callback-sender',
  /** One per result partition. */
  results: (p: number) => `orchestrator-p${p}`,
  /** One per task subject: jetflow.task.dataset.text -> task-dataset-text. */
  task: (subject: string) => `task-${subject.slice(SUBJECTS.task.length + 1).replace(/\./g, '-')}`,
} as const;

export const BUCKETS = {
  flows: 'jetflow_flows',
  idempotency: 'jetflow_idempotency',
  cancel: 'jetflow_cancel',
  leases: 'jetflow_leases',
  cache: 'jetflow_cache',
} as const;

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
  /** Dedupe window of the ingest stream: how long a Nats-Msg-Id / idempotency key is remembered. */
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
/** Dead letters keep the original subject below jetflow.dlq.<source>. */
export const dlqSubject = (source: string, original: string) => `${SUBJECTS.dlq}.${source}.${original}`;

export function streamConfigs(o: TopologyOptions): Array<Partial<StreamConfig> & { name: string; subjects: string[] }> {
  const replicas = o.replicas ?? 1;
  const dup = nanos(o.duplicateWindowMs ?? 120_000);
  const base = { storage: StorageType.File, num_replicas: replicas, discard: DiscardPolicy.Old };
  return [
    { ...base, name: STREAMS.ingest, subjects: [`${SUBJECTS.ingest}.>`], retention: RetentionPolicy.Workqueue, duplicate_window: nanos(o.ingestDuplicateWindowMs ?? 600_000), discard: DiscardPolicy.New, max_bytes: 4 * 1024 ** 3 },
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
  out.push({ stream: STREAMS.ingest, config: { ...common, durable_name: CONSUMERS.ingest, ack_wait: nanos(5_000), max_ack_pending: 2_000, max_deliver: -1 } });
  for (let p = 0; p < o.partitions; p++) {
    // max_deliver -1: deadline timers are redelivered by delayed nak until due; poison is handled by the router.
    out.push({ stream: STREAMS.results, config: { ...common, durable_name: CONSUMERS.results(p), filter_subject: `${SUBJECTS.result}.${p}.>`, ack_wait: nanos(5_000), max_ack_pending: 50_000, max_deliver: -1 } });
  }
  out.push({ stream: STREAMS.callbacks, config: { ...common, durable_name: CONSUMERS.callbacks, ack_wait: nanos(10_000), max_ack_pending: 1_000, max_deliver: -1 } });
  for (const s of o.taskSubjects) {
    out.push({
      stream: STREAMS.tasks,
      config: { ...common, durable_name: CONSUMERS.task(s), filter_subject: s, ack_wait: nanos(o.taskAckWaitMs ?? 5_000), max_ack_pending: o.taskMaxAckPending ?? 1_000, max_deliver: -1 },
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
  ];
}

async function ensureStream(jsm: JetStreamManager, cfg: Partial<StreamConfig> & { name: string; subjects: string[] }, log?: Pick<Logger, 'info'>) {
  try {
    const info = await jsm.streams.info(cfg.name);
    // Update only what may change in place; retention and storage cannot.
    const cur = info.config;
    const changed = JSON.stringify(cur.subjects) !== JSON.stringify(cfg.subjects) || (cfg.max_age !== undefined && cur.max_age !== cfg.max_age) || (cfg.duplicate_window !== undefined && cur.duplicate_window !== cfg.duplicate_window);
    const replicas = replicasDiffer(cur, cfg);
    if (replicas) logReplicas(log, cfg.name, cur.num_replicas, cfg.num_replicas!);
    if (changed || replicas) await jsm.streams.update(cfg.name, { ...cur, ...cfg } as StreamConfig);
  } catch (err) {
    if ((err as { code?: string }).code !== '404' && !/stream not found/i.test(String((err as Error).message))) throw err;
    try {
      await jsm.streams.add(cfg);
    } catch (e) {
      // Another service created it at the same moment.
      if (!/already in use|exists/i.test(String((e as Error).message))) throw e;
    }
  }
}

async function ensureConsumer(jsm: JetStreamManager, stream: string, cfg: Partial<ConsumerConfig> & { durable_name: string }) {
  try {
    const info = await jsm.consumers.info(stream, cfg.durable_name);
    const cur = info.config;
    if (cur.ack_wait !== cfg.ack_wait || cur.max_ack_pending !== cfg.max_ack_pending) {
      await jsm.consumers.update(stream, cfg.durable_name, { ack_wait: cfg.ack_wait, max_ack_pending: cfg.max_ack_pending });
    }
  } catch (err) {
    if (!/consumer not found/i.test(String((err as Error).message))) throw err;
    try {
      await jsm.consumers.add(stream, cfg);
    } catch (e) {
      if (!/already in use|exists/i.test(String((e as Error).message))) throw e;
    }
  }
}

/** Idempotently provisions every stream, consumer and bucket. Any service may call it at start. */
export async function provisionTopology(nc: NatsConnection, o: TopologyOptions): Promise<void> {
  const jsm = await nc.jetstreamManager();
  // Each step is idempotent, so a step that failed on a busy or re-electing cluster (creating
  // replicated consumers while every service starts can take longer than a request's timeout) is
  // simply tried again, instead of the service dying at start.
  const until = Date.now() + (o.provisionTimeoutMs ?? 60_000);
  // Besides timeouts: on a cluster a stream another service has just created is not visible on every
  // server at once ("stream not found", "already in use"): the next try sees it.
  const step = <T>(what: string, fn: () => Promise<T>) => retryTransient(fn, { until, what: `provisioning ${what}`, ...(o.log ? { log: o.log } : {}), also: /stream not found|already in use/i });
  try {
    for (const s of streamConfigs(o)) await step(`stream ${s.name}`, () => ensureStream(jsm, s, o.log));
    await Promise.all(consumerConfigs(o).map((c) => step(`consumer ${c.stream}/${c.config.durable_name}`, () => ensureConsumer(jsm, c.stream, c.config))));
    const js = nc.jetstream();
    for (const b of bucketConfigs(o)) {
      await step(`bucket ${b.name}`, async () => {
        await js.views.kv(b.name, { ttl: b.ttl, history: b.history, replicas: b.replicas });
        // Opening an existing bucket leaves its replica count alone: change it on the bucket's stream.
        const stream = `KV_${b.name}`;
        const cur = (await jsm.streams.info(stream)).config;
        if (replicasDiffer(cur, { num_replicas: b.replicas })) {
          logReplicas(o.log, stream, cur.num_replicas, b.replicas);
          await jsm.streams.update(stream, { ...cur, num_replicas: b.replicas });
        }
      });
    }
  } catch (err) {
    if ((o.replicas ?? 1) > 1 && /replicas|insufficient resources|no suitable peers/i.test((err as Error).message)) {
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

/** Content type of a FlowRequest published by the ingest service (already validated). */
export const INGEST_CONTENT_TYPE = 'application/x-jetflow-flow-request';
