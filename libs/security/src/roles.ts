import { RetentionPolicy } from 'nats';
import { ID_RULES, subjectMatches } from '@jetflow/flows';
import { ADMISSION_SUBJECTS, BUCKETS, CONSUMERS, LEGACY_INGEST_CONSUMER, STREAMS, SUBJECTS, consumerConfigs, streamConfigs } from '@jetflow/messaging';
import {
  accountInfo,
  consume,
  consumeAny,
  getMessages,
  inbox,
  kvRead,
  kvWrite,
  listConsumers,
  merge,
  provisionConsumer,
  provisionStream,
  publish,
  readStream,
  subscribe,
  type Grant,
} from './grants.js';

/** The roles of Jetflow's own processes, plus the operator (CLI, admin tools). */
export const SERVICE_ROLES = ['ingest', 'orchestrator', 'dataset-generator', 'analyst', 'operator'] as const;
export type ServiceRole = (typeof SERVICE_ROLES)[number];
/** A service role, an outside worker (`worker:<name>`) or a tenant's NATS door (`tenant:<name>`). */
export type Role = ServiceRole | `worker:${string}` | `tenant:${string}`;

/** The account every Jetflow stream, bucket and service lives in (JetStream is enabled only there). */
export const JETFLOW_ACCOUNT = 'JETFLOW';
/** Each tenant is an account of its own, which imports only its own ingest subjects from JETFLOW. */
export const tenantAccount = (tenant: string) => `TENANT_${tenant}`;

/** Task subject patterns the built-in workers serve when their JETFLOW_TASK_SUBJECTS is unset. */
export const DEFAULT_SERVES = { 'dataset-generator': [`${SUBJECTS.task}.dataset.>`], analyst: [`${SUBJECTS.task}.analyst.>`] } as const;

export interface SecurityInput {
  /** Result partitions (JETFLOW_PARTITIONS): one durable consumer each. */
  partitions: number;
  /** Every task subject of the flow definitions (`taskSubjects(registry.defs)`). */
  taskSubjects: readonly string[];
  /** Tenants that get a NATS identity of their own (the NATS door). */
  tenants: readonly string[];
  /** Task subject patterns each built-in worker serves (its JETFLOW_TASK_SUBJECTS); default DEFAULT_SERVES. */
  serves?: Partial<Record<'dataset-generator' | 'analyst', readonly string[]>>;
  /** Outside workers: name → the task subject patterns it serves. */
  workers?: Readonly<Record<string, readonly string[]>>;
}

export interface Permissions {
  publish: { allow: string[]; deny: string[] };
  subscribe: { allow: string[]; deny: string[] };
}

export interface Identity {
  role: Role;
  /** The NATS user name. */
  user: string;
  account: string;
  /** The client's inbox prefix (nats.js `inboxPrefix`): replies come only to `<prefix>.>`. */
  inboxPrefix: string;
  permissions: Permissions;
  /** The task consumers a worker identity pulls from. */
  serves?: string[];
}

export class SecurityInputError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
    this.name = 'SecurityInputError';
  }
}

// The tenant rule of every door (libs/flows ids.ts): names become subject tokens and user names.
const NAME = ID_RULES.tenant.re;
const TASK_SUBJECT = /^jetflow\.task\.[a-z0-9_-]+\.[a-z0-9_-]+$/;
const TOKEN = /^([a-z0-9_-]+|\*|>)$/;

/** Service identities reply to `_INBOX.<user>.…`; none may read another's (KV gets carry flow state). */
export const inboxPrefixOf = (user: string) => `_INBOX.${user}`;

/**
 * Every identity the deployment needs, with its permissions, derived from the roles, the topology
 * (libs/messaging: subjects, streams, consumers, buckets) and the tenant list. Pure: no secrets here.
 */
export function deriveIdentities(input: SecurityInput): Identity[] {
  const t = checkInput(input);
  const out: Identity[] = [];
  for (const role of SERVICE_ROLES) {
    const i = identity(role, role, JETFLOW_ACCOUNT, inboxPrefixOf(role), grantsFor(role, t));
    if (role === 'dataset-generator' || role === 'analyst') i.serves = t.serves[role].flatMap(CONSUMERS.taskAll);
    out.push(i);
  }
  for (const [name, patterns] of Object.entries(input.workers ?? {})) {
    const user = `worker-${name}`;
    const served = servedBy(`workers.${name}`, patterns, t.taskSubjects);
    out.push({
      ...identity(`worker:${name}`, user, JETFLOW_ACCOUNT, inboxPrefixOf(user), workerGrants(inboxPrefixOf(user), served, t, { provision: false, cache: false, name })),
      serves: served.flatMap(CONSUMERS.taskAll),
    });
  }
  for (const tenant of input.tenants) {
    // A tenant's account has no JetStream and nothing else in it, so its default inboxes are private.
    out.push(identity(`tenant:${tenant}`, `tenant-${tenant}`, tenantAccount(tenant), '_INBOX', [publish(`${SUBJECTS.ingest}.${tenant}.>`), inbox('_INBOX')]));
  }
  return out;
}

interface Topology {
  taskSubjects: string[];
  partitions: number;
  /** Durable consumer names by stream. */
  durables: Map<string, string[]>;
  /** Every stream: Jetflow's and the KV buckets'. */
  streams: Array<{ name: string; workqueue: boolean }>;
  /** The task subjects each built-in worker serves. */
  serves: Record<'dataset-generator' | 'analyst', string[]>;
}

function checkInput(input: SecurityInput): Topology {
  if (!Number.isInteger(input.partitions) || input.partitions < 1 || input.partitions > 256)
    throw new SecurityInputError('partitions', `must be an integer from 1 to 256, got ${input.partitions}`);
  for (const s of input.taskSubjects) if (!TASK_SUBJECT.test(s)) throw new SecurityInputError('taskSubjects', `"${s}" is not a task subject (jetflow.task.<kind>.<name>)`);
  const seen = new Set<string>();
  for (const tenant of input.tenants) {
    if (!NAME.test(tenant)) throw new SecurityInputError('tenants', `invalid tenant name "${tenant}" (lowercase letters, digits, - and _, at most 63)`);
    if (seen.has(tenant)) throw new SecurityInputError('tenants', `tenant "${tenant}" is listed twice`);
    seen.add(tenant);
  }
  for (const name of Object.keys(input.workers ?? {}))
    if (!NAME.test(name)) throw new SecurityInputError('workers', `invalid worker name "${name}" (lowercase letters, digits, - and _, at most 63)`);
  const taskSubjects = [...new Set(input.taskSubjects)];
  const topo = { partitions: input.partitions, taskSubjects };
  const durables = new Map<string, string[]>();
  for (const c of consumerConfigs(topo)) durables.set(c.stream, [...(durables.get(c.stream) ?? []), c.config.durable_name]);
  const streams = [
    ...streamConfigs(topo).map((s) => ({ name: s.name, workqueue: s.retention === RetentionPolicy.Workqueue })),
    ...Object.values(BUCKETS).map((b) => ({ name: `KV_${b}`, workqueue: false })),
  ];
  const serves = {
    'dataset-generator': servedBy('serves.dataset-generator', input.serves?.['dataset-generator'] ?? DEFAULT_SERVES['dataset-generator'], taskSubjects),
    analyst: servedBy('serves.analyst', input.serves?.analyst ?? DEFAULT_SERVES.analyst, taskSubjects),
  };
  return { taskSubjects, partitions: input.partitions, durables, streams, serves };
}

/** The task subjects a worker's patterns match; a pattern outside jetflow.task or matching nothing is an error. */
function servedBy(field: string, patterns: readonly string[], subjects: string[]): string[] {
  if (!patterns.length) throw new SecurityInputError(field, 'no task subject patterns');
  for (const p of patterns) {
    const tokens = p.split('.');
    if (!p.startsWith(`${SUBJECTS.task}.`) || tokens.some((x) => !TOKEN.test(x)) || tokens.slice(0, -1).includes('>'))
      throw new SecurityInputError(field, `"${p}" is not a task subject pattern (jetflow.task.… with * or a final >)`);
  }
  const served = subjects.filter((s) => patterns.some((p) => subjectMatches(p, s)));
  if (!served.length) throw new SecurityInputError(field, `${patterns.join(', ')} matches no task subject; known: ${subjects.join(', ')}`);
  return served;
}

function identity(role: Role, user: string, account: string, inboxPrefix: string, grants: Grant[]): Identity {
  const g = merge(grants);
  return { role, user, account, inboxPrefix, permissions: { publish: { allow: g.pub, deny: g.denyPub }, subscribe: { allow: g.sub, deny: [] } } };
}

/** Every service provisions the whole topology at start (idempotently): info, create, update; never delete. */
function provisioning(t: Topology): Grant[] {
  return [accountInfo(), ...t.streams.map((s) => provisionStream(s.name)), ...[...t.durables].flatMap(([stream, names]) => names.map((d) => provisionConsumer(stream, d)))];
}

const S = SUBJECTS;

function grantsFor(role: ServiceRole, t: Topology): Grant[] {
  const box = inbox(inboxPrefixOf(role));
  switch (role) {
    case 'ingest':
      return [
        ...provisioning(t),
        box,
        // Validated submissions (HTTP, gRPC) to jetflow.submit, where no tenant may publish; cancel controls
        // to the flow's result partition; redrives of dead letters (NATS-door ones go back to jetflow.ingest).
        publish(`${S.submit}.>`, `${S.ingest}.>`, `${S.result}.>`, `${S.task}.>`, `${S.callback}.>`),
        kvRead(BUCKETS.flows),
        kvRead(BUCKETS.idempotency),
        kvWrite(BUCKETS.idempotency),
        kvWrite(BUCKETS.cancel),
        // Signals: each recorded (its payload) before its control goes to the flow's partition.
        kvRead(BUCKETS.signals),
        kvWrite(BUCKETS.signals),
        // Pause flags of flows and definitions (the pause API), set or deleted before the controls that apply them; listed on a definition's resume.
        kvRead(BUCKETS.pauses),
        kvWrite(BUCKETS.pauses),
        readStream(`KV_${BUCKETS.pauses}`, t.durables.get(`KV_${BUCKETS.pauses}`)),
        // Flow definitions registered through the API (PUT /v1/flow-definitions), seeded from the file, watched.
        kvRead(BUCKETS.definitions),
        kvWrite(BUCKETS.definitions),
        readStream(`KV_${BUCKETS.definitions}`, t.durables.get(`KV_${BUCKETS.definitions}`)),
        // The schedules API: records by <tenant>.<id>, listed with keys() (an ordered consumer).
        kvRead(BUCKETS.schedules),
        kvWrite(BUCKETS.schedules),
        readStream(`KV_${BUCKETS.schedules}`, t.durables.get(`KV_${BUCKETS.schedules}`)),
        // Listings scan these streams with ephemeral consumers; live views read events.
        readStream(`KV_${BUCKETS.flows}`, t.durables.get(`KV_${BUCKETS.flows}`)),
        readStream(STREAMS.dlq, t.durables.get(STREAMS.dlq)),
        readStream(STREAMS.events, t.durables.get(STREAMS.events)),
        // The worker registry, watched (GET /v1/workers, which tasks wait for a worker).
        kvRead(BUCKETS.workers),
        readStream(`KV_${BUCKETS.workers}`, t.durables.get(`KV_${BUCKETS.workers}`)),
        getMessages(STREAMS.dlq),
        publish(`$JS.API.STREAM.MSG.DELETE.${STREAMS.dlq}`),
        subscribe(`${S.event}.>`),
        // The orchestrators' admission reports: flows running per tenant (in-flight limits).
        subscribe(ADMISSION_SUBJECTS.load),
        // The gRPC worker door runs the worker runtime for its streams: every task consumer, task dead
        // letters and events, the cancel flags, and its workers' registry entries (`grpc.<instance>`).
        ...t.taskSubjects.flatMap((s) => CONSUMERS.taskAll(s).map((c) => consume(STREAMS.tasks, c))),
        publish(`${S.dlq}.task.>`, `${S.event}.>`, `$KV.${BUCKETS.workers}.grpc.>`),
        // Concurrency and rate limits by key of every task subject (task-limiter.ts).
        kvRead(BUCKETS.limits),
        kvWrite(BUCKETS.limits),
        kvRead(BUCKETS.cancel),
        readStream(`KV_${BUCKETS.cancel}`, t.durables.get(`KV_${BUCKETS.cancel}`)),
        // The ops API's consumer overview and the lag gauges.
        ...Object.values(STREAMS).map(listConsumers),
      ];
    case 'orchestrator':
      return [
        ...provisioning(t),
        box,
        // One ingest consumer per tenant, made as tenants appear (and short-lived drains); listed to adopt
        // other replicas' and to count what waits. The single consumer of earlier versions is retired once.
        consumeAny(STREAMS.ingest, LEGACY_INGEST_CONSUMER),
        listConsumers(STREAMS.ingest),
        // Admission reports between replicas (and to ingest): running flows per tenant, flows seen ending.
        publish(`${S.admission}.>`),
        subscribe(`${S.admission}.>`),
        consume(STREAMS.callbacks, CONSUMERS.callbacks),
        ...Array.from({ length: t.partitions }, (_, p) => consume(STREAMS.results, CONSUMERS.results(p))),
        // Tasks, deadline timers (on the result partition), callback jobs, events, dead letters.
        publish(`${S.task}.>`, `${S.result}.>`, `${S.callback}.>`, `${S.event}.>`, `${S.dlq}.>`),
        kvRead(BUCKETS.flows),
        kvWrite(BUCKETS.flows),
        // NATS-door submissions claim their key like HTTP ones; a cancel control counts only with its flag set.
        kvRead(BUCKETS.idempotency),
        kvWrite(BUCKETS.idempotency),
        kvRead(BUCKETS.cancel),
        // A signal control counts only with its record, whose payload it applies; NATS-door signals are recorded here.
        kvRead(BUCKETS.signals),
        kvWrite(BUCKETS.signals),
        // A pause control applies what the flow's pause flag says; a flow of a paused definition (its flag read at start) gets its own flag; the flags are watched for the gauge.
        kvRead(BUCKETS.pauses),
        kvWrite(BUCKETS.pauses),
        readStream(`KV_${BUCKETS.pauses}`, t.durables.get(`KV_${BUCKETS.pauses}`)),
        // Every definition a flow starts on is stored first, and read back for flows started on older ones.
        kvRead(BUCKETS.definitions),
        kvWrite(BUCKETS.definitions),
        // The newest version of each name is followed there (a KV watch of the indexes).
        readStream(`KV_${BUCKETS.definitions}`, t.durables.get(`KV_${BUCKETS.definitions}`)),
        // Leases: get, put, create, update, delete, and keys() (an ordered consumer).
        kvRead(BUCKETS.leases),
        kvWrite(BUCKETS.leases),
        readStream(`KV_${BUCKETS.leases}`, t.durables.get(`KV_${BUCKETS.leases}`)),
        // Schedules: watched, fired by the owner of their partition (a compare-and-set on the record), each
        // firing a validated submission to jetflow.submit like ingest's.
        kvRead(BUCKETS.schedules),
        kvWrite(BUCKETS.schedules),
        readStream(`KV_${BUCKETS.schedules}`, t.durables.get(`KV_${BUCKETS.schedules}`)),
        publish(`${S.submit}.>`),
      ];
    case 'dataset-generator':
    case 'analyst':
      return workerGrants(inboxPrefixOf(role), t.serves[role], t, { provision: true, cache: role === 'analyst', name: role });
    case 'operator':
      return operatorGrants(t);
  }
}

/** A task worker: pulls its task consumers, publishes results; outside workers provision nothing. */
function workerGrants(prefix: string, served: string[], t: Topology, o: { provision: boolean; cache: boolean; name: string }): Grant[] {
  return [
    ...(o.provision ? provisioning(t) : [accountInfo()]),
    inbox(prefix),
    ...served.flatMap((s) => CONSUMERS.taskAll(s).map((c) => consume(STREAMS.tasks, c))),
    // Results, dead letters of tasks, task events.
    publish(`${S.result}.>`, `${S.dlq}.task.>`, `${S.event}.>`),
    // The cancel flags, watched (an ordered consumer on the bucket's stream).
    kvRead(BUCKETS.cancel),
    readStream(`KV_${BUCKETS.cancel}`, t.durables.get(`KV_${BUCKETS.cancel}`)),
    // Paused task subjects (watched: their pulls stop asking).
    kvRead(BUCKETS.pauses),
    readStream(`KV_${BUCKETS.pauses}`, t.durables.get(`KV_${BUCKETS.pauses}`)),
    ...(o.cache ? [kvRead(BUCKETS.cache), kvWrite(BUCKETS.cache)] : []),
    // Concurrency leases and rate-limit times (task-limiter.ts), only under the subjects it serves (`<kind>.<name>.>`).
    kvRead(BUCKETS.limits),
    publish(...served.map((s) => `$KV.${BUCKETS.limits}.${s.split('.').slice(2).join('.')}.>`)),
    // Its own entries in the worker registry (`<name>.<instance>`), never another worker's.
    kvRead(BUCKETS.workers),
    publish(`$KV.${BUCKETS.workers}.${o.name}.>`),
  ];
}

/**
 * Reads everything (streams, consumers, messages, KV, live subjects) and redrives dead letters. Streams
 * with work-queue retention are read by message get only: a consumer of its own could take their work.
 */
function operatorGrants(t: Topology): Grant[] {
  return [
    accountInfo(),
    inbox(inboxPrefixOf('operator')),
    publish('$JS.API.STREAM.LIST', '$JS.API.STREAM.NAMES'),
    ...t.streams.flatMap((s) => [
      publish(`$JS.API.STREAM.INFO.${s.name}`, `$JS.API.CONSUMER.INFO.${s.name}.*`),
      listConsumers(s.name),
      getMessages(s.name),
      ...(s.workqueue ? [] : [readStream(s.name, t.durables.get(s.name))]),
    ]),
    subscribe(`${S.ingest}.>`, `${S.submit}.>`, `${S.task}.>`, `${S.result}.>`, `${S.callback}.>`, `${S.event}.>`, `${S.dlq}.>`, '$KV.>'),
    publish(`${S.ingest}.>`, `${S.submit}.>`, `${S.task}.>`, `${S.result}.>`, `${S.callback}.>`, `$JS.API.STREAM.MSG.DELETE.${STREAMS.dlq}`),
  ];
}
