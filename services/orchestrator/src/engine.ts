import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { headers as natsHeaders, type JsMsg, type KV, type NatsConnection } from 'nats';
import { CallbackJobSchema, FlowControlSchema, FlowRequestSchema, SubmitFlowRequestSchema, TaskStatus, type FlowRequest } from '@jetflow/proto';
import {
  applyCancel,
  applyDeadline,
  applyStart,
  applySignal,
  applySignalTimeout,
  signalTimeoutDue,
  SIGNAL_NAME_RE,
  SIGNAL_ID_RE,
  signalRecordKey,
  applyPauseSync,
  defPauseKey,
  pauseFlagKey,
  pausedByDefinition,
  signalIdOf,
  MAX_SIGNAL_PAYLOAD_BYTES,
  applyResult,
  callbackBody,
  DefinitionVersions,
  deliveryIdOf,
  deriveFlowId,
  failFlow,
  FLOW_ID_RE,
  flowIdForSequence,
  IDEMPOTENCY_KEY_RE,
  idempotencyClaimKey,
  idProblem,
  isTerminal,
  isValidId,
  msgIds,
  newFlowState,
  quoteId,
  resultProblem,
  startTimeOf,
  storedDefinition,
  submissionHash,
  pendingDispatches,
  childFlowKey,
  planOf,
  chunkToken,
  stagesOf,
  valueAt,
  withoutPath,
  mapCounts,
  DEFAULT_MAX_TASKS_PER_FLOW,
  type TaskError,
  type Dispatch,
  type TaskState,
  unstartableFlowState,
  validateSubmission,
  DEFAULT_PRIORITY,
  type CallbackPolicy,
  type DefinitionLookup,
  type FlowDef,
  type FlowRegistry,
  type FlowState,
  type Transition,
  keyNeedsInput,
  resolveLimitKey,
  type ConcurrencySpec,
  type RateLimitSpec,
} from '@jetflow/flows';
import {
  BUCKETS,
  SUBJECTS,
  callbackSubject,
  deadLetter,
  decodeTaskResult,
  encodeTaskResult,
  encodeTask,
  encodeTaskShared,
  isCasConflict,
  isTransientNatsError,
  publishEvent,
  resultSubject,
  bandOf,
  bandSubject,
  type JetStreamPublisher,
  type KvWriter,
  encodeUtf8,
  INGEST_CONTENT_TYPE,
} from '@jetflow/messaging';
import { flowTraceparent, noteFlowTrace, type Logger } from '@jetflow/logging';
import { ATTR, activeTraceparent, annotateActiveSpan } from '@jetflow/telemetry';

const dec = new TextDecoder();

/** A scheduled flow's start timer comes back at least this often, to rewrite its state before the KV TTL (24 h). */
export const START_REFRESH_MS = 6 * 3_600_000;

export { INGEST_CONTENT_TYPE } from '@jetflow/messaging';

export interface EngineDeps {
  nc: NatsConnection;
  /** Reads of flow state. */
  kv: KV;
  /** Writes of flow state (compare-and-set through the fast publisher). */
  writer: KvWriter;
  pub: JetStreamPublisher;
  registry: FlowRegistry;
  /**
   * The definitions store (KV jetflow_definitions, `<name>.v<version>.<hash>`): every definition a flow
   * starts on is stored first, so the flow finishes on it after the definitions change.
   */
  definitions: Pick<KV, 'get' | 'put'>;
  partitions: number;
  policy: CallbackPolicy;
  log: Logger;
  /** Called once a flow reaches a terminal state (history records, metrics). */
  onTerminal?: (s: FlowState) => Promise<void> | void;
  /** Longest time a task result waits in memory before its state is written (default 1 s). */
  holdMs?: number;
  /** Admission control (admission.ts): told of every flow this replica starts and of every flow it sees end. */
  admission?: { started(flowId: string, tenant: string, deadlineAt: number): void; ended(flowId: string): void };
  /** Whether this replica currently owns the flow's result partition. */
  ownsFlow?: (flowId: string) => boolean;
  /**
   * Publish the callback job for every finished flow (with an empty url when it has no callback):
   * its consumer records the flow's history, off the saga's path (JETFLOW_HISTORY).
   */
  historyJobs?: boolean;
  /**
   * KV jetflow_idempotency: a NATS-door submission with a key claims it there with its body's hash, as
   * HTTP and gRPC ones do in ingest, so the same key with another body is refused at any time.
   */
  idempotency?: Pick<KV, 'create' | 'get'>;
  /** KV jetflow_cancel: a cancel control is applied only if the ingest API set the flow's flag. */
  cancelFlags?: Pick<KV, 'get'>;
  /** KV jetflow_signals: a signal control is applied only with the record ingest wrote, whose payload it takes. */
  signals?: Pick<KV, 'get' | 'create'>;
  /**
   * KV jetflow_pauses: a pause control makes the flow's pause what its flag says (nothing else may set it);
   * a flow whose definition's flag is set starts paused, its own flag naming the definition.
   */
  pauses?: Pick<KV, 'get' | 'put' | 'delete'>;
  /** Task instances a NATS-door submission may make (JETFLOW_MAX_TASKS_PER_FLOW; default 10,000). */
  maxTasksPerFlow?: number;
  /** Where a NATS-door submission's inputRef may point (JETFLOW_INPUT_REF_PREFIXES, `{tenant}` = the subject's tenant). */
  inputRefPrefixes?: readonly string[];
  /**
   * Claim check of the NATS door: an input JSON over `thresholdBytes` is stored and the flow keeps only the ref.
   * `load` reads a stored input back (mapped tasks are cut from it, whichever door stored it).
   */
  claimInput?: { thresholdBytes: number; store(tenant: string, flowId: string, inputJson: Uint8Array): Promise<string>; load?(ref: string): Promise<unknown> };
  /**
   * A flow name the registry does not hold yet: read from the definitions store before the flow is refused
   * (a version registered a moment ago that this replica's watch has not brought yet).
   */
  findDefinition?: (name: string) => Promise<FlowDef | undefined>;
}

interface Cached {
  state: FlowState;
  rev: number;
}

interface MappedMemory {
  input?: unknown;
  /** Chunk outputs by task, sparse until every chunk is in. */
  outs: Map<string, unknown[]>;
  /** The encoded shared part of each mapped task's chunks. */
  shared: Map<string, Uint8Array>;
}

/**
 * Where a chunk's output is kept: a key of the flows bucket beside the state (the state holds one
 * character per chunk, not 10,000 outputs). Dotted keys are not flows to the listings; they expire with
 * the bucket's TTL like the state.
 */
export const chunkOutputKey = (flowId: string, task: string, chunk: number) => `${flowId}.o.${task}.${chunk}`;

class Rejection extends Error {
  constructor(
    readonly code: string,
    message: string,
    /** Who the refused message is about, when known: its dead letter and `flow.rejected` event name them. */
    readonly about: { tenant?: string; flowId?: string } = {},
  ) {
    super(message);
  }
}

/** A partition message that can never be applied, however often it is redelivered. */
class Unappliable extends Rejection {}

/**
 * A partition message that proves nothing: undecodable, addressed to another flow, of no known kind, or a
 * cancel without its flag. Anyone who may publish to the result partitions could have sent it, so it is
 * dead-lettered and the flow it names goes on untouched.
 */
class Refused extends Rejection {}

/** Whether a KV read found a value (a flag that is set), not nothing or a delete marker. */
async function isPut(entry: Promise<{ operation: string } | null>): Promise<boolean> {
  const e = await entry;
  return !!e && e.operation === 'PUT';
}

/** Decoding what anyone may publish: bytes that do not decode are refused, not held against the flow. */
function undecodable<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw new Refused('invalid_message', `${what} cannot be decoded: ${(err as Error).message}`);
  }
}

/** Decoding bytes off the bus: a failure is permanent (the same bytes come back), so the message is unappliable. */
function decoded<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw new Unappliable('invalid_message', `${what} cannot be decoded: ${(err as Error).message}`);
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
  /** Flows with mapped tasks: their parsed input, chunk outputs (also stored) and shared task parts. */
  private readonly mapped = new Map<string, MappedMemory>();
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
  private readonly versions: DefinitionVersions;
  /** Definitions already in the store, so a start costs no store access. */
  private readonly stored = new Map<FlowDef, Promise<void>>();

  constructor(private readonly d: EngineDeps) {
    this.holdMs = d.holdMs ?? 1_000;
    this.versions = new DefinitionVersions(d.registry, async (key) => {
      const e = await d.definitions.get(key);
      return e && e.operation === 'PUT' && e.value.length ? e.value : undefined;
    });
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
    this.mapped.delete(flowId);
    for (const m of h?.msgs ?? []) m.nak();
  }

  /** A partition moved to another replica: forget its flows and hand back unwritten results at once. */
  releasePartition(p: number, partitionOfFlow: (flowId: string) => number): void {
    for (const flowId of [...this.cache.keys()]) if (partitionOfFlow(flowId) === p) this.dropFlow(flowId);
  }

  private markFinished(flowId: string) {
    this.d.admission?.ended(flowId);
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
      this.mapped.delete(oldest);
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
    // A NATS-door submission for a flow registered a moment ago, before this replica's watch brought it.
    const named = m.subject.split('.');
    // A NATS-door signal: jetflow.ingest.<tenant>.signal.<flowId>.<name> (a submission's subject has four tokens).
    if (named.length === 6 && named[3] === 'signal' && `${named[0]}.${named[1]}` === SUBJECTS.ingest) return this.ingestSignal(m, named[2]!, named[4]!, named[5]!);
    if (this.d.findDefinition && named.length === 4 && `${named[0]}.${named[1]}` === SUBJECTS.ingest && !this.d.registry.get(named[3]!)) await this.d.findDefinition(named[3]!);
    let req: FlowRequest;
    try {
      let key: { key: string; hash: string } | undefined;
      try {
        ({ req, key } = this.decodeIngest(m));
      } catch (err) {
        // Whatever the bytes, headers and subject, the same message fails the same way: refused at once.
        throw err instanceof Rejection ? err : new Rejection('invalid_argument', (err as Error).message);
      }
      if (key) await this.claimKey(req.tenant, req.flowId, key);
    } catch (err) {
      if (!(err instanceof Rejection)) {
        // The idempotency bucket did not answer: no sign of a bad message; try again.
        this.d.log.warn({ subject: m.subject, err: (err as Error).message }, 'cannot claim the idempotency key; retrying');
        m.nak(Math.min(10_000, 500 * m.info.deliveryCount));
        return;
      }
      await this.refuseIngest(m, err);
      return;
    }
    // The NATS door's messages carry no Jetflow-Flow-Id header: the start span learns the id here.
    annotateActiveSpan({ [ATTR.flowId]: req.flowId });
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

  /**
   * An ingest message that cannot be accepted: dead-lettered with the reason at once (terminated, never
   * redelivered), and a `flow.rejected` event for its tenant when the subject names a valid one.
   */
  private async refuseIngest(m: JsMsg, r: Rejection): Promise<void> {
    const tokens = m.subject.split('.');
    const tenant = r.about.tenant ?? (isValidId('tenant', tokens[2]) ? tokens[2] : undefined);
    let flowId = r.about.flowId;
    if (!flowId && tenant) {
      if (tokens[1] === 'submit') flowId = isValidId('flowId', tokens[3]) ? tokens[3] : undefined;
      else {
        // The id the submission would have had, so its publisher can find the dead letter and the event.
        const key = m.headers?.get('Nats-Msg-Id') ?? '';
        flowId = IDEMPOTENCY_KEY_RE.test(key) ? deriveFlowId(tenant, key) : flowIdForSequence(m.info.streamSequence);
      }
    }
    if (flowId) annotateActiveSpan({ [ATTR.flowId]: flowId });
    this.d.log.warn({ subject: m.subject, flowId, code: r.code, reason: r.message }, 'ingest message rejected; dead-lettered');
    await deadLetter(this.d.pub, m, 'ingest', { code: r.code, message: r.message, ...(flowId ? { flowId } : {}) });
    if (tenant && flowId) {
      const flow = tokens[1] === 'ingest' && isValidId('flow', tokens[3]) ? tokens[3] : '';
      // A conflict leaves the flow that holds the key running: the event says so without a status.
      publishEvent(this.d.nc, tenant, { flowId, flow, type: 'flow.rejected', ...(r.code === 'idempotency_conflict' ? {} : { status: 'rejected' }), message: `${r.code}: ${r.message}` });
    }
    m.term();
  }

  /**
   * A signal through the NATS door (README, "Signals"): the tenant is the subject's (a tenant's account may
   * publish only under its own jetflow.ingest.<tenant>.>), the payload the body (JSON; empty: null), the
   * signal id Nats-Msg-Id (else the stream sequence, so a redelivery is the same signal). Recorded and
   * sent to the flow's partition as ingest does for HTTP; what cannot be accepted is dead-lettered at once.
   */
  private async ingestSignal(m: JsMsg, tenant: string, flowId: string, name: string): Promise<void> {
    try {
      const bad =
        idProblem('tenant', tenant) ??
        idProblem('flowId', flowId) ??
        (SIGNAL_NAME_RE.test(name) ? undefined : `signal name ${quoteId(name)} (letters, digits, _ or -, starting with a letter)`);
      if (bad) throw new Rejection('invalid_argument', `subject ${quoteId(m.subject)}: ${bad}`, { tenant });
      const key = m.headers?.get('Nats-Msg-Id') ?? '';
      if (key && !IDEMPOTENCY_KEY_RE.test(key)) throw new Rejection('invalid_argument', `Nats-Msg-Id ${quoteId(key)} is not an idempotency key`, { tenant, flowId });
      if (m.data.length > MAX_SIGNAL_PAYLOAD_BYTES)
        throw new Rejection('invalid_argument', `the payload is ${m.data.length} bytes; a signal carries at most ${MAX_SIGNAL_PAYLOAD_BYTES}`, { tenant, flowId });
      let payload: unknown = null;
      try {
        if (m.data.length) payload = JSON.parse(dec.decode(m.data)) as unknown;
      } catch (err) {
        throw new Rejection('invalid_argument', `body is not valid JSON: ${(err as Error).message}`, { tenant, flowId });
      }
      const e = await this.d.kv.get(flowId);
      const s = e && e.operation === 'PUT' && e.value.length ? (JSON.parse(dec.decode(e.value)) as FlowState) : undefined;
      if (!s || s.tenant !== tenant) throw new Rejection('not_found', `signal ${name} for flow ${flowId}, which tenant ${tenant} does not have`, { tenant, flowId });
      if (isTerminal(s)) throw new Rejection('conflict', `signal ${name} for flow ${flowId}, which already ended as ${s.status}`, { tenant, flowId });
      if (!this.d.signals) throw new Rejection('unavailable', 'signals are not configured on this orchestrator', { tenant, flowId });
      const id = signalIdOf(key || `nats-${m.info.streamSequence}`);
      const value = JSON.stringify({ payload });
      try {
        await this.d.signals.create(signalRecordKey(flowId, name, id), encodeUtf8(value));
      } catch (err) {
        if (!isCasConflict(err)) throw err;
        const prev = await this.d.signals.get(signalRecordKey(flowId, name, id));
        if (prev && prev.operation === 'PUT' && dec.decode(prev.value) !== value)
          throw new Rejection('idempotency_conflict', `signal id ${quoteId(id)} (Nats-Msg-Id) was already used for signal ${name} of flow ${flowId} with another payload`, {
            tenant,
            flowId,
          });
      }
      const ctl = create(FlowControlSchema, { flowId, kind: 'signal', signal: name, signalId: id });
      await this.d.pub.publish(resultSubject(this.d.partitions, flowId), toBinary(FlowControlSchema, ctl), { msgId: msgIds.signal(flowId, id), headers: kindHeaders('control', flowId) });
    } catch (err) {
      if (err instanceof Rejection) {
        // Dead-lettered at once; the sender's tenant hears why (an event without a status: the flow is unchanged).
        this.d.log.warn({ subject: m.subject, flowId, code: err.code, reason: err.message }, 'NATS-door signal rejected; dead-lettered');
        await deadLetter(this.d.pub, m, 'ingest', { code: err.code, message: err.message, ...(FLOW_ID_RE.test(flowId) ? { flowId } : {}) });
        if (isValidId('tenant', tenant) && FLOW_ID_RE.test(flowId)) publishEvent(this.d.nc, tenant, { flowId, flow: '', type: 'signal.rejected', message: `${err.code}: ${err.message}` });
        m.term();
        return;
      }
      this.d.log.warn({ subject: m.subject, err: (err as Error).message }, 'cannot record a NATS-door signal; retrying');
      m.nak(Math.min(10_000, 500 * m.info.deliveryCount));
      return;
    }
    m.ack();
  }

  /**
   * Claims a NATS-door submission's key in KV jetflow_idempotency with its body's hash (what ingest does
   * for HTTP and gRPC). The same key and body again (a publisher's retry after a lost PubAck, a
   * redelivery, the same submission through HTTP) passes, and start() finds the flow; another body is
   * refused. The claim precedes the state, so a crash between them is a redelivery that passes.
   */
  private async claimKey(tenant: string, flowId: string, c: { key: string; hash: string }): Promise<void> {
    const kv = this.d.idempotency;
    if (!kv) return;
    const k = idempotencyClaimKey(tenant, c.key);
    try {
      await kv.create(k, encodeUtf8(JSON.stringify({ flowId, hash: c.hash })));
      return;
    } catch (err) {
      if (!isCasConflict(err)) throw err;
    }
    const e = await kv.get(k);
    if (!e || e.operation !== 'PUT' || !e.value.length) return;
    let prev: { flowId?: unknown; hash?: unknown } | undefined;
    try {
      prev = JSON.parse(dec.decode(e.value)) as typeof prev;
    } catch {
      prev = undefined;
    }
    if (prev?.hash === c.hash) return;
    const held = typeof prev?.flowId === 'string' ? prev.flowId : flowId;
    throw new Rejection('idempotency_conflict', `idempotency key ${quoteId(c.key)} (Nats-Msg-Id) was already used with a different body (flow ${held}); this submission was not accepted`, {
      tenant,
      flowId: held,
    });
  }

  /**
   * A FlowRequest from what arrived. On jetflow.submit (the ingest service's, where no tenant may publish)
   * the pre-validated FlowRequest, checked against its subject. On the NATS door (jetflow.ingest) JSON or a
   * SubmitFlowRequest, validated like HTTP: the tenant is the subject's (the only one its sender may
   * publish to) and the flow id comes from the tenant and the key (Nats-Msg-Id), never from the body.
   */
  private decodeIngest(m: JsMsg): { req: FlowRequest; key?: { key: string; hash: string } } {
    const tokens = m.subject.split('.');
    const ctype = m.headers?.get('Content-Type') ?? '';
    const prefix = `${tokens[0]}.${tokens[1]}`;
    if (prefix === SUBJECTS.submit) return { req: this.decodeSubmitted(m, tokens, ctype) };
    if (prefix !== SUBJECTS.ingest || tokens.length !== 4) throw new Rejection('invalid_argument', `subject must be ${SUBJECTS.ingest}.<tenant>.<flow>, got ${quoteId(m.subject)}`);
    const [, , tenant, flowName] = tokens as [string, string, string, string];
    const badToken = idProblem('tenant', tenant) ?? idProblem('flow', flowName);
    if (badToken) throw new Rejection('invalid_argument', `subject ${quoteId(m.subject)}: ${badToken}`);
    if (ctype === INGEST_CONTENT_TYPE) {
      // Only the ingest service's own subject carries pre-validated submissions; here it would choose its tenant and flow id.
      throw new Rejection(
        'forbidden_content_type',
        `content type ${INGEST_CONTENT_TYPE} is not accepted on ${SUBJECTS.ingest}.>; publish JSON or a SubmitFlowRequest (application/protobuf)`,
        { tenant },
      );
    }
    let body: unknown;
    if (ctype === 'application/protobuf' || ctype === 'application/x-protobuf') {
      try {
        const sub = fromBinary(SubmitFlowRequestSchema, m.data);
        body = {
          flow: sub.flow,
          // protobuf-es gives google.protobuf.Struct as a plain JSON object already.
          ...(sub.inputRef && !sub.input ? { inputRef: sub.inputRef } : { input: sub.input, ...(sub.inputRef ? { inputRef: sub.inputRef } : {}) }),
          ...(sub.callbackUrl ? { callbackUrl: sub.callbackUrl } : {}),
          ...(sub.idempotencyKey ? { idempotencyKey: sub.idempotencyKey } : {}),
          ...(sub.deadlineMs ? { deadlineMs: sub.deadlineMs } : {}),
          ...(Object.keys(sub.metadata).length ? { metadata: sub.metadata } : {}),
          ...(sub.startAt ? { startAt: sub.startAt } : {}),
          ...(sub.delayMs ? { delayMs: sub.delayMs } : {}),
          ...(sub.priority ? { priority: sub.priority } : {}),
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
    // A delay counts from the message's arrival, so every redelivery computes the same start.
    const arrived = m.info.timestampNanos ? Math.floor(m.info.timestampNanos / 1e6) : Date.now();
    try {
      sub = validateSubmission(body, {
        registry: this.d.registry,
        checkCallbackUrl: (u) => this.d.policy.checkUrl(u),
        now: arrived,
        ...(this.d.maxTasksPerFlow ? { maxTasksPerFlow: this.d.maxTasksPerFlow } : {}),
        tenant,
        ...(this.d.inputRefPrefixes ? { inputRefPrefixes: this.d.inputRefPrefixes } : {}),
      });
    } catch (err) {
      throw new Rejection('invalid_argument', (err as Error).message);
    }
    if (sub.flow !== flowName) throw new Rejection('invalid_argument', `flow: body names "${sub.flow}" but the subject names "${flowName}"`);
    const msgId = m.headers?.get('Nats-Msg-Id') ?? '';
    if (msgId && !IDEMPOTENCY_KEY_RE.test(msgId))
      throw new Rejection('invalid_argument', `Nats-Msg-Id ${quoteId(msgId)} is not an idempotency key (printable ASCII without spaces, 1 to 256 characters)`);
    if (msgId && sub.idempotencyKey && sub.idempotencyKey !== msgId)
      throw new Rejection('invalid_argument', `idempotencyKey: the body names ${quoteId(sub.idempotencyKey)} but Nats-Msg-Id is ${quoteId(msgId)}; on NATS the key is the header`);
    const key = msgId || sub.idempotencyKey || '';
    const req = create(FlowRequestSchema, {
      flowId: key ? deriveFlowId(tenant, key) : flowIdForSequence(m.info.streamSequence),
      tenant,
      flow: sub.flow,
      // An inputRef travels as the reference (read back at the start, like a claim-checked input).
      inputJson: sub.inputRef ? new Uint8Array() : encodeUtf8(JSON.stringify(sub.input)),
      inputRef: sub.inputRef ?? '',
      callbackUrl: sub.callbackUrl ?? '',
      idempotencyKey: key,
      deadlineMs: sub.deadlineMs ?? 0,
      metadata: sub.metadata ?? {},
      submittedAtMs: BigInt(arrived),
      startAtMs: BigInt(startTimeOf(sub, arrived) ?? 0),
      priority: sub.priority ?? 0,
    });
    // The hash HTTP computes for the same submission (its body names the key), so both doors agree.
    return { req, ...(key ? { key: { key, hash: submissionHash({ ...sub, idempotencyKey: key }) } } : {}) };
  }

  /** A FlowRequest the ingest service validated, on jetflow.submit.<tenant>.<flowId>: it must agree with its subject. */
  private decodeSubmitted(m: JsMsg, tokens: string[], ctype: string): FlowRequest {
    if (tokens.length !== 4) throw new Rejection('invalid_argument', `subject must be ${SUBJECTS.submit}.<tenant>.<flowId>, got ${quoteId(m.subject)}`);
    const [, , tenant, flowId] = tokens as [string, string, string, string];
    const badToken = idProblem('tenant', tenant) ?? idProblem('flowId', flowId);
    if (badToken) throw new Rejection('invalid_argument', `subject ${quoteId(m.subject)}: ${badToken}`);
    if (ctype !== INGEST_CONTENT_TYPE)
      throw new Rejection('invalid_argument', `${SUBJECTS.submit}.> carries ${INGEST_CONTENT_TYPE} only, got content type ${quoteId(ctype)}`, { tenant, flowId });
    let req: FlowRequest;
    try {
      req = fromBinary(FlowRequestSchema, m.data);
    } catch (err) {
      throw new Rejection('invalid_argument', `body is not a FlowRequest: ${(err as Error).message}`, { tenant, flowId });
    }
    if (req.tenant !== tenant || req.flowId !== flowId)
      throw new Rejection('invalid_argument', `the FlowRequest names tenant ${quoteId(req.tenant)} and flow id ${quoteId(req.flowId)}, its subject ${tenant} and ${flowId}`, {
        tenant,
        flowId,
      });
    // A flow name this orchestrator does not know was accepted under other definitions: start() ends it failed.
    const badFlow = idProblem('flow', req.flow);
    if (badFlow) throw new Rejection('invalid_argument', badFlow, { tenant, flowId });
    return req;
  }

  /** Stores a definition before the first flow starts on it (once per process; an intact entry is kept). */
  private storeDefinition(def: FlowDef): Promise<void> {
    let p = this.stored.get(def);
    if (!p) {
      // Every writer of a key writes the same bytes (the key names their hash): no compare-and-set needed.
      p = (async () => {
        const { key, value } = storedDefinition(def);
        const e = await this.d.definitions.get(key);
        if (!e || e.operation !== 'PUT' || dec.decode(e.value) !== value) await this.d.definitions.put(key, encodeUtf8(value));
      })();
      this.stored.set(def, p);
      p.catch(() => this.stored.delete(def));
    }
    return p;
  }

  private async start(req: FlowRequest, m: JsMsg): Promise<void> {
    const def = this.d.registry.get(req.flow) ?? (await this.d.findDefinition?.(req.flow));
    const now = Date.now();
    // The flow's trace: this start span when tracing (a NATS submission without a traceparent gets its
    // root here), else the submitter's header, else one derived from the flow id (not sampled), so
    // every log line about the flow names a trace. Later spans of the flow fall back to it.
    const traceparent = activeTraceparent() ?? (m.headers?.get('traceparent') || undefined) ?? flowTraceparent(req.flowId);
    noteFlowTrace(req.flowId, traceparent);
    let cur: Cached | undefined;
    let fresh = false;
    const startReq = {
      flowId: req.flowId,
      tenant: req.tenant,
      flow: req.flow,
      ...(req.inputJson.length || !req.inputRef ? { inputJson: dec.decode(req.inputJson) } : {}),
      ...(req.inputRef ? { inputRef: req.inputRef } : {}),
      ...(req.callbackUrl ? { callbackUrl: req.callbackUrl } : {}),
      ...(req.idempotencyKey ? { idempotencyKey: req.idempotencyKey } : {}),
      deadlineMs: req.deadlineMs,
      metadata: req.metadata,
      // 0 (none, or a FlowRequest from before priorities) and anything out of range run at the default.
      ...(req.priority >= 1 && req.priority <= 10 && req.priority !== DEFAULT_PRIORITY ? { priority: req.priority } : {}),
      submittedAt: Number(req.submittedAtMs) || now,
      ...(traceparent ? { traceparent } : {}),
      ...(req.startAtMs ? { startAt: Number(req.startAtMs) } : {}),
      // A child flow (only jetflow.submit, where tenants may not publish, carries a parent).
      ...(req.parentFlowId && FLOW_ID_RE.test(req.parentFlowId) ? { parent: { flowId: req.parentFlowId, task: req.parentTask, token: req.parentToken, depth: req.depth || 1 } } : {}),
    };
    // Accepted by an ingest that knew the flow, queued while the definitions changed: it ends failed,
    // with a callback, instead of never.
    // A mapped task's chunks are cut from the input: one stored by reference (claim check) is read for it.
    let mapInput: unknown;
    // An input that cannot be had (missing, not JSON or JSON lines, too many chunks): the flow ends failed, naming it.
    let unreadable: TaskError | undefined;
    if (def && req.inputRef && !req.inputJson.length && planOf(def).order.some((t) => t.map) && this.d.claimInput?.load) {
      try {
        mapInput = await this.d.claimInput.load(req.inputRef);
        this.mappedOf(req.flowId).input = mapInput;
        const counts = mapCounts(def, mapInput);
        const max = this.d.maxTasksPerFlow ?? DEFAULT_MAX_TASKS_PER_FLOW;
        if (!counts.problems.length && counts.instances > max)
          unreadable = {
            task: '',
            code: 'invalid_argument',
            message: `the input at ${req.inputRef} would make ${counts.instances} task instances; at most ${max} per flow (JETFLOW_MAX_TASKS_PER_FLOW)`,
          };
      } catch (err) {
        const e = err as { reason?: unknown; name?: unknown; $metadata?: { httpStatusCode?: number } };
        // Missing, undecodable, or not ours to read (AccessDenied): a retry reads the same. Anything else (S3 down) is retried.
        if (e.reason === 'not_found' || e.reason === 'invalid_data' || e.reason === 'invalid_ref' || e.name === 'AccessDenied' || e.$metadata?.httpStatusCode === 403) {
          unreadable = { task: '', code: 'input_unreadable', message: `inputRef ${req.inputRef}: ${(err as Error).message}` };
        } else {
          this.d.log.warn({ flowId: req.flowId, ref: req.inputRef, err: (err as Error).message }, 'cannot read the input from S3 to cut its chunks; retrying');
          m.nak(Math.min(10_000, 500 * m.info.deliveryCount));
          return;
        }
      }
    }
    // A flow of a paused definition starts paused; its own flag names the definition, whose resume resumes it.
    // The definition's flag is read from the stream leader, not from a watch: a flow submitted right after
    // the pause answered (milliseconds, before a watch delivers the flag) must start paused too.
    let pausedByDef = false;
    if (def && !unreadable && this.d.pauses && (await isPut(this.d.pauses.get(defPauseKey(def.name))))) {
      await this.d.pauses.put(pauseFlagKey(req.flowId), encodeUtf8(pausedByDefinition(def.name)));
      pausedByDef = true;
    }
    const state = unreadable
      ? unstartableFlowState(startReq, unreadable, now)
      : def
        ? newFlowState({ ...startReq, ...(mapInput === undefined ? {} : { mapInput }), ...(pausedByDef ? { paused: true } : {}) }, def, now)
        : unstartableFlowState(
            startReq,
            { task: '', code: 'unknown_flow', message: `flow "${req.flow}" is not defined on this orchestrator (defined: ${this.d.registry.names().join(', ')})` },
            now,
          );
    // Stored before any state names it, so a restart with other definitions still finds it.
    if (def) await this.storeDefinition(def);
    try {
      const rev = await this.d.writer.create(req.flowId, encodeUtf8(JSON.stringify(state)));
      cur = { state, rev };
      fresh = true;
      // A scheduled flow takes no room until it starts (the start timer's handler tells admission then).
      if (state.status === 'running') this.d.admission?.started(req.flowId, req.tenant, state.deadlineAt);
      // The partition owner keeps the working copy; saves a KV read on the first result.
      if (this.d.ownsFlow?.(req.flowId)) {
        this.remember(state, rev);
        if (req.inputJson.length && !isTerminal(state)) this.inputs.set(req.flowId, req.inputJson);
      }
    } catch (err) {
      if (!isCasConflict(err)) throw err;
      cur = await this.load(req.flowId, true);
      if (!cur) throw new Error(`flow ${req.flowId} exists but cannot be read`);
    }
    if (fresh && pausedByDef) {
      // The definition was resumed meanwhile: its resume found this flow's flag before the state was there
      // (and deleted it), or listed the flags before this one was written (the definition's flag is gone
      // now, read after this flow's flag was written): resume now, this flow's flag deleted if it still names the definition.
      const pauses = this.d.pauses!;
      const flowFlag = await pauses.get(pauseFlagKey(req.flowId));
      let resume = !flowFlag || flowFlag.operation !== 'PUT';
      if (!resume && !(await isPut(pauses.get(defPauseKey(def!.name))))) {
        if (dec.decode(flowFlag!.value) === pausedByDefinition(def!.name)) await pauses.delete(pauseFlagKey(req.flowId));
        resume = true;
      }
      if (resume) {
        const ctl = create(FlowControlSchema, { flowId: req.flowId, kind: 'pause', reason: 'resume' });
        await this.d.pub.publish(resultSubject(this.d.partitions, req.flowId), toBinary(FlowControlSchema, ctl), {
          msgId: `${req.flowId}:pause:start`,
          headers: kindHeaders('control', req.flowId),
        });
      }
    }
    if (!fresh && !m.info.redelivered) {
      // Another copy of a submission that started already (a publisher's retry, the same key through
      // another door): its first message did the publishes, or comes back redelivered to do them. Doing
      // them again here would, past the streams' duplicate windows, dispatch tasks and callbacks twice.
      m.ack();
      return;
    }
    // A replayed submission re-derives the same publishes (JetStream collapses them), from the
    // definition the flow started on, which need not be the one loaded now.
    const runsOn = fresh ? def : isTerminal(cur.state) ? undefined : await this.versions.lookup(cur.state).then((r) => ('def' in r ? r.def : undefined));
    await this.publishEffects(
      cur.state,
      runsOn,
      fresh && def
        ? [
            cur.state.status === 'scheduled'
              ? { type: 'flow.scheduled', message: `starts at ${new Date(cur.state.startAt!).toISOString()}` }
              : isTerminal(cur.state)
                ? // Its input cannot be cut into the chunks its definition maps (ingest refuses such inputs).
                  { type: 'flow.completed', message: `failed: ${cur.state.endReason}` }
                : { type: 'flow.started', stage: stagesOf(def)[0]!.name },
          ]
        : fresh
          ? [{ type: 'flow.completed', message: `failed: ${cur.state.endReason}` }]
          : [],
    );
    if (cur.state.status === 'scheduled') {
      // A durable start timer like the deadline timer; its handler publishes the deadline timer before it starts the flow.
      const ctl = create(FlowControlSchema, { flowId: req.flowId, kind: 'start', dueAtMs: BigInt(cur.state.startAt!) });
      const nonce = Object.values(cur.state.tasks).find((t) => t.token)?.token ?? '';
      await this.d.pub.publish(resultSubject(this.d.partitions, req.flowId), toBinary(FlowControlSchema, ctl), {
        msgId: msgIds.start(req.flowId, nonce),
        headers: kindHeaders('control', req.flowId),
      });
    } else if (!isTerminal(cur.state)) {
      const ctl = create(FlowControlSchema, { flowId: req.flowId, kind: 'deadline', dueAtMs: BigInt(cur.state.deadlineAt) });
      const nonce = Object.values(cur.state.tasks).find((t) => t.token)?.token;
      await this.d.pub.publish(resultSubject(this.d.partitions, req.flowId), toBinary(FlowControlSchema, ctl), {
        msgId: msgIds.deadline(req.flowId, nonce),
        headers: kindHeaders('control', req.flowId),
      });
    }
    m.ack();
  }

  // ---------------------------------------------------------------- partitions

  async handlePartition(m: JsMsg): Promise<void> {
    const kind = m.headers?.get('Jetflow-Kind');
    // The flow a message is addressed to: the last token of jetflow.result.<p>.<flowId>.
    const addressed = m.subject.slice(m.subject.lastIndexOf('.') + 1);
    try {
      if (kind === 'result') {
        const r = undecodable('TaskResult', () => decodeTaskResult(m.data));
        if (this.finished.has(r.flowId)) {
          m.ack();
          return;
        }
        if (r.flowId !== addressed || !FLOW_ID_RE.test(r.flowId)) throw new Refused('invalid_message', `a result for flow ${quoteId(r.flowId)} was published to ${m.subject}`);
        // A worker reports CANCELLED when it sees the flow's cancel flag, which ingest sets before it publishes
        // the cancel control: the result may simply arrive first. With the flag set, the result applies the
        // cancel itself (the control then finds the flow ended), so the flow ends cancelled, never advancing
        // past a "cancelled" task to end partial.
        let cancelledBy: string | undefined;
        if (r.status === TaskStatus.CANCELLED && this.d.cancelFlags) {
          const flag = await this.d.cancelFlags.get(r.flowId);
          if (flag && flag.operation === 'PUT') cancelledBy = dec.decode(flag.value).slice(0, 500);
        }
        await this.withFlow(r.flowId, () =>
          this.transition(
            r.flowId,
            m,
            (s, runsOn, now) => {
              // First of all, whether the result answers a dispatch of this flow (its token): if not, nothing else counts.
              const bad = resultProblem(s, { task: r.task, token: r.resultToken, chunk: r.chunkIndex });
              if (bad) return { changed: false, events: [], rejected: { code: bad.code, message: bad.message } };
              if (cancelledBy !== undefined) return applyCancel(s, cancelledBy === 'cancelled' ? '' : cancelledBy, now);
              return 'problem' in runsOn
                ? failFlow(s, { task: r.task, code: 'definition_unavailable', message: runsOn.problem }, now)
                : applyResult(
                    s,
                    runsOn.def,
                    {
                      task: r.task,
                      token: r.resultToken,
                      chunk: r.chunkIndex,
                      succeeded: r.status === TaskStatus.SUCCEEDED,
                      cancelled: r.status === TaskStatus.CANCELLED,
                      ...(r.outputJson.length ? { output: decoded(`output of task "${r.task}"`, () => JSON.parse(dec.decode(r.outputJson)) as unknown) } : {}),
                      ...(r.outputRef ? { outputRef: r.outputRef } : {}),
                      errorCode: r.errorCode,
                      errorMessage: r.errorMessage,
                      attempts: r.attempts,
                      startedAt: Number(r.startedAtMs),
                      finishedAt: Number(r.finishedAtMs),
                      worker: r.worker,
                    },
                    now,
                  );
            },
            { needsDef: true, ifMissing: { code: 'unknown_flow', message: `a result for task ${quoteId(r.task)} of flow ${r.flowId}, which has no state (unknown or expired)` } },
          ),
        );
        return;
      }
      if (kind === 'control') {
        const c = undecodable('FlowControl', () => fromBinary(FlowControlSchema, m.data));
        if (c.flowId !== addressed || !FLOW_ID_RE.test(c.flowId))
          throw new Refused('invalid_message', `a ${quoteId(c.kind)} message for flow ${quoteId(c.flowId)} was published to ${m.subject}`);
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
          // The state's deadline decides, not the message's: a timer due early (anyone may publish one)
          // only waits for the real deadline.
          const due = await this.withFlow(c.flowId, async () => (await this.load(c.flowId))?.state.deadlineAt);
          if (due !== undefined && due > Date.now()) {
            m.nak(due - Date.now());
            return;
          }
          await this.withFlow(c.flowId, () => this.transition(c.flowId, m, (s, _def, now) => applyDeadline(s, now)));
          return;
        }
        if (c.kind === 'start') {
          await this.handleStartTimer(m, c.flowId, Number(c.dueAtMs));
          return;
        }
        if (c.kind === 'parent_ended') {
          // Anyone who may publish here could send one: it counts only if the child's own parent has ended.
          if (this.finished.has(c.flowId)) {
            m.ack();
            return;
          }
          const child = await this.withFlow(c.flowId, () => this.load(c.flowId));
          const parentId = child?.state.parent?.flowId;
          const parent = parentId ? await this.d.kv.get(parentId) : undefined;
          const ended = parent && parent.operation === 'PUT' && parent.value.length ? (JSON.parse(dec.decode(parent.value)) as FlowState) : undefined;
          if (child && !isTerminal(child.state) && !(ended && isTerminal(ended)))
            throw new Refused('unverified_cancel', `a parent_ended control for flow ${c.flowId} whose parent ${quoteId(parentId ?? '(none)')} has not ended`);
          await this.withFlow(c.flowId, () => this.transition(c.flowId, m, (s, _def, now) => applyCancel(s, c.reason, now)));
          return;
        }
        if (c.kind === 'cancel') {
          // Ingest sets the durable cancel flag before it publishes the control; no one else may set it.
          if (!this.finished.has(c.flowId) && this.d.cancelFlags) {
            const flag = await this.d.cancelFlags.get(c.flowId);
            if (!flag || flag.operation !== 'PUT')
              throw new Refused('unverified_cancel', `a cancel for flow ${c.flowId} whose cancel flag (${BUCKETS.cancel}) is not set; only the cancel API sets it`);
          }
          await this.withFlow(c.flowId, () => this.transition(c.flowId, m, (s, _def, now) => applyCancel(s, c.reason, now)));
          return;
        }
        if (c.kind === 'signal') {
          if (this.finished.has(c.flowId)) {
            m.ack();
            return;
          }
          const payload = await this.signalPayload(c.flowId, c.signal, c.signalId);
          await this.withFlow(c.flowId, () =>
            this.transition(
              c.flowId,
              m,
              (s, runsOn, now) =>
                'problem' in runsOn
                  ? failFlow(s, { task: '', code: 'definition_unavailable', message: runsOn.problem }, now)
                  : applySignal(s, runsOn.def, { id: c.signalId, name: c.signal, ...(payload !== undefined ? { payload } : {}) }, now),
              { needsDef: true, ifMissing: { code: 'unknown_flow', message: `signal ${c.signal} (${c.signalId}) for flow ${c.flowId}, which has no state (unknown or expired)` } },
            ),
          );
          return;
        }
        if (c.kind === 'pause') {
          // Pause and resume both send this: the flag (set or deleted by the API before) decides, so a forged or stale control cannot pause a flow.
          if (this.finished.has(c.flowId)) {
            m.ack();
            return;
          }
          const flag = this.d.pauses ? await this.d.pauses.get(pauseFlagKey(c.flowId)) : null;
          const paused = !!flag && flag.operation === 'PUT';
          await this.withFlow(c.flowId, () =>
            this.transition(c.flowId, m, (s, runsOn, now) => ('problem' in runsOn ? { changed: false, events: [] } : applyPauseSync(s, runsOn.def, paused, now)), { needsDef: true }),
          );
          return;
        }
        if (c.kind === 'signal_timeout') {
          await this.handleSignalTimeout(m, c.flowId, c.task, Number(c.dueAtMs));
          return;
        }
        throw new Refused('invalid_message', `unknown control kind ${quoteId(c.kind)}`);
      }
      throw new Refused('invalid_message', `unknown partition message kind ${quoteId(kind ?? '')}`);
    } catch (err) {
      if (err instanceof Refused) {
        this.d.log.warn({ flowId: addressed, code: err.code, reason: err.message, subject: m.subject }, 'refused message on result partition; dead-lettered, the flow is unchanged');
        await deadLetter(this.d.pub, m, 'result', { code: err.code, message: err.message, ...(FLOW_ID_RE.test(addressed) ? { flowId: addressed } : {}) });
        m.term();
        return;
      }
      // The broker not answering (a NATS node died: no stream leader yet) is no sign of poison, however
      // often it repeats: dead-lettering then would end the flow's only copy of a result or timer.
      const brokerDown = isTransientNatsError(err);
      const poison = err instanceof Unappliable;
      if (brokerDown || (!poison && m.info.deliveryCount < 5)) {
        this.d.log.warn({ err: (err as Error).message, subject: m.subject }, 'partition message failed; will retry');
        m.nak(Math.min(5_000, 250 * m.info.deliveryCount));
        return;
      }
      await this.rejectMessage(m, addressed, {
        code: err instanceof Unappliable ? err.code : 'invalid_message',
        message: `a message for this flow could not be applied: ${(err as Error).message}`,
      });
    }
  }

  /**
   * A scheduled flow's start timer. Naked until due, in steps of at most START_REFRESH_MS: each time it
   * comes back early it rewrites the scheduled state, whose KV entry would otherwise expire with the
   * bucket's TTL (24 h) before a start days ahead. When due (by the state's startAt: anyone may publish an
   * early timer), the deadline timer is published first, then the flow starts; a replay publishes the
   * same timer (its message id) and finds the flow started.
   */
  /**
   * The payload of a signal control, from the record ingest wrote before it published the control (KV
   * jetflow_signals). Anyone who may publish to the partitions could send a control: without its record
   * it is refused (dead-lettered, the flow unchanged), and its payload is the record's, never the message's.
   */
  private async signalPayload(flowId: string, name: string, id: string): Promise<unknown> {
    if (!SIGNAL_NAME_RE.test(name) || !SIGNAL_ID_RE.test(id)) throw new Refused('invalid_message', `a signal control for flow ${flowId} with name ${quoteId(name)} and id ${quoteId(id)}`);
    const rec = this.d.signals ? await this.d.signals.get(signalRecordKey(flowId, name, id)) : null;
    if (!rec || rec.operation !== 'PUT' || !rec.value.length)
      throw new Refused('unverified_signal', `a signal ${name} (${id}) for flow ${flowId} whose record (${BUCKETS.signals}) is not set; only the signal API sets it`);
    return undecodable(`the record of signal ${name} (${id})`, () => (JSON.parse(dec.decode(rec.value)) as { payload?: unknown }).payload);
  }

  /**
   * A waiting task's timeout timer (published when it became ready): naked until due; then the state
   * decides (a timer anyone published early only waits), and the task fails `timeout` if it still waits.
   */
  private async handleSignalTimeout(m: JsMsg, flowId: string, task: string, dueAtMs: number): Promise<void> {
    if (this.finished.has(flowId)) {
      m.ack();
      return;
    }
    if (dueAtMs > Date.now()) {
      m.nak(dueAtMs - Date.now());
      return;
    }
    const due = await this.withFlow(flowId, async () => {
      const cur = await this.load(flowId);
      const def = cur && this.versions.known(cur.state);
      return cur && def ? signalTimeoutDue(cur.state, def, task) : undefined;
    });
    if (due !== undefined && due > Date.now()) {
      m.nak(due - Date.now());
      return;
    }
    await this.withFlow(flowId, () =>
      this.transition(flowId, m, (s, runsOn, now) => ('problem' in runsOn ? { changed: false, events: [] } : applySignalTimeout(s, runsOn.def, task, now)), { needsDef: true }),
    );
  }

  /** A waiting task goes out as its timeout timer (a replay publishes the same one: its id names the dispatch's token). */
  private publishSignalTimer(s: FlowState, task: string, timeoutMs: number, ts: TaskState): Promise<unknown> {
    const ctl = create(FlowControlSchema, { flowId: s.flowId, kind: 'signal_timeout', task, dueAtMs: BigInt((ts.dispatchedAt ?? s.startedAt) + timeoutMs) });
    return this.d.pub.publish(resultSubject(this.d.partitions, s.flowId), toBinary(FlowControlSchema, ctl), {
      msgId: msgIds.signalTimeout(s.flowId, task, ts.token ?? ''),
      headers: kindHeaders('control', s.flowId),
    });
  }

  private async handleStartTimer(m: JsMsg, flowId: string, dueAtMs: number): Promise<void> {
    if (this.finished.has(flowId)) {
      m.ack();
      return;
    }
    const cur = await this.withFlow(flowId, () => this.load(flowId));
    if (!cur || isTerminal(cur.state)) {
      // Cancelled or ended, or gone: nothing to start. Gone is logged: it should not happen.
      if (!cur) this.d.log.error({ flowId }, 'the start timer of a scheduled flow found no state (expired?); dropped');
      m.ack();
      return;
    }
    if (cur.state.status !== 'scheduled') {
      // Started already: a timer back after a crash between the state write and the dispatch re-derives
      // the publishes (the transition's replay path; message ids collapse repeats).
      await this.withFlow(flowId, () => this.transition(flowId, m, () => ({ changed: false, events: [] }), { needsDef: true }));
      return;
    }
    const s = cur.state;
    const wait = Math.max(dueAtMs, s.startAt ?? 0) - Date.now();
    if (wait > 0) {
      if (wait > START_REFRESH_MS && m.info.deliveryCount > 1) {
        await this.withFlow(flowId, async () => {
          const c = await this.load(flowId, true);
          if (!c || c.state.status !== 'scheduled') return;
          const rev = await this.d.writer.update(flowId, encodeUtf8(JSON.stringify(c.state)), c.rev);
          if (this.d.ownsFlow?.(flowId) !== false) this.remember(c.state, rev);
        });
      }
      m.nak(Math.min(wait, START_REFRESH_MS));
      return;
    }
    const ctl = create(FlowControlSchema, { flowId, kind: 'deadline', dueAtMs: BigInt(s.deadlineAt) });
    const nonce = Object.values(s.tasks).find((t) => t.token)?.token;
    await this.d.pub.publish(resultSubject(this.d.partitions, flowId), toBinary(FlowControlSchema, ctl), { msgId: msgIds.deadline(flowId, nonce), headers: kindHeaders('control', flowId) });
    let started: FlowState | undefined;
    await this.withFlow(flowId, () =>
      this.transition(
        flowId,
        m,
        (st, runsOn, now) => {
          if ('problem' in runsOn)
            return st.status === 'scheduled' ? failFlow(st, { task: '', code: 'definition_unavailable', message: runsOn.problem }, now) : { changed: false, events: [] };
          const t = applyStart(st, runsOn.def, now);
          started = t.changed ? st : undefined;
          return t;
        },
        { needsDef: true },
      ),
    );
    if (started) this.d.admission?.started(flowId, started.tenant, started.deadlineAt);
  }

  /**
   * A message that can never be applied: the flow it is addressed to ends `failed`, naming why, with its
   * one callback, and the message is dead-lettered for inspection. Never silence.
   */
  private async rejectMessage(m: JsMsg, flowId: string, why: { code: string; message: string }): Promise<void> {
    if (FLOW_ID_RE.test(flowId)) {
      try {
        await this.withFlow(flowId, () => this.transition(flowId, m, (s, _def, now) => failFlow(s, { task: '', ...why }, now), { ifMissing: why }));
        return;
      } catch (err) {
        if (isTransientNatsError(err)) {
          m.nak(Math.min(5_000, 250 * m.info.deliveryCount));
          return;
        }
        // Dead-lettered all the same; the flow's durable deadline still ends it with its callback.
        this.d.log.error({ flowId, err: (err as Error).message }, 'cannot fail the flow of an unappliable message');
      }
    }
    this.d.log.error({ flowId, code: why.code, reason: why.message, subject: m.subject }, 'unappliable message on result partition; dead-lettered');
    await deadLetter(this.d.pub, m, 'result', { ...why, flowId });
    m.term();
  }

  private async transition(
    flowId: string,
    m: JsMsg,
    apply: (s: FlowState, runsOn: DefinitionLookup, now: number) => Transition,
    o: { needsDef?: boolean; ifMissing?: { code: string; message: string } } = {},
  ): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const cur = await this.load(flowId, attempt > 0);
      if (!cur) {
        if (o.ifMissing) {
          // A result (or an unappliable message) for a flow without state: kept for inspection.
          this.d.log.warn({ flowId, subject: m.subject, reason: o.ifMissing.message }, 'message for an unknown or expired flow; dead-lettered');
          await deadLetter(this.d.pub, m, 'result', { ...o.ifMissing, flowId });
          m.term();
          return;
        }
        this.d.log.warn({ flowId, subject: m.subject }, 'message for an unknown or expired flow; dropped');
        m.ack();
        return;
      }
      // The flow runs on the definition it started with, whatever is loaded now (DefinitionVersions).
      const known = this.versions.known(cur.state);
      const runsOn: DefinitionLookup = known ? { def: known } : o.needsDef && !isTerminal(cur.state) ? await this.versions.lookup(cur.state) : { problem: 'not looked up' };
      const def = 'def' in runsOn ? runsOn.def : undefined;
      const stageBefore = cur.state.stage;
      const statusBefore = cur.state.status;
      const t = apply(cur.state, runsOn, Date.now());
      const held = this.held.get(flowId);
      if (!t.changed) {
        if (held) {
          // Possibly a redelivery of a held result: it must not be acked before the state holding it is written.
          if (!t.rejected) {
            held.msgs.push(m);
            await this.flush(flowId);
            return;
          }
          await this.flush(flowId);
        }
        // Duplicate or late message. A redelivery may mean a crash after the state write and before
        // the publishes: re-derive them (idempotent thanks to the message ids).
        if (m.info.redelivered) await this.publishEffects(cur.state, def, []);
        await this.settle(m, flowId, t);
        return;
      }
      try {
        // A chunk's output goes beside the state before its result can be acked (by the next write).
        if (t.chunkOutput) await this.storeChunkOutput(flowId, t.chunkOutput);
      } catch (err) {
        this.dropFlow(flowId);
        throw err;
      }
      // A task started (its token is new) or the flow moved on: the state is written before anything is published.
      const boundary = isTerminal(cur.state) || cur.state.stage !== stageBefore || cur.state.status !== statusBefore || t.started === true;
      if (!boundary) {
        // Further chunks of a running task go out now: their ids and tokens derive from the written state,
        // and a replay of the held results frees the same chunks again.
        if (def && t.dispatched?.length) {
          try {
            await this.publishTasks(cur.state, def, t.dispatched);
          } catch (err) {
            this.dropFlow(flowId);
            throw err;
          }
        }
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
        if (isCasConflict(err) && attempt < 5) continue; // another writer got there first
        throw err;
      }
      this.remember(cur.state, rev);
      await this.publishEffects(cur.state, def, t.events, t.dispatched ?? []);
      const h = this.held.get(flowId);
      this.held.delete(flowId);
      for (const hm of h?.msgs ?? []) hm.ack();
      await this.settle(m, flowId, t);
      return;
    }
  }

  /** Acks the message a transition consumed, or dead-letters it when the transition rejected it. */
  private async settle(m: JsMsg, flowId: string, t: Transition): Promise<void> {
    if (!t.rejected) {
      m.ack();
      return;
    }
    if (t.changed)
      this.d.log.error({ flowId, code: t.rejected.code, reason: t.rejected.message, subject: m.subject }, 'unappliable message on result partition; the flow failed; dead-lettered');
    else this.d.log.warn({ flowId, code: t.rejected.code, reason: t.rejected.message, subject: m.subject }, 'message not applied; dead-lettered, the flow is unchanged');
    await deadLetter(this.d.pub, m, 'result', { ...t.rejected, flowId });
    m.term();
  }

  /**
   * Publishes what the state implies: task messages (`dispatches`, else every one the state says is
   * out: a replay), the callback job, events.
   */
  private async publishEffects(s: FlowState, def: FlowDef | undefined, events: Transition['events'], dispatches?: Dispatch[]): Promise<void> {
    const pubs: Array<Promise<unknown>> = [];
    // Without its definition a running flow dispatches nothing more (its next result fails it).
    if (def) pubs.push(this.publishTasks(s, def, dispatches ?? pendingDispatches(s, def)));
    const outs = isTerminal(s) && (s.callbackUrl || this.d.historyJobs || s.parent) ? await this.mappedOutputs(s) : undefined;
    if (isTerminal(s) && s.parent) pubs.push(this.answerParent(s, s.parent, callbackBody(s, (task) => outs?.get(task)).results));
    if (isTerminal(s) && def) pubs.push(this.endChildren(s, def));
    if (isTerminal(s) && (s.callbackUrl || this.d.historyJobs)) {
      const job = create(CallbackJobSchema, {
        deliveryId: deliveryIdOf(s.flowId),
        flowId: s.flowId,
        tenant: s.tenant,
        url: s.callbackUrl ?? '',
        bodyJson: encodeUtf8(JSON.stringify(callbackBody(s, (task) => outs?.get(task)))),
      });
      const h = kindHeaders('callback', s.flowId);
      if (s.traceparent) h.set('traceparent', s.traceparent);
      pubs.push(this.d.pub.publish(callbackSubject(s.tenant), toBinary(CallbackJobSchema, job), { msgId: msgIds.callback(s.flowId), headers: h }));
    }
    await Promise.all(pubs);
    if (isTerminal(s)) this.mapped.delete(s.flowId);
    this.emitEvents(s, events);
    if (isTerminal(s) && events.some((e) => e.type === 'flow.completed')) await this.d.onTerminal?.(s);
  }

  /**
   * A child flow ended: its end is the parent task's result (succeeded with the child's `results`, else
   * failed or cancelled with the child's status), with the parent task's token and its deterministic id.
   */
  private async answerParent(s: FlowState, p: NonNullable<FlowState['parent']>, results: unknown): Promise<void> {
    const ok = s.status === 'succeeded';
    const body = encodeTaskResult({
      flowId: p.flowId,
      task: p.task,
      stage: 0,
      status: ok ? TaskStatus.SUCCEEDED : s.status === 'cancelled' ? TaskStatus.CANCELLED : TaskStatus.FAILED,
      ...(ok
        ? { outputJson: encodeUtf8(JSON.stringify(results)) }
        : { errorCode: `child_${s.status}`, errorMessage: `child flow ${s.flowId} (${s.flow}) ended ${s.status}: ${s.endReason ?? ''}` }),
      attempts: 1,
      startedAtMs: s.startedAt,
      finishedAtMs: s.finishedAt ?? Date.now(),
      worker: `flow:${s.flowId}`,
      resultToken: p.token,
    });
    await this.d.pub.publish(resultSubject(this.d.partitions, p.flowId), body, { msgId: msgIds.result(p.flowId, p.task), headers: kindHeaders('result', p.flowId) });
  }

  /** A parent flow ended (cancel, deadline, a failure): each child it started and did not hear back from is told to end. */
  private async endChildren(s: FlowState, def: FlowDef): Promise<void> {
    const pubs: Array<Promise<unknown>> = [];
    for (const pt of planOf(def).order) {
      const ts = s.tasks[pt.name];
      if (!pt.child || !ts?.dispatchedAt || ts.status === 'succeeded' || ts.status === 'failed') continue;
      const child = deriveFlowId(s.tenant, childFlowKey(s.flowId, pt.name));
      const ctl = create(FlowControlSchema, { flowId: child, kind: 'parent_ended', reason: `parent flow ${s.flowId} ended ${s.status}` });
      pubs.push(this.d.pub.publish(resultSubject(this.d.partitions, child), toBinary(FlowControlSchema, ctl), { msgId: `${child}:parent-ended`, headers: kindHeaders('control', child) }));
    }
    await Promise.all(pubs);
  }

  /**
   * A child-flow task starts its child: a FlowRequest on jetflow.submit (where only the services publish)
   * with an id derived from the parent and task, so a replay starts the same child (its state exists, so
   * the copy does nothing), the parent's input and what is left of its deadline.
   */
  private async startChild(s: FlowState, pt: { name: string; child?: string }, token: string): Promise<void> {
    const childId = deriveFlowId(s.tenant, childFlowKey(s.flowId, pt.name));
    const req = create(FlowRequestSchema, {
      flowId: childId,
      tenant: s.tenant,
      flow: pt.child!,
      inputJson: s.input !== undefined ? (this.inputs.get(s.flowId) ?? encodeUtf8(s.input)) : new Uint8Array(),
      inputRef: s.inputRef ?? '',
      deadlineMs: Math.max(100, Math.min(4_000_000_000, s.deadlineAt - Date.now())),
      metadata: s.metadata,
      submittedAtMs: BigInt(Date.now()),
      // A child runs at its parent's priority.
      priority: s.priority ?? 0,
      parentFlowId: s.flowId,
      parentTask: pt.name,
      parentToken: token,
      depth: (s.parent?.depth ?? 0) + 1,
    });
    const h = natsHeaders();
    h.set('Content-Type', INGEST_CONTENT_TYPE);
    h.set('Jetflow-Flow-Id', childId);
    if (s.priority) h.set('Jetflow-Priority', String(s.priority));
    if (s.traceparent) h.set('traceparent', s.traceparent);
    await this.d.pub.publish(`${SUBJECTS.submit}.${s.tenant}.${childId}`, toBinary(FlowRequestSchema, req), { msgId: `${childId}:child-start`, headers: h });
  }

  /**
   * Task messages, with deterministic ids (`<flow>:<level>:<task>`, a chunk's `…:<task>:<index>`). What
   * the tasks of one task share (input, the outputs of what it needs) is encoded once; a mapped task's
   * chunks share the input without the mapped array, and each carries its own items.
   */
  private async publishTasks(s: FlowState, def: FlowDef, dispatches: Dispatch[]): Promise<void> {
    if (!dispatches.length || s.status !== 'running') return;
    const plan = planOf(def);
    const pubs: Array<Promise<unknown>> = [];
    const mem = this.mappedOf(s.flowId);
    const once = new Map<string, Uint8Array>();
    for (const d of dispatches) {
      const pt = plan.byName.get(d.task);
      const ts = s.tasks[d.task];
      if (!pt || !ts) continue;
      if (pt.signal) {
        pubs.push(this.publishSignalTimer(s, pt.name, pt.signal.timeoutMs, ts));
        continue;
      }
      if (pt.child) {
        pubs.push(this.startChild(s, pt, ts.token ?? ''));
        continue;
      }
      const chunked = pt.map !== undefined && ts.chunks !== undefined && d.chunk !== undefined;
      let shared = mem.shared.get(pt.name) ?? once.get(pt.name);
      if (!shared) {
        const deps = [];
        for (const name of pt.deps) {
          const dt = s.tasks[name];
          if (!dt) continue;
          const out = dt.chunks !== undefined ? (dt.status === 'succeeded' ? await this.outputsOf(s, name, dt) : undefined) : dt.output;
          deps.push({ task: name, status: dt.status, outputJson: out === undefined ? undefined : encodeUtf8(JSON.stringify(out)), outputRef: dt.outputRef ?? '' });
        }
        let inputJson = s.input !== undefined ? (this.inputs.get(s.flowId) ?? encodeUtf8(s.input)) : undefined;
        // A chunk carries the input without the mapped array, inline even when the whole input is in S3.
        if (pt.map) inputJson = encodeUtf8(JSON.stringify(withoutPath((await this.parsedInput(s)) as Record<string, unknown>, pt.map.path)));
        shared = encodeTaskShared({
          flowId: s.flowId,
          tenant: s.tenant,
          flow: s.flow,
          flowVersion: s.version,
          stage: pt.level,
          ...(inputJson !== undefined ? { inputJson } : {}),
          inputRef: pt.map ? '' : (s.inputRef ?? ''),
          deps,
          deadlineAtMs: s.deadlineAt,
        });
        // A mapped task's chunks go out over many transitions: its shared part is kept with the flow.
        if (pt.map) mem.shared.set(pt.name, shared);
        else once.set(pt.name, shared);
      }
      let items: Uint8Array | undefined;
      if (chunked) {
        const all = valueAt(await this.parsedInput(s), pt.map!.path);
        const size = pt.map!.chunkSize;
        items = encodeUtf8(JSON.stringify(Array.isArray(all) ? all.slice(d.chunk! * size, (d.chunk! + 1) * size) : []));
      }
      const task = encodeTask(shared, {
        task: pt.name,
        subject: pt.subject,
        softLimitMs: pt.softLimitMs,
        hardLimitMs: pt.hardLimitMs,
        maxAttempts: pt.maxAttempts,
        backoffInitialMs: pt.backoff.initialMs,
        backoffMaxMs: pt.backoff.maxMs,
        backoffMultiplier: pt.backoff.multiplier,
        dispatchedAtMs: ts.dispatchedAt ?? Date.now(),
        resultToken: chunked ? chunkToken(ts.token ?? '', d.chunk!) : (ts.token ?? ''),
        ...(chunked ? { chunkIndex: d.chunk!, chunkCount: ts.chunks!, itemsJson: items! } : {}),
        ...(pt.concurrency || pt.rateLimit ? await this.limitsOf(s, pt) : {}),
        ...(s.priority ? { priority: s.priority } : {}),
      });
      const h = kindHeaders('task', s.flowId);
      if (s.traceparent) h.set('traceparent', s.traceparent);
      // Its priority's band of the subject (topology.ts, PRIORITY_BANDS): the default is the subject itself.
      const subject = s.priority ? bandSubject(pt.subject, bandOf(s.priority)) : pt.subject;
      pubs.push(this.d.pub.publish(subject, task, { msgId: msgIds.task(s.flowId, pt.level, pt.name, chunked ? d.chunk : undefined), headers: h }));
    }
    await Promise.all(pubs);
  }

  /** A task's concurrency and rate limits with their keys' values for this flow (the worker runtime enforces them). */
  private async limitsOf(
    s: FlowState,
    pt: { concurrency?: ConcurrencySpec; rateLimit?: RateLimitSpec },
  ): Promise<{ concurrencyLimit?: number; concurrencyKey?: string; ratePerSecond?: number; rateKey?: string }> {
    const keyOf = async (key: string) => resolveLimitKey(key, { tenant: s.tenant, flowId: s.flowId, input: keyNeedsInput(key) ? await this.parsedInput(s) : undefined });
    return {
      ...(pt.concurrency ? { concurrencyLimit: pt.concurrency.limit, concurrencyKey: await keyOf(pt.concurrency.key) } : {}),
      ...(pt.rateLimit ? { ratePerSecond: pt.rateLimit.perSecond, rateKey: await keyOf(pt.rateLimit.key) } : {}),
    };
  }

  /** What this replica keeps of a flow with mapped tasks: the parsed input, chunk outputs, shared task parts. */
  private mappedOf(flowId: string): MappedMemory {
    let m = this.mapped.get(flowId);
    if (!m) {
      m = { outs: new Map(), shared: new Map() };
      this.mapped.set(flowId, m);
    }
    return m;
  }

  /** The flow's input as an object (inline, or read back from S3 once per flow and replica). */
  private async parsedInput(s: FlowState): Promise<unknown> {
    const m = this.mappedOf(s.flowId);
    if (m.input === undefined) {
      if (s.input !== undefined) m.input = JSON.parse(s.input) as unknown;
      else if (s.inputRef && this.d.claimInput?.load) m.input = await this.d.claimInput.load(s.inputRef);
      else m.input = {};
    }
    return m.input;
  }

  /** A chunk's output, stored beside the flow's state (`<flowId>.o.<task>.<index>`) before its result is acked. */
  private async storeChunkOutput(flowId: string, o: { task: string; chunk: number; value: unknown }): Promise<void> {
    await this.d.writer.put(chunkOutputKey(flowId, o.task, o.chunk), encodeUtf8(JSON.stringify(o.value ?? null)));
    const mem = this.mappedOf(flowId);
    let arr = mem.outs.get(o.task);
    if (!arr) mem.outs.set(o.task, (arr = []));
    arr[o.chunk] = o.value ?? null;
  }

  /** The outputs of a succeeded mapped task in chunk order: from memory, else read back from the store (after a restart or a move). */
  private async outputsOf(s: FlowState, task: string, ts: TaskState): Promise<unknown[] | undefined> {
    const n = ts.chunks ?? 0;
    const mem = this.mappedOf(s.flowId);
    let arr = mem.outs.get(task);
    if (!arr) mem.outs.set(task, (arr = []));
    const missing: number[] = [];
    for (let i = 0; i < n; i++) if (!(i in arr)) missing.push(i);
    let lost = 0;
    for (let at = 0; at < missing.length; at += 256) {
      await Promise.all(
        missing.slice(at, at + 256).map(async (i) => {
          const e = await this.d.kv.get(chunkOutputKey(s.flowId, task, i));
          if (!e || e.operation !== 'PUT' || !e.value.length) lost++;
          else arr[i] = JSON.parse(dec.decode(e.value)) as unknown;
        }),
      );
    }
    if (lost) {
      // Expired or deleted beside a live state: the dependents and the callback say so rather than get a short array.
      this.d.log.error({ flowId: s.flowId, task, lost }, 'chunk outputs missing from the store');
      return undefined;
    }
    return arr.slice(0, n);
  }

  /** Every succeeded mapped task's outputs (for the callback; an internal one's are left out of it). */
  private async mappedOutputs(s: FlowState): Promise<Map<string, unknown[]>> {
    const out = new Map<string, unknown[]>();
    for (const [name, ts] of Object.entries(s.tasks)) {
      const o = ts.chunks !== undefined && ts.status === 'succeeded' && !ts.internal ? await this.outputsOf(s, name, ts) : undefined;
      if (o) out.set(name, o);
    }
    return out;
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
    publishEvent(this.d.nc, s.tenant, {
      flowId: s.flowId,
      flow: s.flow,
      status: s.status,
      type: top.type,
      ...(tasks.length ? { task: tasks.join(',') } : top.task ? { task: top.task } : {}),
      ...(stage ? { stage } : {}),
      ...(message ? { message } : {}),
    });
  }
}

export function kindHeaders(kind: string, flowId: string) {
  const h = natsHeaders();
  h.set('Jetflow-Kind', kind);
  h.set('Jetflow-Flow-Id', flowId);
  return h;
}
