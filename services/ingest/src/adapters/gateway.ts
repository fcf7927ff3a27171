import { randomUUID } from 'node:crypto';
import { create, toBinary } from '@bufbuild/protobuf';
import { Events, headers as natsHeaders, type KV, type NatsConnection } from 'nats';
import { FlowControlSchema, FlowRequestSchema } from '@jetflow/proto';
import { defPauseKey, idempotencyClaimKey, msgIds, pauseFlagKey, pausedByDefinition, signalRecordKey, type FlowState, type Submission } from '@jetflow/flows';
import { JetflowError, ErrorCodes } from '@jetflow/errors';
import { INGEST_CONTENT_TYPE, JetStreamApiCodes, isCasConflict, isJsError, resultSubject, retryTransient, subjectPauseKey, submitSubject, type JetStreamPublisher } from '@jetflow/messaging';
import type { Gateway } from '../handlers/flows.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Stores an input too large to travel in messages (S3) and returns its reference. */
export interface InputClaimCheck {
  thresholdBytes: number;
  store(tenant: string, flowId: string, inputJson: Uint8Array): Promise<string>;
}

export class JetStreamGateway implements Gateway {
  private isConnected = true;
  constructor(
    private readonly nc: NatsConnection,
    private readonly pub: JetStreamPublisher,
    private readonly kv: { flows: KV; idempotency: KV; cancel: KV; signals?: KV; pauses?: KV },
    private readonly partitions: number,
    private readonly publishTimeoutMs: number,
    private readonly claim?: InputClaimCheck,
  ) {
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === Events.Disconnect) this.isConnected = false;
        if (s.type === Events.Reconnect) this.isConnected = true;
      }
    })();
  }

  connected() {
    return this.isConnected && !this.nc.isClosed();
  }

  pending() {
    return this.pub.inFlight;
  }

  async claimIdempotency(tenant: string, key: string, rec: { flowId: string; hash: string }) {
    const k = idempotencyClaimKey(tenant, key);
    // While the bucket's stream elects a new leader (a NATS node died) writes fail for a few seconds:
    // ride that out within the publish timeout, as the submission's publish does, instead of a 503.
    const claim = async () => {
      try {
        await this.kv.idempotency.create(k, enc.encode(JSON.stringify(rec)));
        return null;
      } catch (err) {
        // Taken, possibly by our own earlier attempt whose answer was lost: same hash, same flow.
        if (!isCasConflict(err)) throw err;
        const e = await this.kv.idempotency.get(k);
        if (!e || e.operation !== 'PUT') return null;
        return JSON.parse(dec.decode(e.value)) as { flowId: string; hash: string };
      }
    };
    try {
      return await retryTransient(claim, { until: Date.now() + this.publishTimeoutMs - 100, baseMs: 25, maxMs: 500 });
    } catch (err) {
      throw unavailable(err);
    }
  }

  async publishSubmission(tenant: string, flowId: string, sub: Submission, msgId: string, traceparent?: string, startAtMs?: number) {
    // An input in S3 already (inputRef): the flow carries the reference; the orchestrator reads it.
    let inputJson = sub.inputRef ? new Uint8Array() : enc.encode(JSON.stringify(sub.input));
    let inputRef = sub.inputRef ?? '';
    if (!inputRef && this.claim && inputJson.byteLength > this.claim.thresholdBytes) {
      // Claim check: the flow, its state and its tasks carry only the reference.
      try {
        inputRef = await this.claim.store(tenant, flowId, inputJson);
      } catch (err) {
        throw new JetflowError(ErrorCodes.UNAVAILABLE, `the object store is unavailable: ${(err as Error).message}`, { retryAfterMs: 1_000, cause: err });
      }
      inputJson = new Uint8Array();
    }
    const req = create(FlowRequestSchema, {
      flowId,
      tenant,
      flow: sub.flow,
      inputJson,
      inputRef,
      callbackUrl: sub.callbackUrl ?? '',
      idempotencyKey: sub.idempotencyKey ?? '',
      deadlineMs: sub.deadlineMs ?? 0,
      metadata: sub.metadata ?? {},
      submittedAtMs: BigInt(Date.now()),
      startAtMs: BigInt(startAtMs ?? 0),
      priority: sub.priority ?? 0,
    });
    const h = natsHeaders();
    h.set('Content-Type', INGEST_CONTENT_TYPE);
    h.set('Jetflow-Flow-Id', flowId);
    // Admission orders a tenant's backlog by it without decoding the body (ingest-lanes.ts).
    if (sub.priority) h.set('Jetflow-Priority', String(sub.priority));
    if (traceparent) h.set('traceparent', traceparent);
    try {
      // jetflow.submit.<tenant>.<flowId>: no tenant may publish there, so the orchestrator trusts what it reads there.
      await this.pub.publish(submitSubject(tenant, flowId), toBinary(FlowRequestSchema, req), { msgId, headers: h, timeoutMs: this.publishTimeoutMs });
    } catch (err) {
      // The ingest stream (discard new) is at its limits, or the server's storage is.
      if (isJsError(err, JetStreamApiCodes.StreamStoreFailed, JetStreamApiCodes.StorageResourcesExceeded, JetStreamApiCodes.AccountResourcesExceeded)) {
        throw new JetflowError(ErrorCodes.OVERLOADED, 'the ingest stream is full; retry later', { retryAfterMs: 5_000, cause: err });
      }
      throw unavailable(err);
    }
  }

  async getState(flowId: string): Promise<FlowState | null> {
    const e = await this.kv.flows.get(flowId).catch((err: unknown) => {
      throw unavailable(err);
    });
    if (!e || e.operation !== 'PUT' || !e.value.length) return null;
    return JSON.parse(dec.decode(e.value)) as FlowState;
  }

  async getCallbackStatus(flowId: string) {
    const e = await this.kv.flows.get(`${flowId}.callback`).catch(() => null);
    if (!e || e.operation !== 'PUT' || !e.value.length) return { status: 'pending' };
    return JSON.parse(dec.decode(e.value)) as unknown;
  }

  async requestSignal(s: FlowState, sig: { name: string; id: string; payload: unknown }) {
    if (!this.kv.signals) throw new JetflowError(ErrorCodes.UNAVAILABLE, 'signals are not configured on this ingest');
    await recordSignal(this.kv.signals, this.pub, { partitions: this.partitions, publishTimeoutMs: this.publishTimeoutMs }, s, sig);
  }

  async requestPause(s: FlowState, paused: boolean, reason: string) {
    if (!this.kv.pauses) throw new JetflowError(ErrorCodes.UNAVAILABLE, 'pausing is not configured on this ingest');
    try {
      // The flag first: the control only makes the flow's state say what the flag says.
      if (paused) await this.kv.pauses.put(pauseFlagKey(s.flowId), enc.encode(reason || 'paused'));
      else await this.kv.pauses.delete(pauseFlagKey(s.flowId));
      const ctl = create(FlowControlSchema, { flowId: s.flowId, kind: 'pause', reason: paused ? 'pause' : 'resume' });
      const h = natsHeaders();
      h.set('Jetflow-Kind', 'control');
      h.set('Jetflow-Flow-Id', s.flowId);
      await this.pub.publish(resultSubject(this.partitions, s.flowId), toBinary(FlowControlSchema, ctl), {
        msgId: `${s.flowId}:pause:${randomUUID()}`,
        headers: h,
        timeoutMs: this.publishTimeoutMs,
      });
    } catch (err) {
      throw unavailable(err);
    }
  }

  /**
   * Pauses a definition (its flag: the orchestrators start its new flows paused), or resumes it: the flag
   * goes, then every flow paused because of it (its flag names the definition) is resumed. Returns how many.
   */
  async requestDefinitionPause(name: string, paused: boolean, reason: string): Promise<number> {
    const kv = this.kv.pauses;
    if (!kv) throw new JetflowError(ErrorCodes.UNAVAILABLE, 'pausing is not configured on this ingest');
    try {
      if (paused) {
        await kv.put(defPauseKey(name), enc.encode(reason || 'paused'));
        return 0;
      }
      await kv.delete(defPauseKey(name));
      const mark = pausedByDefinition(name);
      let resumed = 0;
      // Listed first, then acted on: the deletes below add to the stream the listing reads.
      const keys: string[] = [];
      for await (const key of await kv.keys('flow.>')) keys.push(key);
      for (const key of keys) {
        const e = await kv.get(key);
        if (!e || e.operation !== 'PUT' || dec.decode(e.value) !== mark) continue;
        const flowId = key.slice('flow.'.length);
        await kv.delete(key);
        const ctl = create(FlowControlSchema, { flowId, kind: 'pause', reason: 'resume' });
        const h = natsHeaders();
        h.set('Jetflow-Kind', 'control');
        h.set('Jetflow-Flow-Id', flowId);
        await this.pub.publish(resultSubject(this.partitions, flowId), toBinary(FlowControlSchema, ctl), {
          msgId: `${flowId}:pause:${randomUUID()}`,
          headers: h,
          timeoutMs: this.publishTimeoutMs,
        });
        resumed++;
      }
      return resumed;
    } catch (err) {
      throw unavailable(err);
    }
  }

  /** Sets or deletes a task subject's pause flag; the workers serving it watch it and stop (or resume) pulling. */
  async requestSubjectPause(subject: string, paused: boolean, reason: string): Promise<void> {
    if (!this.kv.pauses) throw new JetflowError(ErrorCodes.UNAVAILABLE, 'pausing is not configured on this ingest');
    try {
      if (paused) await this.kv.pauses.put(subjectPauseKey(subject), enc.encode(reason || 'paused'));
      else await this.kv.pauses.delete(subjectPauseKey(subject));
    } catch (err) {
      throw unavailable(err);
    }
  }

  async requestCancel(s: FlowState, reason: string) {
    try {
      // Workers watch this bucket and skip the flow's tasks before starting them.
      await this.kv.cancel.put(s.flowId, enc.encode(reason || 'cancelled'));
      const ctl = create(FlowControlSchema, { flowId: s.flowId, kind: 'cancel', reason });
      const h = natsHeaders();
      h.set('Jetflow-Kind', 'control');
      h.set('Jetflow-Flow-Id', s.flowId);
      await this.pub.publish(resultSubject(this.partitions, s.flowId), toBinary(FlowControlSchema, ctl), { msgId: msgIds.cancel(s.flowId), headers: h, timeoutMs: this.publishTimeoutMs });
    } catch (err) {
      throw unavailable(err);
    }
  }
}

/**
 * Records a signal, then tells the flow's partition: the record (KV jetflow_signals, created once per
 * signal id) comes first and holds the payload, so a control nobody recorded is refused and one whose
 * publish was lost is sent again by the caller's retry (same id: the record is there, same payload).
 * The same id with another payload is a conflict.
 */
export async function recordSignal(
  kv: KV,
  pub: JetStreamPublisher,
  o: { partitions: number; publishTimeoutMs: number },
  s: FlowState,
  sig: { name: string; id: string; payload: unknown },
): Promise<void> {
  const key = signalRecordKey(s.flowId, sig.name, sig.id);
  const value = JSON.stringify({ payload: sig.payload });
  try {
    try {
      await kv.create(key, enc.encode(value));
    } catch (err) {
      if (!isCasConflict(err)) throw err;
      const e = await kv.get(key);
      if (e && e.operation === 'PUT' && dec.decode(e.value) !== value)
        throw new JetflowError(ErrorCodes.CONFLICT, `signal id ${sig.id} (Idempotency-Key) was already used for signal ${sig.name} of flow ${s.flowId} with another payload`);
    }
    const ctl = create(FlowControlSchema, { flowId: s.flowId, kind: 'signal', signal: sig.name, signalId: sig.id });
    const h = natsHeaders();
    h.set('Jetflow-Kind', 'control');
    h.set('Jetflow-Flow-Id', s.flowId);
    await pub.publish(resultSubject(o.partitions, s.flowId), toBinary(FlowControlSchema, ctl), { msgId: msgIds.signal(s.flowId, sig.id), headers: h, timeoutMs: o.publishTimeoutMs });
  } catch (err) {
    throw unavailable(err);
  }
}

function unavailable(err: unknown) {
  if (err instanceof JetflowError) return err;
  return new JetflowError(ErrorCodes.UNAVAILABLE, `the broker is unavailable: ${(err as Error).message}`, { retryAfterMs: 1_000, cause: err });
}
