import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { headers as natsHeaders, type JsMsg, type KV, type NatsConnection } from 'nats';
import {
  CallbackJobSchema,
  FlowControlSchema,
  FlowRequestSchema,
  SubmitFlowRequestSchema,
  TaskSchema,
  TaskStatus,
  type FlowRequest,
} from '../../../libs/proto/src/index.js';
import {
  applyCancel,
  applyDeadline,
  applyResult,
  callbackBody,
  deliveryIdOf,
  deriveFlowId,
  flowIdForSequence,
  isTerminal,
  msgIds,
  newFlowState,
  tasksToDispatch,
  validateSubmission,
  type CallbackPolicy,
  type FlowDef,
  type FlowRegistry,
  type FlowState,
  type Transition,
} from '../../../libs/flows/src/index.js';
import { callbackSubject, deadLetter, decodeTaskResult, encodeTask, encodeTaskShared, isTransientNatsError, publishEvent, resultSubject, type JetStreamPublisher, type KvWriter } from '../../../libs/messaging/src/index.js';
import type { Logger } from '../../../libs/logging/src/index.js';
import { encodeUtf8 } from '../../../libs/messaging/src/utf8.js';
import { activeTraceparent } from '../../../libs/telemetry/src/index.js';

const dec = new TextDecoder();

export { INGEST_CONTENT_TYPE } from '../../../libs/messaging/src/index.js';
import { INGEST_CONTENT_TYPE } from '../../../libs/messaging/src/index.js';

export interface EngineDeps {
  nc: NatsConnection;
  /** Reads of flow state. */
  kv: KV;
  /** Writes of flow state (compare-and-set through the fast publisher). */
  writer: KvWriter;
  pub: JetStreamPublisher;
  registry: FlowRegistry;
  partitions: number;
  policy: CallbackPolicy;
  log: Logger;
  /** Called once a flow reaches a terminal state (history records, metrics). */
  onTerminal?: (s: FlowState) => Promise<void> | void;
  /** Longest time a task result waits in memory before its state is written (default 1 s). */
  holdMs?: number;
  /** Most flows this replica keeps running at once (default 1000). */
  maxRunning?: number;
  /** Whether this replica currently owns the flow's result partition. */
  ownsFlow?: (flowId: string) => boolean;
  /**
   * Publish the callback job for every finished flow (with an empty url when it has no callback):
   * its consumer records the flow's history, off the saga's path (JETFLOW_HISTORY).
   */
  historyJobs?: boolean;
  /** Claim check of the NATS door: an input JSON over `thresholdBytes` is stored and the flow keeps only the ref. */
  claimInput?: { thresholdBytes: number; store(tenant: string, flowId: string, inputJson: Uint8Array): Promise<string> };
}

interface Cached {
  state: FlowState;
  rev: number;
}

class Rejection extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The saga engine: starts flows from the ingest stream and drives them from the per-flow result
 * partitions. Every transition is written to KV with compare-and-set on the revision, and every side
 * effect is a JetStream publish with a deterministic Nats-Msg-Id, published after the state write and
 * before the ack: a crash anywhere in between replays into the same messages, which JetStream
 * collapses. Work on one flow is serialised in-process; across processes the partition owner is the
 * only writer.
 */
export class SagaEngine {
  private readonly chains = new Map<string, Promise<unknown>>();
  private readonly cache = new Map<string, Cached>();
  /** The input bytes of flows this replica started, so dispatches do not re-encode the state's copy. */
  private readonly inputs = new Map<string, Uint8Array>();
  private readonly maxCache = 20_000;
  /**
   * Results applied to the cached state but not yet written to KV, by flow. Their messages are acked
   * only after the write that covers them, so a crash replays them. Writes happen at start, at each
   * stage boundary, at the end, and for a flow whose oldest held result is older than holdMs.
   */
  private readonly held = new Map<string, { msgs: JsMsg[]; since: number }>();
  /** Recently finished flows: a deadline timer or late result for them needs no KV read. */
  private readonly finished = new Map<string, true>();
  private readonly maxFinished = 50_000;
  private readonly holdMs: number;
  private readonly sweeper: NodeJS.Timeout;

  constructor(private readonly d: EngineDeps) {
    this.holdMs = d.holdMs ?? 1_000;
    this.sweeper = setInterval(() => this.flushOld(), Math.max(100, this.holdMs / 2));
    this.sweeper.unref();
  }

  /** Writes every flow whose held results are older than holdMs (ack_wait is far longer). */
  private flushOld() {
    const now = Date.now();
    for (const [flowId, h] of this.held) {
      if (now - h.since >= this.holdMs) void this.withFlow(flowId, () => this.flush(flowId)).catch((err: Error) => this.d.log.warn({ flowId, err: err.message }, 'flush failed'));
    }
  }

  private async flush(flowId: string): Promise<void> {
    const h = this.held.get(flowId);
    const c = this.cache.get(flowId);
    if (!h || !c) return;
    try {
      const rev = await this.d.writer.update(flowId, encodeUtf8(JSON.stringify(c.state)), c.rev);
      c.rev = rev;
      this.held.delete(flowId);
      for (const m of h.msgs) m.ack();
    } catch (err) {
      // Someone else wrote (a lease moved): forget our view; the held messages come back to the owner.
      this.dropFlow(flowId);
      throw err;
    }
  }

  private dropFlow(flowId: string) {
    const h = this.held.get(flowId);
    this.held.delete(flowId);
    this.cache.delete(flowId);
    this.inputs.delete(flowId);
    for (const m of h?.msgs ?? []) m.nak();
  }

  /** A partition moved to another replica: forget its flows and hand back unwritten results at once. */
  releasePartition(p: number, partitionOfFlow: (flowId: string) => number): void {
    for (const flowId of [...this.cache.keys()]) if (partitionOfFlow(flowId) === p) this.dropFlow(flowId);
  }

  /** Flows started by this replica and not yet seen ending, with their deadlines (admission control). */
  private readonly running = new Map<string, number>();

  /** How many more flows this replica may start now; the ingest stream holds the rest. */
  freeSlots(): number {
    if (this.running.size >= (this.d.maxRunning ?? 1_000)) {
      // A flow that ended on another replica is never seen here: let it go at its deadline.
      const now = Date.now();
      for (const [id, deadline] of this.running) if (deadline + 2_000 < now) this.running.delete(id);
    }
    return (this.d.maxRunning ?? 1_000) - this.running.size;
  }

  private markFinished(flowId: string) {
    this.running.delete(flowId);
    this.finished.set(flowId, true);
    if (this.finished.size > this.maxFinished) this.finished.delete(this.finished.keys().next().value!);
  }

  stop(): void {
    clearInterval(this.sweeper);
  }

  /** Writes everything held (graceful shutdown). */
  async flushAll(): Promise<void> {
    await Promise.all([...this.held.keys()].map((id) => this.withFlow(id, () => this.flush(id)).catch(() => undefined)));
  }

  /** Serialises work per flow id inside this process. */
  private withFlow<T>(flowId: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.chains.get(flowId) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.chains.set(flowId, tail);
    void tail.then(() => {
      if (this.chains.get(flowId) === tail) this.chains.delete(flowId);
    });
    return next;
  }

  private remember(state: FlowState, rev: number) {
    if (isTerminal(state)) {
      this.cache.delete(state.flowId);
      this.inputs.delete(state.flowId);
      this.markFinished(state.flowId);
      return;
    }
    this.cache.delete(state.flowId);
    this.cache.set(state.flowId, { state, rev });
    if (this.cache.size > this.maxCache) {
      const oldest = this.cache.keys().next().value!;
      this.cache.delete(oldest);
      this.inputs.delete(oldest);
    }
  }

  private async load(flowId: string, fresh = false): Promise<Cached | undefined> {
    if (!fresh) {
      // The cached state is the owner's working copy: mutated in place, written at boundaries.
      const c = this.cache.get(flowId);
      if (c) return c;
    }
    const e = await this.d.kv.get(flowId);
    if (!e || e.operation !== 'PUT' || e.value.length === 0) return undefined;
    return { state: JSON.parse(dec.decode(e.value)) as FlowState, rev: e.revision };
  }

  // ---------------------------------------------------------------- ingest

  async handleIngest(m: JsMsg): Promise<void> {
    let req: FlowRequest;
    try {
      req = this.decodeIngest(m);
    } catch (err) {
      const r = err instanceof Rejection ? err : new Rejection('invalid_argument', (err as Error).message);
      const tokens = m.subject.split('.');
      const tenant = tokens[2] ?? 'unknown';
      const flowId = this.flowIdFor(m, tenant, '');
      this.d.log.warn({ subject: m.subject, flowId, code: r.code, reason: r.message }, 'ingest message rejected; dead-lettered');
      await deadLetter(this.d.pub, m, 'ingest', { code: r.code, message: r.message, flowId });
      publishEvent(this.d.nc, tenant, { flowId, flow: tokens[3] ?? '', type: 'flow.rejected', status: 'rejected', message: r.message });
      m.term();
      return;
    }
    const claim = this.d.claimInput;
    if (claim && !req.inputRef && req.inputJson.length > claim.thresholdBytes) {
      // Big inputs stay out of the KV state and the task messages: they travel as a reference.
      try {
        req.inputRef = await claim.store(req.tenant, req.flowId, req.inputJson);
        req.inputJson = new Uint8Array();
      } catch (err) {
        this.d.log.warn({ flowId: req.flowId, err: (err as Error).message }, 'cannot store the input in S3; retrying');
        m.nak(Math.min(10_000, 500 * m.info.deliveryCount));
        return;
      }
    }
    await this.withFlow(req.flowId, () => this.start(req, m));
  }

  private flowIdFor(m: JsMsg, tenant: string, explicit: string): string {
    if (explicit) return explicit;
    const msgId = m.headers?.get('Nats-Msg-Id');
    return msgId ? deriveFlowId(tenant, msgId) : flowIdForSequence(m.info.streamSequence);
  }

  private decodeIngest(m: JsMsg): FlowRequest {
    const tokens = m.subject.split('.');
    if (tokens.length !== 4) throw new Rejection('invalid_argument', `subject must be jetflow.ingest.<tenant>.<flow>, got ${m.subject}`);
    const [, , tenant, flowName] = tokens as [string, string, string, string];
    const ctype = m.headers?.get('Content-Type') ?? '';
    if (ctype === INGEST_CONTENT_TYPE) {
      // Published by the ingest service, which validated it already.
      const req = fromBinary(FlowRequestSchema, m.data);
      if (!this.d.registry.get(req.flow)) throw new Rejection('invalid_argument', `unknown flow "${req.flow}"`);
      return req;
    }
    let body: unknown;
    if (ctype === 'application/protobuf' || ctype === 'application/x-protobuf') {
      try {
        const sub = fromBinary(SubmitFlowRequestSchema, m.data);
        body = {
          flow: sub.flow,
          // protobuf-es gives google.protobuf.Struct as a plain JSON object already.
          input: sub.input,
          ...(sub.callbackUrl ? { callbackUrl: sub.callbackUrl } : {}),
          ...(sub.idempotencyKey ? { idempotencyKey: sub.idempotencyKey } : {}),
          ...(sub.deadlineMs ? { deadlineMs: sub.deadlineMs } : {}),
          ...(Object.keys(sub.metadata).length ? { metadata: sub.metadata } : {}),
        };
      } catch (err) {
        throw new Rejection('invalid_argument', `body is not a SubmitFlowRequest: ${(err as Error).message}`);
      }
    } else {
      try {
        body = JSON.parse(dec.decode(m.data));
      } catch (err) {
        throw new Rejection('invalid_argument', `body is not valid JSON: ${(err as Error).message}`);
      }
      if (body && typeof body === 'object' && !Array.isArray(body) && (body as { flow?: unknown }).flow === undefined) (body as { flow: string }).flow = flowName;
    }
    let sub;
    try {
      sub = validateSubmission(body, { registry: this.d.registry, checkCallbackUrl: (u) => this.d.policy.checkUrl(u) });
    } catch (err) {
      throw new Rejection('invalid_argument', (err as Error).message);
    }
    if (sub.flow !== flowName) throw new Rejection('invalid_argument', `flow: body names "${sub.flow}" but the subject names "${flowName}"`);
    const key = m.headers?.get('Nats-Msg-Id') || sub.idempotencyKey || '';
    return create(FlowRequestSchema, {
      flowId: key ? deriveFlowId(tenant, key) : flowIdForSequence(m.info.streamSequence),
      tenant,
      flow: sub.flow,
      inputJson: encodeUtf8(JSON.stringify(sub.input)),
      callbackUrl: sub.callbackUrl ?? '',
      idempotencyKey: key,
      deadlineMs: sub.deadlineMs ?? 0,
      metadata: sub.metadata ?? {},
      submittedAtMs: BigInt(m.info.timestampNanos ? Math.floor(m.info.timestampNanos / 1e6) : Date.now()),
    });
  }

  private async start(req: FlowRequest, m: JsMsg): Promise<void> {
    const def = this.d.registry.get(req.flow)!;
    const now = Date.now();
    // The flow's trace: this start span when tracing (a NATS submission without a traceparent gets its
    // root here), else the submitter's header. Later spans of the flow fall back to it.
    const traceparent = activeTraceparent() ?? (m.headers?.get('traceparent') || undefined);
    let cur: Cached | undefined;
    let fresh = false;
    const state = newFlowState(
      {
        flowId: req.flowId,
        tenant: req.tenant,
        flow: req.flow,
        ...(req.inputJson.length || !req.inputRef ? { inputJson: dec.decode(req.inputJson) } : {}),
        ...(req.inputRef ? { inputRef: req.inputRef } : {}),
        ...(req.callbackUrl ? { callbackUrl: req.callbackUrl } : {}),
        ...(req.idempotencyKey ? { idempotencyKey: req.idempotencyKey } : {}),
        deadlineMs: req.deadlineMs,
        metadata: req.metadata,
        submittedAt: Number(req.submittedAtMs) || now,
        ...(traceparent ? { traceparent } : {}),
      },
      def,
      now,
    );
    try {
      const rev = await this.d.writer.create(req.flowId, encodeUtf8(JSON.stringify(state)));
      cur = { state, rev };
      fresh = true;
      this.running.set(req.flowId, state.deadlineAt);
      // The partition owner keeps the working copy; saves a KV read on the first result.
      if (this.d.ownsFlow?.(req.flowId)) {
        this.remember(state, rev);
        if (req.inputJson.length) this.inputs.set(req.flowId, req.inputJson);
      }
    } catch (err) {
      if (!/wrong last sequence|key exists/i.test((err as Error).message)) throw err;
      cur = await this.load(req.flowId, true);
      if (!cur) throw new Error(`flow ${req.flowId} exists but cannot be read`);
    }
    // A replayed or repeated submission re-derives the same publishes; JetStream collapses them.
    await this.publishEffects(cur.state, def, fresh ? [{ type: 'flow.started', stage: def.stages[0]!.name }] : []);
    if (!isTerminal(cur.state)) {
      const ctl = create(FlowControlSchema, { flowId: req.flowId, kind: 'deadline', dueAtMs: BigInt(cur.state.deadlineAt) });
      await this.d.pub.publish(resultSubject(this.d.partitions, req.flowId), toBinary(FlowControlSchema, ctl), { msgId: msgIds.deadline(req.flowId), headers: kindHeaders('control', req.flowId) });
    }
    m.ack();
  }

  // ---------------------------------------------------------------- partitions

  async handlePartition(m: JsMsg): Promise<void> {
    const kind = m.headers?.get('Jetflow-Kind');
    try {
      if (kind === 'result') {
        const r = decodeTaskResult(m.data);
        if (this.finished.has(r.flowId)) {
          m.ack();
          return;
        }
        await this.withFlow(r.flowId, () =>
          this.transition(r.flowId, m, (s, def, now) =>
            applyResult(
              s,
              def,
              {
                task: r.task,
                succeeded: r.status === TaskStatus.SUCCEEDED,
                cancelled: r.status === TaskStatus.CANCELLED,
                ...(r.outputJson.length ? { output: JSON.parse(dec.decode(r.outputJson)) as unknown } : {}),
                ...(r.outputRef ? { outputRef: r.outputRef } : {}),
                errorCode: r.errorCode,
                errorMessage: r.errorMessage,
                attempts: r.attempts,
                startedAt: Number(r.startedAtMs),
                finishedAt: Number(r.finishedAtMs),
                worker: r.worker,
              },
              now,
            ),
          ),
        );
        return;
      }
      if (kind === 'control') {
        const c = fromBinary(FlowControlSchema, m.data);
        if (c.kind === 'deadline') {
          const wait = Number(c.dueAtMs) - Date.now();
          if (this.finished.has(c.flowId)) {
            m.ack();
            return;
          }
          if (wait > 0) {
            // A durable timer: the message comes back when due, across restarts.
            m.nak(wait);
            return;
          }
          await this.withFlow(c.flowId, () => this.transition(c.flowId, m, (s, _def, now) => applyDeadline(s, now)));
          return;
        }
        if (c.kind === 'cancel') {
          await this.withFlow(c.flowId, () => this.transition(c.flowId, m, (s, _def, now) => applyCancel(s, c.reason, now)));
          return;
        }
      }
      throw new Error(`unknown partition message kind "${kind ?? ''}"`);
    } catch (err) {
      // The broker not answering (a NATS node died: no stream leader yet) is no sign of poison, however
      // often it repeats: dead-lettering then would end the flow's only copy of a result or timer.
      const brokerDown = isTransientNatsError(err);
      if ((!brokerDown && m.info.deliveryCount >= 5) || err instanceof SyntaxError || /unknown partition message|premature|invalid wire/i.test((err as Error).message)) {
        this.d.log.error({ err: (err as Error).message, subject: m.subject }, 'poison message on result partition; dead-lettered');
        await deadLetter(this.d.pub, m, 'result', { code: 'poison', message: (err as Error).message, flowId: m.headers?.get('Jetflow-Flow-Id') ?? '' });
        m.term();
        return;
      }
      this.d.log.warn({ err: (err as Error).message, subject: m.subject }, 'partition message failed; will retry');
      m.nak(Math.min(5_000, 250 * m.info.deliveryCount));
    }
  }

  private async transition(flowId: string, m: JsMsg, apply: (s: FlowState, def: FlowDef, now: number) => Transition): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const cur = await this.load(flowId, attempt > 0);
      if (!cur) {
        this.d.log.warn({ flowId, subject: m.subject }, 'message for an unknown or expired flow; dropped');
        m.ack();
        return;
      }
      const def = this.d.registry.get(cur.state.flow);
      if (!def) throw new Error(`flow ${flowId} uses unknown definition ${cur.state.flow}`);
      const stageBefore = cur.state.stage;
      const t = apply(cur.state, def, Date.now());
      const held = this.held.get(flowId);
      if (!t.changed) {
        if (held) {
          // Possibly a redelivery of a held result: it must not be acked before the state holding it is written.
          held.msgs.push(m);
          await this.flush(flowId);
          return;
        }
        // Duplicate or late message. A redelivery may mean a crash after the state write and before
        // the publishes: re-derive them (idempotent thanks to the message ids).
        if (m.info.redelivered) await this.publishEffects(cur.state, def, []);
        m.ack();
        return;
      }
      const boundary = isTerminal(cur.state) || cur.state.stage !== stageBefore;
      if (!boundary) {
        // Within a stage: keep the result in memory and ack it with the next write.
        if (held) held.msgs.push(m);
        else this.held.set(flowId, { msgs: [m], since: Date.now() });
        this.cache.set(flowId, cur);
        this.emitEvents(cur.state, t.events);
        return;
      }
      let rev: number;
      try {
        rev = await this.d.writer.update(flowId, encodeUtf8(JSON.stringify(cur.state)), cur.rev);
      } catch (err) {
        // Our in-memory state is ahead of what is stored: forget it so the replay starts from KV.
        this.dropFlow(flowId);
        if (/wrong last sequence/i.test((err as Error).message) && attempt < 5) continue; // another writer got there first
        throw err;
      }
      this.remember(cur.state, rev);
      await this.publishEffects(cur.state, def, t.events);
      const h = this.held.get(flowId);
      this.held.delete(flowId);
      for (const hm of h?.msgs ?? []) hm.ack();
      m.ack();
      return;
    }
  }

  /** Publishes what the state implies: tasks of the current stage, the callback job, events. */
  private async publishEffects(s: FlowState, def: FlowDef, events: Transition['events']): Promise<void> {
    const pubs: Array<Promise<unknown>> = [];
    const dispatch = tasksToDispatch(s, def);
    if (dispatch.length) {
      // What the tasks of one dispatch share (input, earlier outputs) is encoded once.
      const deps =
        s.stage > 0
          ? def.stages.slice(0, s.stage).flatMap((st) =>
              st.tasks.map((td) => {
                const ts = s.tasks[td.name]!;
                return { task: td.name, status: ts.status, outputJson: ts.output === undefined ? undefined : encodeUtf8(JSON.stringify(ts.output)), outputRef: ts.outputRef ?? '' };
              }),
            )
          : [];
      const shared = encodeTaskShared({
        flowId: s.flowId,
        tenant: s.tenant,
        flow: s.flow,
        flowVersion: s.version,
        stage: s.stage,
        ...(s.input !== undefined ? { inputJson: this.inputs.get(s.flowId) ?? encodeUtf8(s.input) } : {}),
        inputRef: s.inputRef ?? '',
        deps,
        deadlineAtMs: s.deadlineAt,
      });
      for (const td of dispatch) {
        const task = encodeTask(shared, {
          task: td.name,
          subject: td.subject,
          softLimitMs: td.softLimitMs,
          hardLimitMs: td.hardLimitMs,
          maxAttempts: td.maxAttempts,
          backoffInitialMs: td.backoff.initialMs,
          backoffMaxMs: td.backoff.maxMs,
          backoffMultiplier: td.backoff.multiplier,
          dispatchedAtMs: s.tasks[td.name]!.dispatchedAt ?? Date.now(),
        });
        const h = kindHeaders('task', s.flowId);
        if (s.traceparent) h.set('traceparent', s.traceparent);
        pubs.push(this.d.pub.publish(td.subject, task, { msgId: msgIds.task(s.flowId, s.stage, td.name), headers: h }));
      }
    }
    if (isTerminal(s) && (s.callbackUrl || this.d.historyJobs)) {
      const job = create(CallbackJobSchema, {
        deliveryId: deliveryIdOf(s.flowId),
        flowId: s.flowId,
        tenant: s.tenant,
        url: s.callbackUrl ?? '',
        bodyJson: encodeUtf8(JSON.stringify(callbackBody(s, def))),
      });
      const h = kindHeaders('callback', s.flowId);
      if (s.traceparent) h.set('traceparent', s.traceparent);
      pubs.push(this.d.pub.publish(callbackSubject(s.tenant), toBinary(CallbackJobSchema, job), { msgId: msgIds.callback(s.flowId), headers: h }));
    }
    await Promise.all(pubs);
    this.emitEvents(s, events);
    if (isTerminal(s) && events.some((e) => e.type === 'flow.completed')) await this.d.onTerminal?.(s);
  }

  /**
   * One event message per transition (not one per entry): the most significant entry names the
   * type; the tasks and stages it touched travel along. Keeps the events stream small per flow.
   */
  private emitEvents(s: FlowState, events: Transition['events']) {
    if (!events.length) return;
    const rank = (t: string) => (t === 'flow.completed' ? 5 : t === 'flow.started' ? 4 : t === 'stage.completed' ? 3 : t.startsWith('task.') && t !== 'task.dispatched' ? 2 : 1);
    const top = events.reduce((a, b) => (rank(b.type) > rank(a.type) ? b : a));
    const tasks = [...new Set(events.filter((e) => e.task && e.type !== 'task.dispatched').map((e) => e.task!))];
    const stage = events.find((e) => e.stage)?.stage ?? '';
    const message = events
      .filter((e) => e.message || e.type === 'stage.completed')
      .map((e) => (e.type === 'stage.completed' ? `stage ${e.stage} completed` : e.message!))
      .join('; ');
    publishEvent(this.d.nc, s.tenant, { flowId: s.flowId, flow: s.flow, status: s.status, type: top.type, ...(tasks.length ? { task: tasks.join(',') } : top.task ? { task: top.task } : {}), ...(stage ? { stage } : {}), ...(message ? { message } : {}) });
  }
}

export function kindHeaders(kind: string, flowId: string) {
  const h = natsHeaders();
  h.set('Jetflow-Kind', kind);
  h.set('Jetflow-Flow-Id', flowId);
  return h;
}
