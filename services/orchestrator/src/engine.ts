import { create, fromBinary, toBinary, fromJson, type JsonValue } from '@bufbuild/protobuf';
import { headers as natsHeaders, type JsMsg, type KV, type NatsConnection } from 'nats';
import {
  CallbackJobSchema,
  FlowControlSchema,
  FlowRequestSchema,
  SubmitFlowRequestSchema,
  TaskResultSchema,
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
import { callbackSubject, deadLetter, publishEvent, resultSubject, type JetStreamPublisher } from '../../../libs/messaging/src/index.js';
import type { Logger } from '../../../libs/logging/src/index.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

export { INGEST_CONTENT_TYPE } from '../../../libs/messaging/src/index.js';
import { INGEST_CONTENT_TYPE } from '../../../libs/messaging/src/index.js';

export interface EngineDeps {
  nc: NatsConnection;
  kv: KV;
  pub: JetStreamPublisher;
  registry: FlowRegistry;
  partitions: number;
  policy: CallbackPolicy;
  log: Logger;
  /** Called once a flow reaches a terminal state (history records, metrics). */
  onTerminal?: (s: FlowState) => Promise<void> | void;
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
  private readonly maxCache = 20_000;

  constructor(private readonly d: EngineDeps) {}

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
      return;
    }
    this.cache.delete(state.flowId);
    this.cache.set(state.flowId, { state, rev });
    if (this.cache.size > this.maxCache) this.cache.delete(this.cache.keys().next().value!);
  }

  private async load(flowId: string, fresh = false): Promise<Cached | undefined> {
    if (!fresh) {
      const c = this.cache.get(flowId);
      if (c) return { state: structuredClone(c.state), rev: c.rev };
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
          input: sub.input ? (JSON.parse(JSON.stringify(sub.input)) as unknown) : undefined,
          ...(sub.callbackUrl ? { callbackUrl: sub.callbackUrl } : {}),
          ...(sub.idempotencyKey ? { idempotencyKey: sub.idempotencyKey } : {}),
          ...(sub.deadlineMs ? { deadlineMs: sub.deadlineMs } : {}),
          ...(Object.keys(sub.metadata).length ? { metadata: sub.metadata } : {}),
        };
        // google.protobuf.Struct → plain JSON
        if (sub.input) body = { ...(body as object), input: structToJson(sub.input) };
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
      inputJson: enc.encode(JSON.stringify(sub.input)),
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
    const traceparent = m.headers?.get('traceparent') || undefined;
    let cur: Cached | undefined;
    let fresh = false;
    const state = newFlowState(
      {
        flowId: req.flowId,
        tenant: req.tenant,
        flow: req.flow,
        inputJson: dec.decode(req.inputJson),
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
      const rev = await this.d.kv.create(req.flowId, enc.encode(JSON.stringify(state)));
      cur = { state, rev };
      fresh = true;
    } catch (err) {
      if (!/wrong last sequence|key exists/i.test((err as Error).message)) throw err;
      cur = await this.load(req.flowId, true);
      if (!cur) throw new Error(`flow ${req.flowId} exists but cannot be read`);
    }
    // A replayed or repeated submission re-derives the same publishes; JetStream collapses them.
    await this.publishEffects(cur.state, def, fresh ? [{ type: 'flow.started' }, ...def.stages[0]!.tasks.map((t) => ({ type: 'task.dispatched', task: t.name, stage: def.stages[0]!.name }))] : []);
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
        const r = fromBinary(TaskResultSchema, m.data);
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
      if (m.info.deliveryCount >= 5 || err instanceof SyntaxError || /unknown partition message|premature|invalid wire/i.test((err as Error).message)) {
        this.d.log.error({ err: (err as Error).message, subject: m.subject }, 'poison message on result partition; dead-lettered');
        await deadLetter(this.d.pub, m, 'result', { code: 'poison', message: (err as Error).message, flowId: m.headers?.get('Jetflow-Flow-Id') ?? '' });
        m.term();
        return;
      }
      this.d.log.warn({ err: (err as Error).message, subject: m.subject }, 'partition message failed; will retry');
      m.nak(250 * m.info.deliveryCount);
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
      const t = apply(cur.state, def, Date.now());
      if (!t.changed) {
        // Duplicate or late message. A redelivery may mean a crash after the state write and before
        // the publishes: re-derive them (idempotent thanks to the message ids).
        if (m.info.redelivered) await this.publishEffects(cur.state, def, []);
        m.ack();
        return;
      }
      let rev: number;
      try {
        rev = await this.d.kv.update(flowId, enc.encode(JSON.stringify(cur.state)), cur.rev);
      } catch (err) {
        if (/wrong last sequence/i.test((err as Error).message) && attempt < 5) {
          this.cache.delete(flowId);
          continue;
        }
        throw err;
      }
      this.remember(cur.state, rev);
      await this.publishEffects(cur.state, def, t.events);
      m.ack();
      return;
    }
  }

  /** Publishes what the state implies: tasks of the current stage, the callback job, events. */
  private async publishEffects(s: FlowState, def: FlowDef, events: Transition['events']): Promise<void> {
    const pubs: Array<Promise<unknown>> = [];
    const dispatch = tasksToDispatch(s, def);
    if (dispatch.length) {
      const deps =
        s.stage > 0
          ? def.stages.slice(0, s.stage).flatMap((st) =>
              st.tasks.map((td) => {
                const ts = s.tasks[td.name]!;
                return { task: td.name, status: ts.status, outputJson: ts.output === undefined ? new Uint8Array() : enc.encode(JSON.stringify(ts.output)), outputRef: ts.outputRef ?? '' };
              }),
            )
          : [];
      const inputJson = s.input !== undefined ? enc.encode(s.input) : new Uint8Array();
      for (const td of dispatch) {
        const task = create(TaskSchema, {
          flowId: s.flowId,
          tenant: s.tenant,
          flow: s.flow,
          flowVersion: s.version,
          stage: s.stage,
          task: td.name,
          subject: td.subject,
          inputJson,
          inputRef: s.inputRef ?? '',
          deps,
          softLimitMs: td.softLimitMs,
          hardLimitMs: td.hardLimitMs,
          maxAttempts: td.maxAttempts,
          backoffInitialMs: td.backoff.initialMs,
          backoffMaxMs: td.backoff.maxMs,
          deadlineAtMs: BigInt(s.deadlineAt),
          dispatchedAtMs: BigInt(s.tasks[td.name]!.dispatchedAt ?? Date.now()),
        });
        const h = kindHeaders('task', s.flowId);
        if (s.traceparent) h.set('traceparent', s.traceparent);
        pubs.push(this.d.pub.publish(td.subject, toBinary(TaskSchema, task), { msgId: msgIds.task(s.flowId, s.stage, td.name), headers: h }));
      }
    }
    if (isTerminal(s) && s.callbackUrl) {
      const job = create(CallbackJobSchema, {
        deliveryId: deliveryIdOf(s.flowId),
        flowId: s.flowId,
        tenant: s.tenant,
        url: s.callbackUrl,
        bodyJson: enc.encode(JSON.stringify(callbackBody(s, def))),
      });
      const h = kindHeaders('callback', s.flowId);
      if (s.traceparent) h.set('traceparent', s.traceparent);
      pubs.push(this.d.pub.publish(callbackSubject(s.tenant), toBinary(CallbackJobSchema, job), { msgId: msgIds.callback(s.flowId), headers: h }));
    }
    await Promise.all(pubs);
    for (const e of events) {
      publishEvent(this.d.nc, s.tenant, { flowId: s.flowId, flow: s.flow, status: s.status, type: e.type, ...(e.task ? { task: e.task } : {}), ...(e.stage ? { stage: e.stage } : {}), ...(e.message ? { message: e.message } : {}) });
    }
    if (isTerminal(s) && events.some((e) => e.type === 'flow.completed')) await this.d.onTerminal?.(s);
  }
}

export function kindHeaders(kind: string, flowId: string) {
  const h = natsHeaders();
  h.set('Jetflow-Kind', kind);
  h.set('Jetflow-Flow-Id', flowId);
  return h;
}

// google.protobuf.Struct as protobuf-es gives it (JsonObject already) → plain JSON.
function structToJson(v: unknown): JsonValue {
  return JSON.parse(JSON.stringify(v)) as JsonValue;
}
void fromJson;
