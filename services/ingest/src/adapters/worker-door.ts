import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import type { NatsConnection } from 'nats';
import { WorkerService, WorkResponseSchema, WorkRequestSchema, type Task, type WorkRequest, type WorkResponse, type WorkerHello } from '@jetflow/proto';
import { ErrorCodes, JetflowError, RetryableError, TerminalError, codeOf } from '@jetflow/errors';
import { subjectMatches } from '@jetflow/flows';
import { startTaskWorker, type TaskContext, type TaskOutput, type TaskWorker } from '@jetflow/messaging';
import { reportError, type Logger } from '@jetflow/logging';
import { taskInputOf } from '../../../../packages/worker/src/index.js';
import { toStatus } from './grpc.js';
import { sha256hex, type WorkerKeyIdentity } from '../config.js';

/**
 * The gRPC worker door (`jetflow.v1.WorkerService/Work`): workers without a NATS client (Python's
 * jetflow_worker) serve task subjects over one bidirectional stream. Each stream is a worker of the
 * NATS runtime (libs/messaging worker.ts) whose handler is the remote worker: the runtime holds the
 * JetStream message, heartbeats it, enforces the limits, publishes the result with the task's token
 * before it acks, retries by delayed nak with the definition's backoff and dead-letters; this module
 * only turns its calls into assignments and the worker's answers back into outcomes. When a stream
 * breaks, the runtime's stop(0) hands back (naks) everything the worker held, at once.
 */

const TASK_SUBJECT = /^jetflow\.task\.[a-z0-9_-]+\.[a-z0-9_-]+$/;

export const MAX_SLOTS = 1_000;

/**
 * Checks a hello against the key's patterns and the subjects the deployment's definitions name (only
 * those have a task consumer). Returns the subjects, sorted and deduplicated.
 */
export function checkHello(hello: WorkerHello | undefined, key: WorkerKeyIdentity, known: ReadonlySet<string>): { subjects: string[]; slots: number; name: string; version: string } {
  if (!hello)
    throw new JetflowError(ErrorCodes.INVALID_ARGUMENT, 'the first message of a Work stream must be a hello {subjects, slots, name}', {
      details: [{ path: 'hello', message: 'required first' }],
    });
  const subjects = [...new Set(hello.subjects)].sort();
  if (!subjects.length) throw new JetflowError(ErrorCodes.INVALID_ARGUMENT, 'hello.subjects: name at least one task subject', { details: [{ path: 'hello.subjects', message: 'empty' }] });
  if (subjects.length > 256) throw new JetflowError(ErrorCodes.INVALID_ARGUMENT, 'hello.subjects: at most 256', { details: [{ path: 'hello.subjects', message: 'too many' }] });
  for (const s of subjects)
    if (!TASK_SUBJECT.test(s))
      throw new JetflowError(ErrorCodes.INVALID_ARGUMENT, `hello.subjects: ${JSON.stringify(s.slice(0, 200))} is not a task subject (jetflow.task.<kind>.<name>)`, {
        details: [{ path: 'hello.subjects', message: 'not a task subject' }],
      });
  for (const s of subjects)
    if (!key.patterns.some((p) => subjectMatches(p, s)))
      throw new JetflowError(ErrorCodes.PERMISSION_DENIED, `worker key "${key.name}" may not serve ${s} (it may serve ${key.patterns.join(', ')})`);
  for (const s of subjects)
    if (!known.has(s))
      throw new JetflowError(ErrorCodes.NOT_FOUND, `no flow definition names the task subject ${s}, so it has no task consumer`, {
        details: [{ path: 'hello.subjects', message: `${s}: unknown` }],
      });
  if (!Number.isInteger(hello.slots) || hello.slots < 1 || hello.slots > MAX_SLOTS)
    throw new JetflowError(ErrorCodes.INVALID_ARGUMENT, `hello.slots must be from 1 to ${MAX_SLOTS}, got ${hello.slots}`, { details: [{ path: 'hello.slots', message: 'out of range' }] });
  if (hello.name && !/^[A-Za-z0-9._-]{1,64}$/.test(hello.name))
    throw new JetflowError(ErrorCodes.INVALID_ARGUMENT, 'hello.name: at most 64 letters, digits, ".", "_" and "-"', { details: [{ path: 'hello.name', message: 'invalid' }] });
  if (hello.version.length > 100 || /[^\x20-\x7e]/.test(hello.version))
    throw new JetflowError(ErrorCodes.INVALID_ARGUMENT, 'hello.version: at most 100 printable ASCII characters', { details: [{ path: 'hello.version', message: 'invalid' }] });
  return { subjects, slots: hello.slots, name: hello.name || key.name, version: hello.version || 'unknown' };
}

/** A worker's failure as the runtime's error: terminal ones are dead-lettered at once, retryable ones retried. */
export function failureError(f: { retryable: boolean; code: string; message: string }): Error {
  const code = /^[a-z][a-z0-9_.-]{0,63}$/.test(f.code) ? f.code : 'task_failed';
  const text = `${code}: ${f.message.slice(0, 4_000) || 'no message'}`;
  return f.retryable ? new RetryableError(text) : new TerminalError(text);
}

const dec = new TextDecoder();
const enc = new TextEncoder();

/** The worker's output bytes: JSON, else a terminal failure (running it again returns the same). */
export function outputOf(bytes: Uint8Array): TaskOutput {
  if (!bytes.length) return { output: null };
  try {
    JSON.parse(dec.decode(bytes));
  } catch (err) {
    throw new TerminalError(`the worker's output is not JSON: ${(err as Error).message}`);
  }
  return { outputJson: bytes };
}

export interface WorkerDoorOptions {
  nc: NatsConnection;
  partitions: number;
  keys: ReadonlyMap<string, WorkerKeyIdentity>;
  /** JETFLOW_AUTH=disabled: every caller may serve every subject. */
  authDisabled: boolean;
  /** The task subjects of the flow definitions now (only those have a task consumer). */
  subjects: () => Iterable<string>;
  log: Logger;
  /** The worker registry's re-announce interval (JETFLOW_WORKER_ANNOUNCE_MS); default the registry's. */
  announceIntervalMs?: number;
  /** The largest message the gRPC server takes (its grpc.max_receive_message_length): told to workers in the welcome. */
  maxMessageBytes?: number;
  /** How long a stream may take to send its hello (default 10 s). */
  helloTimeoutMs?: number;
}

export interface WorkerDoor {
  /** The grpc-js service definition and its implementation, for `server.addService`. */
  definition: grpc.ServiceDefinition;
  implementation: grpc.UntypedServiceImplementation;
  /** Streams open now. */
  readonly streams: number;
  /** Hands back what every worker holds and ends every stream (UNAVAILABLE): before the server shuts down. */
  close(): Promise<void>;
}

type Call = grpc.ServerDuplexStream<WorkRequest | Uint8Array, WorkResponse>;

interface Assignment {
  resolve(o: TaskOutput): void;
  reject(e: Error): void;
  ctx: TaskContext;
}

export function workerDoor(o: WorkerDoorOptions): WorkerDoor {
  const open = new Set<{ close(why: string): Promise<void> }>();
  const allowAll: WorkerKeyIdentity = { name: 'worker', patterns: ['jetflow.task.>'] };

  const keyOf = (call: Call): WorkerKeyIdentity => {
    if (o.authDisabled) return allowAll;
    const v = call.metadata.get('authorization')[0];
    const header = typeof v === 'string' ? v : v?.toString();
    const m = /^Bearer\s+(\S+)$/i.exec(header ?? '');
    if (!m) throw new JetflowError(ErrorCodes.UNAUTHENTICATED, header ? 'malformed authorization; expected "Bearer <worker key>"' : 'missing authorization; expected "Bearer <worker key>"');
    const id = o.keys.get(sha256hex(m[1]!));
    if (!id) throw new JetflowError(ErrorCodes.UNAUTHENTICATED, 'unknown worker key (JETFLOW_WORKER_KEYS)');
    return id;
  };

  const work = (call: Call) => {
    let ended = false;
    let worker: TaskWorker | undefined;
    let handingBack: Promise<void> | undefined;
    let stopping: Promise<void> | undefined;
    /** Stops the stream's runtime worker once: the first call's grace counts (0 = hand everything back now). */
    const stopWorker = (graceMs: number) => (stopping ??= worker ? worker.stop(graceMs).catch((err: unknown) => reportError(log, err, { where: 'worker door stop' })) : Promise.resolve());
    const assignments = new Map<string, Assignment>();
    let log = o.log;
    const send = (m: WorkResponse) => {
      if (!ended && !call.writableEnded && !call.destroyed) call.write(m);
    };
    /** Ends the stream with an error status (once). */
    const fail = (err: unknown) => {
      if (ended) return;
      ended = true;
      if (codeOf(err) === 'internal') reportError(o.log, err, { where: 'worker door' });
      if (!call.writableEnded) call.emit('error', Object.assign(new Error((err as Error).message), toStatus(err)));
    };
    /** The stream is over: every task the worker held goes back to the stream at once. */
    const handBack = (why: string) =>
      (handingBack ??= (async () => {
        ended = true;
        open.delete(entry);
        clearTimeout(helloTimer);
        if (assignments.size) log.warn({ why, held: assignments.size }, 'worker stream ended; handing its tasks back');
        await stopWorker(0);
      })());
    const entry = {
      close: async (why: string) => {
        const p = handBack(why);
        if (!call.writableEnded) call.emit('error', Object.assign(new Error(why), toStatus(new JetflowError(ErrorCodes.UNAVAILABLE, why))));
        await p;
      },
    };
    open.add(entry);
    const helloTimer = setTimeout(() => {
      if (!worker) {
        fail(new JetflowError(ErrorCodes.INVALID_ARGUMENT, `no hello within ${o.helloTimeoutMs ?? 10_000} ms`));
        void handBack('no hello');
      }
    }, o.helloTimeoutMs ?? 10_000);

    let key: WorkerKeyIdentity;
    try {
      key = keyOf(call);
    } catch (err) {
      fail(err);
      void handBack('unauthenticated');
      return;
    }

    const start = async (hello: WorkerHello | undefined) => {
      const h = checkHello(hello, key, new Set(o.subjects()));
      // In the worker registry as grpc.<key name>-<worker name>-<random> (the door may write only grpc.>).
      const workerId = `${key.name}-${h.name}-${randomBytes(4).toString('hex')}`;
      log = o.log.child({ worker: workerId, subjects: h.subjects });
      const handler = (task: Task, ctx: TaskContext) =>
        new Promise<TaskOutput>((resolve, reject) => {
          // Fetched as the stream ended: left pending, the runtime's stop(0) under way naks it (no attempt counted).
          if (ended) return;
          const input = taskInputOf(task);
          const id = randomBytes(8).toString('hex');
          const done = () => assignments.delete(id);
          assignments.set(id, { resolve: (v) => (done(), resolve(v)), reject: (e) => (done(), reject(e)), ctx });
          // The runtime fires these at the soft limit or a cancel (wrap up), and at the hard limit or the
          // cancel's grace (the runtime has failed or cancelled the task already: stop now).
          ctx.signal.addEventListener(
            'abort',
            () =>
              send(create(WorkResponseSchema, { kind: { case: 'cancel', value: { assignmentId: id, hard: false, reason: String((ctx.signal.reason as Error)?.message ?? 'cancelled') } } })),
            {
              once: true,
            },
          );
          ctx.hardSignal.addEventListener(
            'abort',
            () => {
              done();
              send(create(WorkResponseSchema, { kind: { case: 'cancel', value: { assignmentId: id, hard: true, reason: String((ctx.hardSignal.reason as Error)?.message ?? 'stopped') } } }));
            },
            { once: true },
          );
          send(
            create(WorkResponseSchema, {
              kind: {
                case: 'assignment',
                value: {
                  assignmentId: id,
                  flowId: task.flowId,
                  tenant: task.tenant,
                  flow: task.flow,
                  task: task.task,
                  subject: task.subject,
                  attempt: ctx.attempt,
                  deadlineAtMs: task.deadlineAtMs,
                  softLimitMs: task.softLimitMs || 5_000,
                  hardLimitMs: task.hardLimitMs || 10_000,
                  maxAttempts: task.maxAttempts || 3,
                  inputJson: enc.encode(JSON.stringify(input)),
                },
              },
            }),
          );
        });
      worker = await startTaskWorker({
        nc: o.nc,
        subjects: h.subjects,
        concurrency: h.slots,
        partitions: o.partitions,
        handler,
        log,
        workerId,
        announce: { name: 'grpc', service: 'grpc', version: h.version, ...(o.announceIntervalMs ? { intervalMs: o.announceIntervalMs } : {}) },
      });
      // The stream ended while the worker started: handBack found no worker to stop.
      if (ended) return void (await worker.stop(0));
      clearTimeout(helloTimer);
      send(create(WorkResponseSchema, { kind: { case: 'welcome', value: { workerId, subjects: h.subjects, slots: h.slots, maxMessageBytes: o.maxMessageBytes ?? 4 * 1024 * 1024 } } }));
      log.info({ slots: h.slots }, 'worker connected through the gRPC door');
    };

    let starting: Promise<void> | undefined;
    let draining = false;
    call.on('data', (raw: WorkRequest | Uint8Array) => {
      if (ended) return;
      let m: WorkRequest;
      try {
        m = raw instanceof Uint8Array ? fromBinary(WorkRequestSchema, raw) : raw;
      } catch (err) {
        fail(new JetflowError(ErrorCodes.INVALID_ARGUMENT, `message is not a valid jetflow.v1.WorkRequest: ${String((err as Error).message).slice(0, 200)}`));
        void handBack('undecodable message');
        return;
      }
      if (!starting) {
        starting = start(m.kind.case === 'hello' ? m.kind.value : undefined).catch((err: unknown) => {
          fail(err);
          void handBack('refused hello');
        });
        return;
      }
      switch (m.kind.case) {
        case 'hello':
          fail(new JetflowError(ErrorCodes.INVALID_ARGUMENT, 'hello: only the first message of a stream is a hello'));
          void handBack('second hello');
          return;
        case 'drain': {
          // Stop fetching, let the worker finish what fits the grace, hand back the rest, end the stream.
          const graceMs = Math.min(m.kind.value.graceMs || 10_000, 600_000);
          if (draining) return;
          draining = true;
          log.info({ graceMs, held: assignments.size }, 'worker draining');
          void (async () => {
            await stopWorker(graceMs);
            await handBack('drained');
            if (!call.writableEnded) call.end();
          })();
          return;
        }
        case 'heartbeat':
          assignments.get(m.kind.value.assignmentId)?.ctx.heartbeat?.();
          return;
        case 'result': {
          const a = assignments.get(m.kind.value.assignmentId);
          if (!a) return log.debug({ assignment: m.kind.value.assignmentId }, 'result for no held assignment (late, or already failed)');
          try {
            a.resolve(outputOf(m.kind.value.outputJson));
          } catch (err) {
            a.reject(err as Error);
          }
          return;
        }
        case 'failure': {
          const f = m.kind.value;
          assignments.get(f.assignmentId)?.reject(failureError(f));
          return;
        }
        default:
          return;
      }
    });
    call.on('end', () => {
      void handBack('the worker ended its stream').then(() => {
        if (!call.writableEnded) call.end();
      });
    });
    call.on('cancelled', () => void handBack('the worker stream broke'));
    call.on('error', () => void handBack('the worker stream failed'));
    call.on('close', () => void handBack('the worker stream closed'));
  };

  const m = WorkerService.methods[0]!;
  const definition: grpc.ServiceDefinition = {
    work: {
      path: `/${WorkerService.typeName}/${m.name}`,
      requestStream: true,
      responseStream: true,
      requestSerialize: (v: WorkRequest) => Buffer.from(toBinary(WorkRequestSchema, v)),
      // Decoded in the handler, so a bad message gets INVALID_ARGUMENT rather than grpc-js's INTERNAL.
      requestDeserialize: (b: Buffer) => new Uint8Array(b),
      responseSerialize: (v: WorkResponse) => Buffer.from(toBinary(WorkResponseSchema, v)),
      responseDeserialize: (b: Buffer) => fromBinary(WorkResponseSchema, b),
      originalName: m.name,
    } as grpc.MethodDefinition<unknown, unknown>,
  };
  return {
    definition,
    implementation: { work },
    get streams() {
      return open.size;
    },
    async close() {
      await Promise.all([...open].map((s) => s.close('ingest is shutting down; reconnect to another replica')));
    },
  };
}
