/**
 * The worker conformance kit (docs/WORKERS.md, "Conformance"): plays the orchestrator's side of the wire
 * contract on a real nats-server against a worker that serves the conventional behaviours below, in any
 * language, and checks what the worker does, each as a named case with a clear failure message.
 *
 * It watches the worker only from the bus: the results it publishes (`jetflow.result.>`), the acks, naks,
 * heartbeats and terms it sends for each task message (`$JS.ACK.JETFLOW_TASKS.…`, correlated by stream
 * sequence), its dead letters (`jetflow.dlq.>`), and the task consumers' redelivery counts. So it needs an
 * identity that may see all of that (a test's superuser; no auth on a scratch server) and a NATS server of
 * its own: it provisions Jetflow's topology there and no orchestrator may run on it (one would consume the
 * results and dead-letter them as results of flows it never started).
 *
 * `runConformance` is the library entry (the worker is started by the caller); `cli.ts` is
 * `npm run conformance`. Task messages are encoded with the generated protobuf code, not the hand-written
 * codecs the worker runtime uses, so the kit checks the schema rather than agreeing with itself.
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { isDeepStrictEqual } from 'node:util';
import { connect, headers as natsHeaders, type ConnectionOptions, type Msg, type MsgHdrs, type NatsConnection } from 'nats';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { TaskResultSchema, TaskSchema, TaskStatus, type TaskResult } from '@jetflow/proto';
import { BUCKETS, STREAMS, CONSUMERS, bandOf, bandSubject, partitionOf, provisionTopology } from '@jetflow/messaging';

const enc = new TextEncoder();
const dec = new TextDecoder();

/** The task subjects a worker under test serves, by behaviour (docs/WORKERS.md, "Conformance behaviours"). */
export const BEHAVIOURS = {
  /** Succeeds at once with `{ input: <the flow input>, task: <Task.task>, attempt: <attempt> }`, for a chunk plus `chunk: { index, count }` and `items`. */
  echo: 'jetflow.task.conformance.echo',
  /** Fails retryably while attempt <= input.failTimes, then succeeds with `{ attempt }`. */
  failRetryable: 'jetflow.task.conformance.fail-retryable',
  /** Fails terminally (never retried), at once. */
  failTerminal: 'jetflow.task.conformance.fail-terminal',
  /** Works input.ms milliseconds without stopping at its soft limit (heartbeating as it goes), then succeeds with `{ sleptMs, attempt }`. */
  slow: 'jetflow.task.conformance.slow',
  /** Waits input.ms milliseconds, then succeeds with `{ waitedMs }`; stops as soon as its flow is cancelled. */
  waitForCancel: 'jetflow.task.conformance.wait-for-cancel',
} as const;
export const CONFORMANCE_SUBJECTS: string[] = Object.values(BEHAVIOURS);

export interface ConformanceOptions {
  servers: string | string[];
  /** How the kit connects (user + pass, token, authenticator…): an identity that may see everything. */
  connection?: Partial<ConnectionOptions>;
  /** Result partitions the worker was configured with (default 8, like the services and @jetflow/worker). */
  partitions?: number;
  /** The ack wait the kit gives the task consumers (default 2,000 ms): the heartbeat case runs longer than it. */
  ackWaitMs?: number;
  /** Only these cases (by name); default all. */
  only?: string[];
  /**
   * Hooks to kill -9 and start the worker under test: with them the `kill-worker` case runs (skipped
   * without). `start` resolves once the worker serves again.
   */
  worker?: { kill(): Promise<void>; start(): Promise<void> };
  /** Told of each case as it ends. */
  onCase?: (r: CaseResult) => void;
}

export interface CaseResult {
  name: string;
  title: string;
  outcome: 'passed' | 'failed' | 'skipped';
  /** Why it failed (or was skipped). */
  message?: string;
  durationMs: number;
}

export interface ConformanceReport {
  passed: boolean;
  cases: CaseResult[];
}

/** A case's failure: its message says what the worker did and what the contract asks. */
export class ConformanceFailure extends Error {}

function check(cond: unknown, message: string): asserts cond {
  if (!cond) throw new ConformanceFailure(message);
}

/** Creates (or updates) the streams, task consumers and buckets a worker needs; runConformance calls it too. */
export async function prepareConformance(o: Pick<ConformanceOptions, 'servers' | 'connection' | 'partitions' | 'ackWaitMs'>): Promise<void> {
  const nc = await connect({ servers: o.servers, ...o.connection });
  try {
    await provisionTopology(nc, { partitions: o.partitions ?? 8, taskSubjects: CONFORMANCE_SUBJECTS, taskAckWaitMs: o.ackWaitMs ?? 2_000 });
  } finally {
    await nc.close();
  }
}

// ------------------------------------------------------------------ what the kit sees on the bus

interface SeenResult {
  at: number;
  order: number;
  subject: string;
  headers: MsgHdrs | undefined;
  data: Uint8Array;
}

/** An ack-protocol message the worker sent for one delivery of a task message. */
interface AckOp {
  at: number;
  order: number;
  /** The ack kind: +ACK, -NAK, +WPI, +TERM, +NXT. */
  kind: string;
  /** The delay a -NAK asked for (ms), if any. */
  delayMs?: number;
  consumer: string;
  /** The delivery count of the delivery it settles (1 on the first). */
  delivered: number;
  streamSeq: number;
}

interface SeenDeadLetter {
  at: number;
  order: number;
  subject: string;
  headers: MsgHdrs | undefined;
  data: Uint8Array;
}

class Observer {
  readonly results: SeenResult[] = [];
  readonly ops: AckOp[] = [];
  readonly deadLetters: SeenDeadLetter[] = [];
  private subs: Array<{ unsubscribe(): void }> = [];

  constructor(private readonly nc: NatsConnection) {}

  /** Order of arrival across the subscriptions: callbacks run in the order the server sent the messages. */
  private order = 0;

  async start() {
    const cb =
      <T>(push: (m: Msg, order: number) => T | undefined, into: T[]) =>
      (err: Error | null, m: Msg) => {
        if (err) return;
        const v = push(m, ++this.order);
        if (v) into.push(v);
      };
    this.subs.push(
      this.nc.subscribe('jetflow.result.>', { callback: cb((m, order) => ({ at: Date.now(), order, subject: m.subject, headers: m.headers, data: m.data }), this.results) }),
      this.nc.subscribe('$JS.ACK.>', { callback: cb((m, order) => parseAck(m.subject, dec.decode(m.data), order), this.ops) }),
      this.nc.subscribe('jetflow.dlq.>', { callback: cb((m, order) => ({ at: Date.now(), order, subject: m.subject, headers: m.headers, data: m.data }), this.deadLetters) }),
    );
    // The subscriptions are registered on the server before any task is published.
    await this.nc.flush();
  }

  stop() {
    for (const s of this.subs) s.unsubscribe();
  }

  resultsOf(flowId: string) {
    return this.results.filter((r) => r.subject.endsWith(`.${flowId}`) || r.headers?.get('Jetflow-Flow-Id') === flowId);
  }
  opsOf(seq: number) {
    return this.ops.filter((o) => o.streamSeq === seq);
  }
  deadLettersOf(seq: number) {
    return this.deadLetters.filter((d) => d.headers?.get('Jetflow-Original-Seq') === String(seq));
  }
}

/**
 * `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ts>.<pending>` (and the longer
 * form with domain and account hash after `$JS.ACK`); the body is the ack kind.
 */
function parseAck(subject: string, body: string, order: number): AckOp | undefined {
  const t = subject.split('.');
  const at = t.length >= 11 ? 4 : t.length === 9 ? 2 : -1;
  if (at < 0 || t[at] !== STREAMS.tasks) return undefined;
  const kind = body.trim().split(/\s/, 1)[0] || '+ACK';
  let delayMs: number | undefined;
  const json = body.indexOf('{');
  if (kind === '-NAK' && json >= 0) {
    try {
      const d = (JSON.parse(body.slice(json)) as { delay?: number }).delay;
      if (typeof d === 'number') delayMs = d / 1e6;
    } catch {
      // A malformed delay is reported by the case as a nak without one.
    }
  }
  return { at: Date.now(), order, kind, ...(delayMs !== undefined ? { delayMs } : {}), consumer: t[at + 1]!, delivered: Number(t[at + 2]), streamSeq: Number(t[at + 3]) };
}

// ------------------------------------------------------------------ the orchestrator's side

interface SentTask {
  flowId: string;
  task: string;
  subject: string;
  token: string;
  seq: number;
  at: number;
  input: unknown;
  /** The bytes published. */
  body: Uint8Array;
  /** A mapped task's chunk. */
  chunk?: { index: number; count: number; items: unknown[] };
}

interface TaskSpec {
  behaviour: keyof typeof BEHAVIOURS;
  input?: unknown;
  softLimitMs?: number;
  hardLimitMs?: number;
  maxAttempts?: number;
  backoff?: { initialMs: number; maxMs: number; multiplier: number };
  deadlineAtMs?: number;
  /** Publishes these bytes instead of a Task (a malformed message). */
  raw?: Uint8Array;
  /** Sends the task as this chunk of a mapped task. */
  chunk?: { index: number; count: number; items: unknown[] };
  /** Overrides of the Task's fields (a hostile one); inputJson replaces the encoded input. */
  fields?: { flowId?: string; task?: string; inputJson?: Uint8Array };
  /** The flow's priority: published on its band's subject (<subject>.high for 8..10, .low for 1..3), as the orchestrator does. */
  priority?: number;
}

const TASK_NAME: Record<keyof typeof BEHAVIOURS, string> = { echo: 'echo', failRetryable: 'fail-retryable', failTerminal: 'fail-terminal', slow: 'slow', waitForCancel: 'wait-for-cancel' };
const terminalOp = (o: AckOp) => o.kind === '+ACK' || o.kind === '+TERM';

class Orchestrator {
  private n = 0;
  private readonly run = randomBytes(4).toString('hex');

  constructor(
    readonly nc: NatsConnection,
    readonly seen: Observer,
    readonly partitions: number,
    readonly ackWaitMs: number,
  ) {}

  newFlowId() {
    return `fc${this.run}${(++this.n).toString(36)}`;
  }

  async publish(spec: TaskSpec): Promise<SentTask> {
    const flowId = spec.fields?.flowId ?? this.newFlowId();
    const task = spec.fields?.task ?? TASK_NAME[spec.behaviour];
    const subject = BEHAVIOURS[spec.behaviour];
    const published = spec.priority ? bandSubject(subject, bandOf(spec.priority)) : subject;
    const token = randomBytes(12).toString('base64url');
    const input = spec.input ?? {};
    const now = Date.now();
    const body =
      spec.raw ??
      toBinary(
        TaskSchema,
        create(TaskSchema, {
          flowId,
          tenant: 'conformance',
          flow: 'conformance',
          flowVersion: 1,
          stage: 0,
          task,
          subject,
          inputJson: spec.fields?.inputJson ?? enc.encode(JSON.stringify(input)),
          softLimitMs: spec.softLimitMs ?? 10_000,
          hardLimitMs: spec.hardLimitMs ?? 15_000,
          maxAttempts: spec.maxAttempts ?? 3,
          backoffInitialMs: spec.backoff?.initialMs ?? 200,
          backoffMaxMs: spec.backoff?.maxMs ?? 1_000,
          backoffMultiplier: spec.backoff?.multiplier ?? 2,
          deadlineAtMs: BigInt(spec.deadlineAtMs ?? now + 120_000),
          dispatchedAtMs: BigInt(now),
          resultToken: token,
          ...(spec.priority ? { priority: spec.priority } : {}),
          ...(spec.chunk ? { chunkIndex: spec.chunk.index, chunkCount: spec.chunk.count, itemsJson: enc.encode(JSON.stringify(spec.chunk.items)) } : {}),
        }),
      );
    const h = natsHeaders();
    h.set('Jetflow-Kind', 'task');
    h.set('Jetflow-Flow-Id', flowId);
    h.set('Nats-Msg-Id', `${flowId}:0:${task}${spec.chunk ? `:${spec.chunk.index}` : ''}:${randomBytes(3).toString('hex')}`);
    h.set('traceparent', `00-${randomBytes(16).toString('hex')}-${randomBytes(8).toString('hex')}-01`);
    const ack = await this.nc.jetstream().publish(published, body, { headers: h });
    return { flowId, task, subject, token, seq: ack.seq, at: Date.now(), input, body, ...(spec.chunk ? { chunk: spec.chunk } : {}) };
  }

  async cancel(flowId: string) {
    const kv = await this.nc.jetstream().views.kv(BUCKETS.cancel, { bindOnly: true });
    await kv.put(flowId, enc.encode('conformance'));
  }

  /** Waits until pred holds (polling), or the time is up: then returns false. */
  async until(pred: () => boolean, ms: number): Promise<boolean> {
    const end = Date.now() + ms;
    for (;;) {
      if (pred()) return true;
      if (Date.now() > end) return false;
      await sleep(20);
    }
  }

  /** The first result of the task, decoded and checked against the contract (subject, headers, token, ids). */
  async resultOf(t: SentTask, ms: number, what = `a result for task ${t.task} (flow ${t.flowId})`): Promise<{ r: TaskResult; seen: SeenResult }> {
    check(await this.until(() => this.seen.resultsOf(t.flowId).length > 0, ms), `no result arrived within ${ms} ms: expected ${what} on ${this.resultSubject(t.flowId)}`);
    const seen = this.seen.resultsOf(t.flowId)[0]!;
    return { r: this.checkResult(t, seen), seen };
  }

  resultSubject(flowId: string) {
    return `jetflow.result.${partitionOf(flowId, this.partitions)}.${flowId}`;
  }

  checkResult(t: SentTask, seen: SeenResult): TaskResult {
    const want = this.resultSubject(t.flowId);
    check(
      seen.subject === want,
      `the result was published to ${seen.subject}; it belongs on ${want} (partition = FNV-1a 32 of the flow id mod ${this.partitions}, the deployment's partition count)`,
    );
    const kind = seen.headers?.get('Jetflow-Kind');
    check(kind === 'result', `the result's Jetflow-Kind header is ${JSON.stringify(kind ?? null)}; it must be "result" (the orchestrator dead-letters any other kind)`);
    const fid = seen.headers?.get('Jetflow-Flow-Id');
    check(fid === t.flowId, `the result's Jetflow-Flow-Id header is ${JSON.stringify(fid ?? null)}; it must be the flow id ${t.flowId}`);
    const msgId = seen.headers?.get('Nats-Msg-Id');
    const wantId = t.chunk ? `${t.flowId}:${t.task}:${t.chunk.index}:result` : `${t.flowId}:${t.task}:result`;
    check(msgId === wantId, `the result's Nats-Msg-Id is ${JSON.stringify(msgId ?? null)}; it must be ${wantId}, so a repeat after a crash is dropped by JetStream`);
    let r: TaskResult;
    try {
      r = fromBinary(TaskResultSchema, seen.data);
    } catch (err) {
      throw new ConformanceFailure(`the result does not decode as a jetflow.v1.TaskResult: ${(err as Error).message}`);
    }
    check(
      r.resultToken === t.token,
      `the result's result_token is ${JSON.stringify(r.resultToken)}; it must be the Task's result_token (${t.token}), or the orchestrator dead-letters it (bad_token)`,
    );
    check(r.flowId === t.flowId, `the result's flow_id is ${JSON.stringify(r.flowId)}; expected ${t.flowId}`);
    check(r.task === t.task, `the result's task is ${JSON.stringify(r.task)}; expected ${t.task}`);
    check(r.stage === 0, `the result's stage is ${r.stage}; expected the Task's stage (0)`);
    check(r.chunkIndex === (t.chunk?.index ?? 0), `the result's chunk_index is ${r.chunkIndex}; it must be the Task's chunk_index (${t.chunk?.index ?? 0})`);
    check(r.attempts >= 1, `the result's attempts is ${r.attempts}; it must be the delivery count of the attempt that produced it (1 on the first)`);
    check(
      r.startedAtMs > 0n && r.finishedAtMs >= r.startedAtMs,
      `started_at_ms ${r.startedAtMs} and finished_at_ms ${r.finishedAtMs}: both must be set, in ms since the epoch, started first`,
    );
    check(r.worker.length > 0, 'the result names no worker (TaskResult.worker)');
    if (r.status === TaskStatus.SUCCEEDED) {
      if (!r.outputRef) {
        try {
          JSON.parse(dec.decode(r.outputJson));
        } catch (err) {
          throw new ConformanceFailure(`the result's output_json is not valid JSON (${(err as Error).message}): ${JSON.stringify(dec.decode(r.outputJson.slice(0, 80)))}`);
        }
      }
    } else {
      check(r.errorCode.length > 0, `a ${TaskStatus[r.status]} result must carry an error_code`);
    }
    return r;
  }

  output(r: TaskResult): unknown {
    return JSON.parse(dec.decode(r.outputJson)) as unknown;
  }

  /** The op that settled the task message (its last +ACK or +TERM), waiting up to ms. */
  async settled(t: SentTask, ms: number): Promise<AckOp> {
    const ok = await this.until(() => this.seen.opsOf(t.seq).some(terminalOp), ms);
    check(ok, `the task message (stream sequence ${t.seq}) was not acked or terminated within ${ms} ms (${describeOps(this.seen.opsOf(t.seq))})`);
    return this.seen.opsOf(t.seq).find(terminalOp)!;
  }

  /** How many results of this flow's task JetStream stored (the duplicate window drops repeats of one Nats-Msg-Id). */
  async storedResults(flowId: string): Promise<number> {
    const jsm = await this.nc.jetstreamManager();
    const subject = this.resultSubject(flowId);
    const info = await jsm.streams.info(STREAMS.results, { subjects_filter: subject });
    return info.state.subjects?.[subject] ?? 0;
  }

  async redelivered(subject: string): Promise<number> {
    const jsm = await this.nc.jetstreamManager();
    return (await jsm.consumers.info(STREAMS.tasks, CONSUMERS.task(subject))).num_redelivered;
  }
}

function describeOps(ops: AckOp[]): string {
  if (!ops.length) return 'the worker sent nothing for it';
  return `the worker sent: ${ops.map((o) => `${o.kind}${o.delayMs !== undefined ? `(${Math.round(o.delayMs)} ms)` : ''}@delivery${o.delivered}`).join(', ')}`;
}

/** Checks the result was published before the task message was settled (a worker killed in between must not lose it). */
function checkResultBeforeSettle(o: Orchestrator, t: SentTask, result: SeenResult) {
  const first = o.seen.opsOf(t.seq).find(terminalOp);
  if (first && first.order < result.order)
    throw new ConformanceFailure(
      `the task message was ${first.kind === '+TERM' ? 'terminated' : 'acked'} ${result.at - first.at} ms before its result was published: a worker killed in between loses the result; publish it (and wait for its PubAck) first`,
    );
}

// ------------------------------------------------------------------ the cases

interface Case {
  name: string;
  title: string;
  /** Needs the kill/start hooks. */
  needsHooks?: boolean;
  run(o: Orchestrator, hooks?: ConformanceOptions['worker']): Promise<void>;
}

const CASES: Case[] = [
  {
    name: 'echo',
    title: 'a result carries the token, flow id, task, stage, attempts and the deterministic message id, on its partition, with valid JSON output',
    async run(o) {
      const input = { records: [{ id: 'r1', text: 'hello wörld' }], n: 42, nested: { list: [1, 2, 3], none: null } };
      const t = await o.publish({ behaviour: 'echo', input });
      const { r, seen } = await o.resultOf(t, 10_000);
      check(r.status === TaskStatus.SUCCEEDED, `echo answered ${TaskStatus[r.status]} (${r.errorCode}: ${r.errorMessage}); expected SUCCEEDED`);
      check(r.attempts === 1, `attempts is ${r.attempts} on the first delivery; expected 1`);
      const out = o.output(r);
      const want = { input, task: t.task, attempt: 1 };
      check(isDeepStrictEqual(out, want), `echo's output is ${JSON.stringify(out)}; expected ${JSON.stringify(want)}`);
      const op = await o.settled(t, 5_000);
      check(op.kind === '+ACK', `the task message of a succeeded task was settled with ${op.kind}; expected +ACK`);
      checkResultBeforeSettle(o, t, seen);
    },
  },
  {
    name: 'priority-bands',
    title: 'tasks of high- and low-priority flows (published on <subject>.high and <subject>.low) reach the worker too',
    async run(o) {
      for (const [priority, band] of [
        [9, 'high'],
        [1, 'low'],
      ] as const) {
        const input = { priority };
        const t = await o.publish({ behaviour: 'echo', input, priority });
        const consumer = CONSUMERS.taskBand(t.subject, band);
        const { r } = await o.resultOf(
          t,
          10_000,
          `a result for the priority-${priority} task on ${t.subject}.${band}: the worker must pull consumer ${consumer} too (docs/WORKERS.md, "Priority bands")`,
        );
        check(r.status === TaskStatus.SUCCEEDED, `echo of a priority-${priority} task answered ${TaskStatus[r.status]} (${r.errorCode}: ${r.errorMessage}); expected SUCCEEDED`);
        check(isDeepStrictEqual(o.output(r), { input, task: t.task, attempt: 1 }), `echo's output for the priority-${priority} task is ${JSON.stringify(o.output(r))}`);
        const op = await o.settled(t, 5_000);
        check(op.kind === '+ACK', `the priority-${priority} task was settled with ${op.kind}; expected +ACK`);
      }
    },
  },
  {
    name: 'mapped-chunk',
    title: "a chunk of a mapped task is answered with its own token, its chunk_index and the chunk's message id",
    async run(o) {
      const chunk = {
        index: 1,
        count: 3,
        items: [
          { id: 'r3', text: 'three' },
          { id: 'r4', text: 'four' },
        ],
      };
      const input = { lang: 'en' };
      const t = await o.publish({ behaviour: 'echo', input, chunk });
      const { r, seen } = await o.resultOf(t, 10_000);
      check(r.status === TaskStatus.SUCCEEDED, `a chunk of echo answered ${TaskStatus[r.status]} (${r.errorCode}: ${r.errorMessage}); expected SUCCEEDED`);
      const out = o.output(r);
      const want = { input, task: t.task, attempt: 1, chunk: { index: chunk.index, count: chunk.count }, items: chunk.items };
      check(isDeepStrictEqual(out, want), `echo's output for chunk 1 of 3 is ${JSON.stringify(out)}; expected ${JSON.stringify(want)} (the items come from items_json)`);
      await o.settled(t, 5_000);
      checkResultBeforeSettle(o, t, seen);
    },
  },
  {
    name: 'result-before-ack',
    title: 'every result is published before its task message is acked',
    async run(o) {
      const ts = await Promise.all([1, 2, 3, 4, 5].map((i) => o.publish({ behaviour: 'echo', input: { i } })));
      for (const t of ts) {
        const { seen } = await o.resultOf(t, 10_000);
        await o.settled(t, 5_000);
        checkResultBeforeSettle(o, t, seen);
      }
    },
  },
  {
    name: 'retry-backoff',
    title: 'a retryable failure is redelivered after the backoff of the Task fields, and no result is published until the attempt that ends it',
    async run(o) {
      const backoff = { initialMs: 600, maxMs: 5_000, multiplier: 2 };
      const t = await o.publish({ behaviour: 'failRetryable', input: { failTimes: 2 }, maxAttempts: 5, backoff });
      const { r, seen } = await o.resultOf(t, 15_000);
      check(
        r.status === TaskStatus.SUCCEEDED,
        `fail-retryable (failTimes 2, maxAttempts 5) ended ${TaskStatus[r.status]} (${r.errorCode}: ${r.errorMessage}); expected SUCCEEDED on attempt 3`,
      );
      check(r.attempts === 3, `the result says attempts ${r.attempts}; expected 3 (two failures, then success)`);
      check(isDeepStrictEqual(o.output(r), { attempt: 3 }), `output ${JSON.stringify(o.output(r))}; expected {"attempt":3}`);
      check(
        o.seen.resultsOf(t.flowId).length === 1,
        `${o.seen.resultsOf(t.flowId).length} results were published; a retried attempt publishes none (the orchestrator takes the first as final)`,
      );
      await o.settled(t, 5_000);
      checkResultBeforeSettle(o, t, seen);
      const ops = o.seen.opsOf(t.seq);
      const fails = [1, 2].map((d) => ops.find((x) => x.delivered === d && x.kind === '-NAK'));
      check(fails.every(Boolean), `attempts 1 and 2 must each be handed back with a -NAK (with the backoff delay); ${describeOps(ops)}`);
      const next = [2, 3].map((d) => ops.find((x) => x.delivered === d && x.kind !== '+WPI'));
      for (const [i, f] of fails.entries()) {
        const base = Math.min(backoff.maxMs, backoff.initialMs * backoff.multiplier ** i);
        const gap = next[i]!.at - f!.at;
        check(
          gap >= base / 2 - 100 && gap <= base + 1_000,
          `attempt ${i + 2} came ${gap} ms after attempt ${i + 1} failed; the Task's backoff (initial ${backoff.initialMs} ms × ${backoff.multiplier}^${i}, max ${backoff.maxMs}) asks for a delay from ${base / 2} to ${base} ms (nak with that delay)`,
        );
      }
    },
  },
  {
    name: 'terminal-failure',
    title: 'a terminal failure is reported FAILED at once, dead-lettered, and never retried',
    async run(o) {
      const t = await o.publish({ behaviour: 'failTerminal', maxAttempts: 3 });
      const { r, seen } = await o.resultOf(t, 10_000);
      check(r.status === TaskStatus.FAILED, `fail-terminal answered ${TaskStatus[r.status]}; expected FAILED`);
      check(r.attempts === 1, `attempts ${r.attempts}; a terminal failure is not retried (expected 1 with max_attempts 3)`);
      const op = await o.settled(t, 5_000);
      checkResultBeforeSettle(o, t, seen);
      await sleep(1_500);
      const ops = o.seen.opsOf(t.seq);
      check(!ops.some((x) => x.kind === '-NAK' || x.delivered > 1), `a terminal failure must be settled at its first delivery (+TERM), not handed back; ${describeOps(ops)}`);
      check(op.kind === '+TERM' || op.kind === '+ACK', `settled with ${op.kind}`);
      check(o.seen.deadLettersOf(t.seq).length >= 1, `no dead letter on jetflow.dlq.task.${t.subject} names stream sequence ${t.seq} (Jetflow-Original-Seq)`);
      check(o.seen.resultsOf(t.flowId).length === 1, `${o.seen.resultsOf(t.flowId).length} results were published; expected one`);
    },
  },
  {
    name: 'max-attempts',
    title: 'max_attempts is honoured: the last attempt is reported FAILED and the task is not delivered again',
    async run(o) {
      const t = await o.publish({ behaviour: 'failRetryable', input: { failTimes: 99 }, maxAttempts: 2, backoff: { initialMs: 200, maxMs: 400, multiplier: 2 } });
      const { r } = await o.resultOf(t, 15_000);
      check(r.status === TaskStatus.FAILED, `after max_attempts (2) retryable failures the result is ${TaskStatus[r.status]}; expected FAILED`);
      check(r.attempts === 2, `attempts ${r.attempts}; expected 2 (max_attempts)`);
      await o.settled(t, 5_000);
      await sleep(1_500);
      const ops = o.seen.opsOf(t.seq);
      check(!ops.some((x) => x.delivered > 2), `the task was delivered a third time; ${describeOps(ops)}`);
      check(o.seen.deadLettersOf(t.seq).length >= 1, `no dead letter on jetflow.dlq.task.${t.subject} names stream sequence ${t.seq} (Jetflow-Original-Seq)`);
      check(o.seen.resultsOf(t.flowId).length === 1, `${o.seen.resultsOf(t.flowId).length} results were published; expected one`);
    },
  },
  {
    name: 'heartbeat',
    title: "a task running longer than the consumer's ack_wait is heartbeated and never redelivered",
    async run(o) {
      const ms = Math.round(o.ackWaitMs * 2.5);
      const t = await o.publish({ behaviour: 'slow', input: { ms }, softLimitMs: ms + 10_000, hardLimitMs: ms + 15_000 });
      let redelivered = 0;
      while (!o.seen.resultsOf(t.flowId).length && Date.now() - t.at < ms + 10_000) {
        redelivered = Math.max(redelivered, await o.redelivered(t.subject));
        await sleep(200);
      }
      const { r } = await o.resultOf(t, 1_000);
      check(r.status === TaskStatus.SUCCEEDED, `slow (${ms} ms) answered ${TaskStatus[r.status]} (${r.errorCode}: ${r.errorMessage}); expected SUCCEEDED`);
      check(r.attempts === 1, `attempts ${r.attempts}: the task was redelivered while it ran`);
      await o.settled(t, 5_000);
      const ops = o.seen.opsOf(t.seq);
      check(
        redelivered === 0 && !ops.some((x) => x.delivered > 1),
        `the task was redelivered while it ran (${describeOps(ops)}): send +WPI more often than the ack_wait (${o.ackWaitMs} ms)`,
      );
      const beats = ops.filter((x) => x.kind === '+WPI').map((x) => x.at);
      check(beats.length > 0, `no heartbeat (+WPI) during ${ms} ms of work, with an ack_wait of ${o.ackWaitMs} ms`);
      const end = ops.find(terminalOp)!.at;
      const points = [t.at, ...beats, end];
      const silence = Math.max(...points.slice(1).map((p, i) => p - points[i]!));
      check(silence < o.ackWaitMs, `the longest time without a heartbeat was ${silence} ms, not less than the ack_wait (${o.ackWaitMs} ms)`);
    },
  },
  {
    name: 'hard-limit',
    title: 'a task past its hard limit is stopped and reported FAILED with error_code timeout',
    async run(o) {
      const t = await o.publish({ behaviour: 'slow', input: { ms: 8_000 }, softLimitMs: 500, hardLimitMs: 1_500, maxAttempts: 1 });
      const { r } = await o.resultOf(t, 6_000, `a FAILED result soon after the 1,500 ms hard limit of a task that would run 8,000 ms`);
      check(r.status === TaskStatus.FAILED, `a task past its hard limit answered ${TaskStatus[r.status]}; expected FAILED`);
      check(r.errorCode === 'timeout', `error_code ${JSON.stringify(r.errorCode)}; a task stopped at its hard limit reports "timeout"`);
      await o.settled(t, 5_000);
    },
  },
  {
    name: 'cancel-running',
    title: 'a running task of a cancelled flow stops: a CANCELLED result or none, never a success',
    async run(o) {
      const t = await o.publish({ behaviour: 'waitForCancel', input: { ms: 6_000 }, softLimitMs: 20_000, hardLimitMs: 25_000 });
      // Running once it is heartbeated (or after a second).
      await o.until(() => o.seen.opsOf(t.seq).length > 0, Math.min(1_000, o.ackWaitMs));
      check(!o.seen.resultsOf(t.flowId).length, 'wait-for-cancel published a result before its flow was cancelled');
      await o.cancel(t.flowId);
      const cancelledAt = Date.now();
      const op = await o.settled(t, 5_000);
      check(op.at - cancelledAt < 5_000, `the task was settled ${op.at - cancelledAt} ms after its cancel flag was set`);
      await sleep(Math.max(0, t.at + 7_000 - Date.now()));
      for (const s of o.seen.resultsOf(t.flowId)) {
        const r = o.checkResult(t, s);
        check(r.status === TaskStatus.CANCELLED, `the task of a cancelled flow answered ${TaskStatus[r.status]}; expected CANCELLED or no result`);
      }
    },
  },
  {
    name: 'cancel-before-start',
    title: 'a task whose flow was cancelled before it was delivered is not run: a CANCELLED result or none',
    async run(o) {
      const flowId = o.newFlowId();
      await o.cancel(flowId);
      await sleep(200);
      const t = await o.publish({ behaviour: 'echo', fields: { flowId } });
      await o.settled(t, 5_000);
      await sleep(500);
      for (const s of o.seen.resultsOf(t.flowId)) {
        const r = o.checkResult(t, s);
        check(r.status === TaskStatus.CANCELLED, `the task of a flow cancelled before it started answered ${TaskStatus[r.status]}; expected CANCELLED or no result`);
      }
    },
  },
  {
    name: 'past-deadline',
    title: "a task delivered after its flow's deadline is not run: FAILED (timeout) or none",
    async run(o) {
      const t = await o.publish({ behaviour: 'echo', deadlineAtMs: Date.now() - 1_000 });
      await o.settled(t, 5_000);
      await sleep(300);
      for (const s of o.seen.resultsOf(t.flowId)) {
        const r = o.checkResult(t, s);
        check(
          r.status === TaskStatus.FAILED && r.errorCode === 'timeout',
          `a task past its deadline answered ${TaskStatus[r.status]} (${r.errorCode}); expected FAILED with error_code timeout, or no result`,
        );
      }
    },
  },
  {
    name: 'invalid-input',
    title: 'a task whose input_json is not JSON fails at once (FAILED, not retried)',
    async run(o) {
      const t = await o.publish({ behaviour: 'echo', fields: { inputJson: enc.encode('{"records": [ not json') }, maxAttempts: 3 });
      const { r, seen } = await o.resultOf(t, 10_000, 'a FAILED result for a task whose input is not JSON');
      check(r.status === TaskStatus.FAILED, `a task whose input_json is not JSON answered ${TaskStatus[r.status]}; expected FAILED (a retry reads the same bytes)`);
      check(r.attempts === 1, `attempts ${r.attempts}; an input that cannot parse is not retried`);
      await o.settled(t, 5_000);
      checkResultBeforeSettle(o, t, seen);
      await sleep(1_000);
      const ops = o.seen.opsOf(t.seq);
      check(!ops.some((x) => x.kind === '-NAK' || x.delivered > 1), `it was handed back for another attempt; ${describeOps(ops)}`);
    },
  },
  {
    name: 'malformed-task',
    title: 'a malformed task message is dead-lettered and terminated at its first delivery, never retried',
    async run(o) {
      const noIds = toBinary(TaskSchema, create(TaskSchema, { tenant: 'conformance', flow: 'conformance', subject: BEHAVIOURS.echo }));
      const ts = [
        { what: 'bytes that are no protobuf', t: await o.publish({ behaviour: 'echo', raw: Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0x0f]) }) },
        { what: 'a Task without flow_id and task', t: await o.publish({ behaviour: 'echo', raw: noIds }) },
        { what: 'a Task whose flow_id is no subject token ("bad flow*id")', t: await o.publish({ behaviour: 'echo', fields: { flowId: 'bad flow*id' } }) },
      ];
      for (const { what, t } of ts) {
        await o.settled(t, 5_000).catch((e: Error) => {
          throw new ConformanceFailure(`${what}: ${e.message}`);
        });
      }
      await sleep(1_500);
      for (const { what, t } of ts) {
        const ops = o.seen.opsOf(t.seq);
        check(
          !ops.some((x) => x.kind === '-NAK' || x.delivered > 1),
          `${what} was handed back for another delivery; it can never succeed: dead-letter and terminate it (${describeOps(ops)})`,
        );
        const dl = o.seen.deadLettersOf(t.seq);
        check(dl.length >= 1, `${what}: no dead letter on jetflow.dlq.task.${t.subject} names stream sequence ${t.seq} (Jetflow-Original-Seq)`);
        check(Buffer.from(dl[0]!.data).equals(Buffer.from(t.body)), `${what}: the dead letter must carry the original message's bytes`);
      }
    },
  },
  {
    name: 'announce',
    title: 'the worker announces itself in KV jetflow_workers with the subjects it serves, and renews its entry',
    async run(o) {
      const kv = await o.nc.jetstream().views.kv(BUCKETS.workers, { bindOnly: true });
      const read = async () => {
        const out: Array<{ key: string; subjects: string[]; heartbeatAt: number; intervalMs: number }> = [];
        for await (const key of await kv.keys()) {
          const e = await kv.get(key);
          if (!e || e.operation !== 'PUT') continue;
          try {
            const v = JSON.parse(dec.decode(e.value)) as { subjects?: unknown; heartbeatAt?: unknown; intervalMs?: unknown };
            const at = Date.parse(String(v.heartbeatAt));
            if (Array.isArray(v.subjects) && Number.isFinite(at) && typeof v.intervalMs === 'number')
              out.push({ key, subjects: v.subjects.map(String), heartbeatAt: at, intervalMs: v.intervalMs });
          } catch {
            // Not an announcement: ignored (the registry's readers ignore it too).
          }
        }
        return out.filter((x) => Date.now() - x.heartbeatAt < 3 * x.intervalMs && x.subjects.some((s) => CONFORMANCE_SUBJECTS.includes(s)));
      };
      const live = await read();
      const missing = CONFORMANCE_SUBJECTS.filter((s) => !live.some((x) => x.subjects.includes(s)));
      check(
        !missing.length,
        `no live entry in KV ${BUCKETS.workers} announces ${missing.join(', ')} (a JSON value with subjects, heartbeatAt and intervalMs under <worker name>.<instance>, renewed every intervalMs)`,
      );
      const wait = Math.max(...live.map((x) => x.intervalMs)) * 1.5 + 1_000;
      let renewed = false;
      for (const end = Date.now() + wait; !renewed && Date.now() < end;) {
        await sleep(250);
        const now = await read();
        renewed = live.some((x) => now.some((y) => y.key === x.key && y.heartbeatAt > x.heartbeatAt));
      }
      check(renewed, `no entry was renewed within ${Math.round(wait)} ms (1.5 of its intervalMs, plus 1 s)`);
    },
  },
  {
    name: 'kill-worker',
    title: 'a worker killed mid-task or right after publishing a result loses nothing and stores no second result',
    needsHooks: true,
    async run(o, hooks) {
      // Killed while the task runs: the task comes back after ack_wait to the restarted worker.
      const t1 = await o.publish({ behaviour: 'slow', input: { ms: 2_500 }, softLimitMs: 15_000, hardLimitMs: 20_000 });
      await o.until(() => o.seen.opsOf(t1.seq).length > 0, 1_500);
      await hooks!.kill();
      await hooks!.start();
      const { r } = await o.resultOf(t1, o.ackWaitMs + 15_000, 'the result of a task whose worker was killed while it ran (redelivered after ack_wait)');
      check(r.status === TaskStatus.SUCCEEDED, `after the restart the task answered ${TaskStatus[r.status]} (${r.errorCode}: ${r.errorMessage}); expected SUCCEEDED`);
      // Killed right after its result was published, perhaps before its ack: a redelivery must not store a second result.
      const t2 = await o.publish({ behaviour: 'slow', input: { ms: 300 } });
      await o.resultOf(t2, 10_000);
      await hooks!.kill();
      await hooks!.start();
      await o.until(() => o.seen.opsOf(t2.seq).some(terminalOp), o.ackWaitMs + 10_000);
      await sleep(500);
      for (const t of [t1, t2]) {
        const n = await o.storedResults(t.flowId);
        check(n === 1, `flow ${t.flowId}: ${n} results stored; expected exactly one (Nats-Msg-Id <flow>:<task>:result makes JetStream drop a repeat)`);
      }
      await o.settled(t2, 1_000);
    },
  },
];

export const CASE_NAMES: string[] = CASES.map((c) => c.name);

/**
 * Runs the conformance cases against a worker that already serves (or is about to serve) the
 * conventional subjects on `servers`. Resolves with every case's outcome; never throws for a failed case.
 */
export async function runConformance(o: ConformanceOptions): Promise<ConformanceReport> {
  for (const n of o.only ?? []) if (!CASE_NAMES.includes(n)) throw new TypeError(`runConformance: no case named ${JSON.stringify(n)} (cases: ${CASE_NAMES.join(', ')})`);
  const partitions = o.partitions ?? 8;
  const ackWaitMs = o.ackWaitMs ?? 2_000;
  await prepareConformance({ servers: o.servers, partitions, ackWaitMs, ...(o.connection ? { connection: o.connection } : {}) });
  const nc = await connect({ servers: o.servers, ...o.connection });
  const seen = new Observer(nc);
  await seen.start();
  const orch = new Orchestrator(nc, seen, partitions, ackWaitMs);
  const cases: CaseResult[] = [];
  try {
    for (const c of CASES) {
      if (o.only && !o.only.includes(c.name)) continue;
      const t0 = Date.now();
      let r: CaseResult;
      if (c.needsHooks && !o.worker) r = { name: c.name, title: c.title, outcome: 'skipped', message: 'needs the kill and start hooks of the worker (--worker-cmd)', durationMs: 0 };
      else {
        try {
          await c.run(orch, o.worker);
          r = { name: c.name, title: c.title, outcome: 'passed', durationMs: Date.now() - t0 };
        } catch (err) {
          const message = err instanceof ConformanceFailure ? err.message : `the kit failed: ${(err as Error).stack ?? String(err)}`;
          r = { name: c.name, title: c.title, outcome: 'failed', message, durationMs: Date.now() - t0 };
        }
      }
      cases.push(r);
      o.onCase?.(r);
    }
  } finally {
    seen.stop();
    await nc.close();
  }
  return { passed: cases.every((c) => c.outcome !== 'failed'), cases };
}

/** One line per case, for a terminal. */
export function formatReport(r: ConformanceReport): string {
  const lines = r.cases.map(
    (c) => `${c.outcome === 'passed' ? 'PASS' : c.outcome === 'failed' ? 'FAIL' : 'SKIP'} ${c.name} (${(c.durationMs / 1000).toFixed(1)} s): ${c.message ?? c.title}`,
  );
  const n = (k: CaseResult['outcome']) => r.cases.filter((c) => c.outcome === k).length;
  lines.push(`${n('passed')} passed, ${n('failed')} failed, ${n('skipped')} skipped`);
  return lines.join('\n');
}
