/**
 * @jetflow/worker: serve Jetflow task subjects from a team's own repository. A thin layer over the
 * worker runtime the built-in workers run (libs/messaging worker.ts): slots shared by all subjects and
 * fetches of only the free ones, heartbeats, soft/hard limits, retries with the definition's backoff,
 * dead letters, cancellation. This file is the package's one entry; the build bundles what it uses.
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { connect, credsAuthenticator, type Authenticator, type NatsConnection } from 'nats';
import { pino } from 'pino';
import { RetryableError, TerminalError, codeOf } from '@jetflow/errors';
import {
  STREAMS,
  consumerConfigs,
  ensureConsumer,
  isJsError,
  JetStreamApiCodes,
  startTaskWorker,
  type TaskContext as RuntimeContext,
  type TaskHandler,
  WORKER_REGISTRY,
  checkAnnounceInterval,
  workerNameOfUser,
} from '@jetflow/messaging';
import type { Task } from '@jetflow/proto';
import { runUnderLimits, type LimitsContext, type TaskMeta, type WorkerPool } from '@jetflow/pool';

export { RetryableError, TerminalError };

/** What a task's `run` gets. */
export interface TaskInput<F = Record<string, unknown>> {
  /** A mapped task: this chunk's items. Otherwise the records: `flowInput.records` when it is an array, else empty. */
  items: unknown[];
  /**
   * Outputs of the tasks it needs, by task name (a stored output as `{ ref }`; a mapped task's as the
   * array of its chunk outputs in chunk order; a task that did not succeed as null). A stage flow's
   * tasks see every earlier stage's.
   */
  deps: Record<string, unknown>;
  /** The submission's input. For a mapped task without the mapped array (its items come as `items`). */
  flowInput: F;
  /** For mapped tasks: which chunk of the items this is (0-based) and how many there are. */
  chunk?: { index: number; count: number };
}

/** Minimal pino-compatible logger (pino itself fits). */
export interface WorkerLogger {
  child(bindings: Record<string, unknown>): WorkerLogger;
  debug(obj: unknown, msg?: string): void;
  info(obj: unknown, msg?: string): void;
  warn(obj: unknown, msg?: string): void;
  error(obj: unknown, msg?: string): void;
}

export interface TaskContext {
  flowId: string;
  tenant: string;
  flow: string;
  /** The task's name in its flow definition. */
  task: string;
  /** 1 on the first delivery. */
  attempt: number;
  /** Aborted at the soft time limit or when the flow is cancelled: wrap up. */
  signal: AbortSignal;
  /** Aborted at the hard limit (a thread task's thread is terminated then). */
  hardSignal: AbortSignal;
  /** Tells the broker the task is still being worked on (the runtime also does so every second). */
  heartbeat(): void;
  log: WorkerLogger;
}

export interface TaskDefinition<F = Record<string, unknown>, O = unknown> {
  /** jetflow.task.<kind>.<name>, as named in a flow definition. */
  subject: string;
  /** Runs in the worker's event loop (I/O-bound work). */
  run?: (input: TaskInput<F>, ctx: TaskContext) => O | Promise<O>;
  /**
   * A module (file URL or absolute path) whose default export `(input, ctx)` runs in a worker thread
   * (CPU-bound work): loaded once per thread (load models at its top level), and the thread is
   * terminated at the hard limit. Exactly one of `run` and `thread`.
   */
  thread?: string | URL;
}

const SUBJECT = /^jetflow\.task\.[a-z0-9_-]+\.[a-z0-9_-]+$/;

/** Checks a task definition and returns it (typed). */
export function defineTask<F = Record<string, unknown>, O = unknown>(def: TaskDefinition<F, O>): TaskDefinition<F, O> {
  if (!def || typeof def !== 'object') throw new TypeError('defineTask: expected { subject, run } or { subject, thread }');
  if (typeof def.subject !== 'string' || !SUBJECT.test(def.subject))
    throw new TypeError(`defineTask: subject ${JSON.stringify(def.subject)} must be jetflow.task.<kind>.<name> (lowercase letters, digits, - and _)`);
  const hasRun = typeof def.run === 'function';
  const hasThread = typeof def.thread === 'string' || def.thread instanceof URL;
  if (hasRun === hasThread) throw new TypeError(`defineTask(${def.subject}): give exactly one of run (a function) and thread (a module URL)`);
  if (def.run !== undefined && !hasRun) throw new TypeError(`defineTask(${def.subject}): run must be a function`);
  return Object.freeze({ ...def, ...(hasThread ? { thread: moduleUrl(def.thread!) } : {}) });
}

const moduleUrl = (m: string | URL) => (m instanceof URL ? m.href : m.startsWith('file:') ? m : new URL(`file://${m}`).href);

export interface WorkerOptions {
  servers: string | string[];
  tasks: TaskDefinition<never, unknown>[] | TaskDefinition[];
  /** Tasks run at once across all subjects (the worker's slots; a fetch never asks for more). Default 1 per pool thread, else 4. */
  concurrency?: number;
  /** A `worker:<name>` identity: user + password, or token, or a creds file, or an nats.js authenticator. */
  user?: string;
  password?: string;
  token?: string;
  credsFile?: string;
  authenticator?: Authenticator;
  /** Replies come to `<inboxPrefix>.>`; default `_INBOX.<user>` with a user (what Jetflow's identities allow). */
  inboxPrefix?: string;
  /** Result partitions of the deployment (its JETFLOW_PARTITIONS; default 8 like the services). */
  partitions?: number;
  /** Worker threads for `thread` tasks (default: concurrency). */
  pool?: { threads?: number };
  log?: WorkerLogger;
  /** This worker's name on the bus and in results (default `<hostname>-<pid>`). */
  name?: string;
  /** How long to wait at start for a task consumer this identity may not create (the orchestrator provisions it). Default 60 s. */
  consumerWaitMs?: number;
  /**
   * The worker's name in the worker registry (KV jetflow_workers, key `<workerName>.<name>`): the `<name>` of
   * its `worker:<name>` identity, which may write only its own keys. Default: taken from `user` (`worker-<name>`), else `worker`.
   */
  workerName?: string;
  /** How often it renews its registry entry (ms, 100 to 10,000; default 3,000); readers call it stale after 3 intervals without one. */
  announceIntervalMs?: number;
  /**
   * Tasks whose definition has a concurrency limit or rate limit by key: how long a slot's lease lives
   * without renewal (ms; a killed worker's slots free after it; default 10,000), and how many such tasks
   * it holds while they wait for their limit (default 4 × concurrency, at least 16).
   */
  limits?: { leaseMs?: number; maxWaiting?: number };
  /** Told once per task that waited for its concurrency limit or rate limit. */
  onLimitDelay?: (subject: string, limit: 'concurrency' | 'rate') => void;
}

export interface Worker {
  readonly subjects: readonly string[];
  readonly inFlight: number;
  /** Stops fetching, finishes what it holds within graceMs (default 10 s), hands back the rest, closes. */
  stop(graceMs?: number): Promise<void>;
}

interface ThreadPool {
  run(job: ThreadJob, signal: AbortSignal): Promise<unknown>;
  close(): Promise<void>;
}
/** What crosses to a thread (structured-cloned). */
export interface ThreadJob {
  module: string;
  input: TaskInput<unknown>;
  ctx: { flowId: string; tenant: string; flow: string; task: string; attempt: number; softDeadlineAt: number };
}

const dec = new TextDecoder();

function parseJson(bytes: Uint8Array, what: string): unknown {
  try {
    return JSON.parse(dec.decode(bytes)) as unknown;
  } catch (err) {
    throw new TerminalError(`${what} is not valid JSON: ${(err as Error).message}`);
  }
}

function depsOf(task: Task): Record<string, unknown> {
  const deps: Record<string, unknown> = {};
  for (const d of task.deps) deps[d.task] = d.outputJson.length ? parseJson(d.outputJson, `the output of ${d.task}`) : d.outputRef ? { ref: d.outputRef } : null;
  return deps;
}

/**
 * The task message as the SDK's input: a malformed one is terminal (a retry reads the same bytes). A
 * flow input stored in S3 is not read: a task without deps fails terminal at once, one with deps (a
 * reducer) runs and fails only if it reads `flowInput`.
 */
export function taskInputOf(task: Task): TaskInput {
  if (task.inputRef && !task.inputJson.length && !task.deps.length)
    throw new TerminalError(`task ${task.task} of flow ${task.flowId}: its input is stored in S3 (${task.inputRef}); @jetflow/worker reads inline inputs only`);
  if (task.inputRef && !task.inputJson.length) {
    // A task over its deps (a reducer) runs; reading the flow input, which is in S3, is what fails.
    const deps = depsOf(task);
    const why = `task ${task.task} of flow ${task.flowId}: its flow input is stored in S3 (${task.inputRef}); @jetflow/worker reads inline inputs only`;
    return Object.defineProperty({ items: [], deps } as unknown as TaskInput, 'flowInput', {
      enumerable: true,
      get() {
        throw new TerminalError(why);
      },
    });
  }
  const flowInput = task.inputJson.length ? parseJson(task.inputJson, 'the flow input') : {};
  if (!flowInput || typeof flowInput !== 'object' || Array.isArray(flowInput)) throw new TerminalError(`task ${task.task} of flow ${task.flowId}: the flow input is not a JSON object`);
  const deps = depsOf(task);
  if (task.chunkCount > 0) {
    // A chunk of a mapped task: its items travel on their own, cut by the orchestrator.
    const items = task.itemsJson.length ? parseJson(task.itemsJson, `the items of chunk ${task.chunkIndex}`) : [];
    if (!Array.isArray(items)) throw new TerminalError(`task ${task.task} of flow ${task.flowId}: the items of chunk ${task.chunkIndex} are not a JSON array`);
    return { items, deps, flowInput: flowInput as Record<string, unknown>, chunk: { index: task.chunkIndex, count: task.chunkCount } };
  }
  const records = (flowInput as { records?: unknown }).records;
  return { items: Array.isArray(records) ? (records as unknown[]) : [], deps, flowInput: flowInput as Record<string, unknown> };
}

function checkOptions(o: WorkerOptions) {
  if (!o || typeof o !== 'object') throw new TypeError('createWorker: expected an options object');
  const servers =
    typeof o.servers === 'string'
      ? o.servers
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean)
      : Array.isArray(o.servers)
        ? o.servers
        : [];
  if (!servers.length || servers.some((s) => typeof s !== 'string' || !s))
    throw new TypeError('createWorker: servers must be a NATS URL or a non-empty list of them (e.g. process.env.NATS_URL)');
  if (!Array.isArray(o.tasks) || !o.tasks.length) throw new TypeError('createWorker: tasks must list at least one defineTask(...)');
  const bySubject = new Map<string, TaskDefinition>();
  for (const t of o.tasks as TaskDefinition[]) {
    const d = defineTask(t);
    if (bySubject.has(d.subject)) throw new TypeError(`createWorker: subject ${d.subject} is served by two tasks`);
    bySubject.set(d.subject, d);
  }
  const ints: Array<[string, number | undefined, number, number]> = [
    ['concurrency', o.concurrency, 1, 10_000],
    ['partitions', o.partitions, 1, 256],
    ['pool.threads', o.pool?.threads, 1, 256],
    ['consumerWaitMs', o.consumerWaitMs, 0, 3_600_000],
  ];
  for (const [name, v, min, max] of ints)
    if (v !== undefined && (!Number.isInteger(v) || v < min || v > max)) throw new TypeError(`createWorker: ${name} must be an integer from ${min} to ${max}, got ${String(v)}`);
  const kinds = [o.user !== undefined || o.password !== undefined, o.token !== undefined, o.credsFile !== undefined, o.authenticator !== undefined].filter(Boolean).length;
  if (kinds > 1) throw new TypeError('createWorker: give one kind of credentials: user + password, token, credsFile or authenticator');
  if ((o.user === undefined) !== (o.password === undefined)) throw new TypeError('createWorker: user and password go together');
  if (o.workerName !== undefined && (typeof o.workerName !== 'string' || !/^[a-z0-9_-]{1,63}$/.test(o.workerName)))
    throw new TypeError(`createWorker: workerName must be lowercase letters, digits, - and _ (at most 63), got ${JSON.stringify(o.workerName)}`);
  if (o.announceIntervalMs !== undefined) checkAnnounceInterval('createWorker: announceIntervalMs', o.announceIntervalMs);
  return { servers, bySubject };
}

function authOf(o: WorkerOptions) {
  const inboxPrefix = o.inboxPrefix ?? (o.user ? `_INBOX.${o.user}` : undefined);
  let authenticator = o.authenticator;
  if (o.credsFile !== undefined) {
    let contents: Uint8Array;
    try {
      contents = readFileSync(o.credsFile);
    } catch (err) {
      throw new TypeError(`createWorker: cannot read credsFile ${o.credsFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    authenticator = credsAuthenticator(contents);
  }
  return {
    ...(inboxPrefix ? { inboxPrefix } : {}),
    ...(o.user !== undefined ? { user: o.user, pass: o.password } : {}),
    ...(o.token !== undefined ? { token: o.token } : {}),
    ...(authenticator ? { authenticator } : {}),
  };
}

/**
 * The task consumer of each subject: kept if it exists (the orchestrator provisions one for every subject
 * of its definitions), else created. An identity that may not create it (a `worker:<name>` one) waits
 * for the orchestrator to, up to waitMs, then fails naming the consumer.
 */
async function ensureTaskConsumers(nc: NatsConnection, subjects: string[], waitMs: number, log: WorkerLogger) {
  const jsm = await nc.jetstreamManager({ timeout: 5_000 });
  const until = Date.now() + waitMs;
  const configs = consumerConfigs({ partitions: 0, taskSubjects: subjects }).filter((c) => c.stream === STREAMS.tasks);
  await Promise.all(
    configs.map(async ({ config }) => {
      for (let warned = false; ;) {
        try {
          await jsm.consumers.info(STREAMS.tasks, config.durable_name);
          return;
        } catch (err) {
          if (!isJsError(err, JetStreamApiCodes.ConsumerNotFound) && Date.now() > until)
            throw new Error(`task consumer ${STREAMS.tasks}/${config.durable_name}: ${(err as Error).message}`, { cause: err });
        }
        try {
          await ensureConsumer(jsm, STREAMS.tasks, config);
          return;
        } catch (err) {
          if (Date.now() > until)
            throw new Error(
              `task consumer ${STREAMS.tasks}/${config.durable_name} for ${config.filter_subject} does not exist and could not be created (${(err as Error).message}); ` +
                'with a worker identity the orchestrator creates it: name the subject in a flow definition it loads',
              { cause: err },
            );
          if (!warned) log.warn({ consumer: config.durable_name, err: (err as Error).message }, 'task consumer missing; waiting for the orchestrator to provision it');
          warned = true;
          await new Promise((r) => setTimeout(r, 1_000));
        }
      }
    }),
  );
}

async function startPool(threads: number): Promise<ThreadPool> {
  const { Piscina } = await import('piscina');
  const pool = new Piscina({ filename: new URL('./thread.js', import.meta.url).href, minThreads: 1, maxThreads: threads, idleTimeout: 60_000 });
  return {
    async run(job, signal) {
      const r = (await pool.run(job, { signal })) as { ok: true; output: unknown } | { ok: false; error: { code?: string; message: string; name?: string } };
      if (r.ok) return r.output;
      // Errors cross the thread boundary as data, so their code (terminal, retryable) survives.
      throw Object.assign(new Error(r.error.message), { code: r.error.code, name: r.error.name ?? 'Error' });
    },
    close: () => pool.destroy(),
  };
}

/** Connects, makes sure each task consumer exists, and serves the tasks until stop(). */
export async function createWorker(o: WorkerOptions): Promise<Worker> {
  const { servers, bySubject } = checkOptions(o);
  const name = o.name ?? `${hostname()}-${process.pid}`;
  const log = o.log ?? pino({ name: 'jetflow-worker', level: process.env.LOG_LEVEL ?? 'info' });
  const needsPool = [...bySubject.values()].some((d) => d.thread);
  const threads = o.pool?.threads ?? o.concurrency ?? 4;
  const concurrency = o.concurrency ?? (needsPool ? threads : 4);
  const nc = await connect({
    servers,
    name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    reconnectJitter: 100,
    pingInterval: 10_000,
    waitOnFirstConnect: true,
    timeout: 5_000,
    ...authOf(o),
  });
  let pool: ThreadPool | undefined;
  try {
    const subjects = [...bySubject.keys()].sort();
    await ensureTaskConsumers(nc, subjects, o.consumerWaitMs ?? 60_000, log);
    pool = needsPool ? await startPool(threads) : undefined;
    const handler: TaskHandler = async (task: Task, rc: RuntimeContext) => {
      const def = bySubject.get(task.subject);
      if (!def) throw new TerminalError(`no task of this worker serves ${task.subject}`);
      const input = taskInputOf(task);
      if (def.thread)
        return {
          output: await pool!.run(
            {
              module: String(def.thread),
              input,
              ctx: { flowId: task.flowId, tenant: task.tenant, flow: task.flow, task: task.task, attempt: rc.attempt, softDeadlineAt: rc.softDeadlineAt },
            },
            rc.hardSignal,
          ),
        };
      const ctx: TaskContext = {
        flowId: task.flowId,
        tenant: task.tenant,
        flow: task.flow,
        task: task.task,
        attempt: rc.attempt,
        get signal() {
          return rc.signal;
        },
        get hardSignal() {
          return rc.hardSignal;
        },
        heartbeat: () => rc.heartbeat?.(),
        get log() {
          return rc.log as unknown as WorkerLogger;
        },
      };
      return { output: await def.run!(input, ctx) };
    };
    const worker = await startTaskWorker({
      nc,
      subjects,
      concurrency,
      partitions: o.partitions ?? 8,
      handler,
      log: log as never,
      workerId: name,
      ...(o.limits ? { limits: o.limits } : {}),
      ...(o.onLimitDelay ? { onLimitDelay: o.onLimitDelay } : {}),
      announce: {
        name: o.workerName ?? workerNameOfUser(o.user) ?? 'worker',
        service: 'sdk',
        version: sdkVersion(),
        intervalMs: o.announceIntervalMs ?? WORKER_REGISTRY.defaultIntervalMs,
      },
    });
    log.info({ subjects, concurrency, threads: needsPool ? threads : 0 }, 'jetflow worker started');
    let stopping: Promise<void> | undefined;
    return {
      subjects,
      get inFlight() {
        return worker.inFlight;
      },
      stop(graceMs = 10_000) {
        stopping ??= (async () => {
          await worker.stop(graceMs);
          await pool?.close().catch(() => undefined);
          await nc.drain().catch(() => undefined);
        })();
        return stopping;
      },
    };
  } catch (err) {
    await pool?.close().catch(() => undefined);
    await nc.close().catch(() => undefined);
    throw err;
  }
}

/** This package's version (its package.json sits one level above both src/ and dist/). */
function sdkVersion(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: string }).version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
}

export interface RunTaskOptions {
  flowId?: string;
  tenant?: string;
  flow?: string;
  task?: string;
  attempt?: number;
  /** Aborts ctx.signal after this long (the soft limit). */
  softLimitMs?: number;
  /** Aborts ctx.signal (and hardSignal) when this aborts: a test of cancellation. */
  signal?: AbortSignal;
  log?: WorkerLogger;
}

const silent: WorkerLogger = { child: () => silent, debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

/**
 * Runs a task in this process, without NATS: a unit test's helper. `input` fills in what is missing
 * (items from flowInput.records, empty deps). A thread task's module is imported here, not in a thread.
 * Resolves with the output, rejects with what the task threw; `heartbeats` counts ctx.heartbeat() calls.
 */
export async function runTask<F = Record<string, unknown>, O = unknown>(
  def: TaskDefinition<F, O>,
  input: Partial<TaskInput<F>> = {},
  o: RunTaskOptions = {},
): Promise<{ output: O; heartbeats: number }> {
  const d = defineTask(def);
  const flowInput = (input.flowInput ?? {}) as F;
  const records = (flowInput as { records?: unknown }).records;
  const full: TaskInput<F> = {
    items: input.items ?? (Array.isArray(records) ? (records as unknown[]) : []),
    deps: input.deps ?? {},
    flowInput,
    ...(input.chunk ? { chunk: input.chunk } : {}),
  };
  // A timer that keeps the process alive (AbortSignal.timeout's does not): a task waiting only for its
  // soft limit would otherwise end the test's event loop before the limit fires.
  const soft = new AbortController();
  const softTimer = o.softLimitMs !== undefined ? setTimeout(() => soft.abort(new DOMException('the soft limit passed', 'TimeoutError')), o.softLimitMs) : undefined;
  const signal = o.signal ? AbortSignal.any([o.signal, soft.signal]) : soft.signal;
  let heartbeats = 0;
  const ctx: TaskContext = {
    flowId: o.flowId ?? 'f-test',
    tenant: o.tenant ?? 'default',
    flow: o.flow ?? 'test',
    task: o.task ?? d.subject.split('.').pop()!,
    attempt: o.attempt ?? 1,
    signal,
    hardSignal: o.signal ?? new AbortController().signal,
    heartbeat: () => void heartbeats++,
    log: o.log ?? silent,
  };
  const run = d.run ?? ((await import(String(d.thread))) as { default?: TaskDefinition<F, O>['run'] }).default;
  if (typeof run !== 'function') throw new TypeError(`runTask(${d.subject}): ${String(d.thread)} has no default export function`);
  try {
    const output = await run(full, ctx);
    return { output, heartbeats };
  } finally {
    clearTimeout(softTimer);
  }
}

/** The error code the runtime sees for an error (terminal, retryable, internal…): for tests. */
export const errorCodeOf = (err: unknown): string => codeOf(err);

// ---------------------------------------------------------------------------------------------
// Worker services: what Jetflow's built-in dataset-generator and analyst are made of. A level below
// createWorker: handlers see the whole Task message (claim-checked inputs, deps with their status and
// stored outputs, a chunk's items as bytes) and return encoded outputs; the process is configured from
// the environment like the other services, serves /metrics and /healthz, and drains on SIGTERM.

/**
 * Runs a worker service: reads nothing itself (pass loadWorkerConfig's result), starts tracing, metrics
 * and /metrics + /healthz (JETFLOW_METRICS_PORT), connects, provisions the topology, serves the task
 * subjects of the loaded flow definitions that match cfg.subjects and that the service has a plugin for,
 * announces itself in the worker registry, and on SIGTERM or SIGINT stops fetching, finishes what it
 * holds within cfg.graceMs, calls the handler's close() and exits 0. `makeHandler` runs once connected.
 */
export { runWorkerService } from '@jetflow/worker-service';
/** A worker service's settings from the environment (NATS_*, JETFLOW_TASK_SUBJECTS, JETFLOW_WORKER_THREADS, …: README, "Configuration"). */
export { loadWorkerConfig, type WorkerConfig as WorkerServiceConfig } from '@jetflow/worker-service';
export type { Task } from '@jetflow/proto';
export type {
  /** A worker service's handler: the raw Task message in, an output (a value, JSON bytes, or a stored reference) out. */
  TaskHandler as TaskMessageHandler,
  /** What such a handler gets: the limits' signals, the attempt, a logger, pauseLimits() for thread pools. */
  TaskContext as TaskMessageContext,
  TaskOutput as TaskMessageOutput,
} from '@jetflow/messaging';

/**
 * A pool of worker threads for CPU-bound plugins, every thread started (and its model loaded) at once;
 * its worker file default-exports createJobRunner() from `@jetflow/worker/threads`. workerFileNextTo
 * finds that file next to the caller (`.js` when compiled, `.ts` under tsx). runUnderLimits runs a job
 * under a task's limits: the soft limit as the plugin's signal, the hard limit as thread termination,
 * and the limits' clocks stopped while the job waits for a free thread.
 */
export {
  CHAOS_BUSY,
  createWorkerPool,
  runUnderLimits,
  workerFileNextTo,
  type LimitsContext,
  type PoolOptions,
  type RunOptions,
  type TaskMeta,
  type WorkerJob,
  type WorkerPool,
  type WorkerPoolOptions,
} from '@jetflow/pool';

const itemsDec = new TextDecoder();

/**
 * The items of a mapped task's chunk (Task.items_json, cut by the orchestrator), checked: not JSON, or
 * not an array, is terminal (a retry reads the same bytes).
 */
export function chunkItemsOf<T = unknown>(task: Pick<Task, 'itemsJson' | 'chunkIndex' | 'task' | 'flowId'>): T[] {
  let items: unknown;
  try {
    items = JSON.parse(itemsDec.decode(task.itemsJson));
  } catch (err) {
    throw new TerminalError(`chunk ${task.chunkIndex} of ${task.task} (flow ${task.flowId}): its items are not JSON`, { cause: err });
  }
  if (!Array.isArray(items)) throw new TerminalError(`chunk ${task.chunkIndex} of ${task.task} (flow ${task.flowId}): its items are no array`);
  return items as T[];
}

/** The plugin a built-in style task runs: the last token of its subject (jetflow.task.<kind>.<plugin>). */
export const pluginOf = (task: Pick<Task, 'subject'>): string => task.subject.slice(task.subject.lastIndexOf('.') + 1);

/**
 * A chunk of a mapped task run in a thread pool under the task's limits (runUnderLimits): its items
 * (chunkItemsOf) are the job's records, the plugin is the subject's last token (pluginOf). What the
 * built-ins' mapped steps share; the caller stores the part the plugin returns.
 */
export async function runChunkUnderLimits<In extends { plugin: string; records: readonly unknown[] }, R>(
  pool: Pick<WorkerPool<In, R>, 'runDetailed'>,
  task: Pick<Task, 'subject' | 'itemsJson' | 'chunkIndex' | 'task' | 'flowId'>,
  ctx: LimitsContext,
): Promise<{ items: In['records']; result: R; meta: TaskMeta }> {
  const items = chunkItemsOf(task) as In['records'];
  const { result, meta } = await runUnderLimits(pool, { plugin: pluginOf(task), records: items } as In, ctx);
  return { items, result, meta };
}
