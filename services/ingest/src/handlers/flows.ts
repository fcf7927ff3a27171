import { JetflowError, ErrorCodes, invalid } from '@jetflow/errors';
import {
  deriveFlowId,
  isTerminal,
  publicView,
  randomFlowId,
  routesFor,
  startTimeOf,
  submissionHash,
  validateSubmission,
  signalIdOf,
  MAX_SIGNAL_PAYLOAD_BYTES,
  FLOW_ID_RE,
  IDEMPOTENCY_KEY_RE,
  SIGNAL_NAME_RE,
  type CallbackPolicy,
  type FlowRegistry,
  type FlowState,
  type Submission,
} from '@jetflow/flows';
import { noteFlowTrace } from '@jetflow/logging';
import { historyView, type FlowHistoryReader } from './flow-history.js';
import { markWaitingForWorkers } from './workers.js';
import { markWaitingForLimits, type LimitWaitReader } from './limits.js';

/** What the flow handlers need from the broker (implemented over JetStream in adapters/gateway.ts). */
export interface Gateway {
  /** Claims an idempotency key; returns the record already there if any. */
  claimIdempotency(tenant: string, key: string, rec: { flowId: string; hash: string }): Promise<{ flowId: string; hash: string } | null>;
  /** `startAtMs`: a delayed start's time (the orchestrator creates the flow `scheduled`). */
  publishSubmission(tenant: string, flowId: string, sub: Submission, msgId: string, traceparent?: string, startAtMs?: number): Promise<void>;
  getState(flowId: string): Promise<FlowState | null>;
  getCallbackStatus(flowId: string): Promise<unknown>;
  requestCancel(state: FlowState, reason: string): Promise<void>;
  /** Records a signal (KV jetflow_signals) and sends its control to the flow's partition. */
  requestSignal(state: FlowState, sig: { name: string; id: string; payload: unknown }): Promise<void>;
  /** Sets (or deletes) the flow's pause flag (KV jetflow_pauses) and sends the control that applies it. */
  requestPause(state: FlowState, paused: boolean, reason: string): Promise<void>;
  /** Sets or deletes a definition's pause flag; a resume resumes the flows it paused (their count). */
  requestDefinitionPause(name: string, paused: boolean, reason: string): Promise<number>;
  /** Sets or deletes a task subject's pause flag (KV jetflow_pauses), which its workers watch. */
  requestSubjectPause(subject: string, paused: boolean, reason: string): Promise<void>;
  /** Submissions waiting for their PubAck (backpressure). */
  pending(): number;
  connected(): boolean;
}

export interface FlowHandlersDeps {
  gateway: Gateway;
  registry: FlowRegistry;
  policy: CallbackPolicy;
  maxPending: number;
  /** Task instances a flow may make (JETFLOW_MAX_TASKS_PER_FLOW; default 10,000). */
  maxTasksPerFlow?: number;
  /** Where a submission's inputRef may point (JETFLOW_INPUT_REF_PREFIXES, `{tenant}` = the key's tenant). */
  inputRefPrefixes?: readonly string[];
  /** Finished flows after their KV state expired (DynamoDB); GET falls back to it. */
  history?: FlowHistoryReader;
  /** Per-tenant limits (quota.ts): checked before anything else a submission costs. */
  quota?: { check(tenant: string): void; accepted(tenant: string): void };
  /** The worker registry's live subjects: a dispatched task whose subject none serves says it waits for a worker. */
  workers?: { liveSubjects(): ReadonlySet<string> | undefined };
  /** The waiting marks of tasks held back by their concurrency or rate limit (KV jetflow_limits). */
  limits?: LimitWaitReader;
}

export interface SubmitResult {
  flowId: string;
  /** `scheduled` for a delayed start (startAt or delayMs) that lies ahead. */
  status: 'accepted' | 'scheduled';
  /** True when an earlier request with the same idempotency key already created it. */
  existing: boolean;
}

/** Remembers recently accepted flows so GET right after 202 answers "accepted" before the saga writes state. */
class RecentlyAccepted {
  private readonly map = new Map<string, { tenant: string; flow: string; at: number }>();
  add(flowId: string, tenant: string, flow: string) {
    this.map.set(flowId, { tenant, flow, at: Date.now() });
    if (this.map.size > 10_000) this.map.delete(this.map.keys().next().value!);
  }
  get(flowId: string) {
    return this.map.get(flowId);
  }
}

export class FlowHandlers {
  private readonly recent = new RecentlyAccepted();
  constructor(private readonly d: FlowHandlersDeps) {}

  /** Validates and durably accepts a submission; the same idempotency key and body give the same flowId. */
  async submit(tenant: string, body: unknown, traceparent?: string): Promise<SubmitResult> {
    this.d.quota?.check(tenant);
    const now = Date.now();
    const sub = validateSubmission(body, {
      registry: this.d.registry,
      checkCallbackUrl: (u) => this.d.policy.checkUrl(u),
      now,
      ...(this.d.maxTasksPerFlow ? { maxTasksPerFlow: this.d.maxTasksPerFlow } : {}),
      tenant,
      ...(this.d.inputRefPrefixes ? { inputRefPrefixes: this.d.inputRefPrefixes } : {}),
    });
    const startAt = startTimeOf(sub, now);
    if (!this.d.gateway.connected()) throw new JetflowError(ErrorCodes.UNAVAILABLE, 'the broker is unreachable; nothing was accepted', { retryAfterMs: 1_000 });
    if (this.d.gateway.pending() >= this.d.maxPending) throw new JetflowError(ErrorCodes.OVERLOADED, 'too many submissions in flight; retry later', { retryAfterMs: 1_000 });
    let flowId: string;
    let existing = false;
    let msgId: string;
    if (sub.idempotencyKey) {
      flowId = deriveFlowId(tenant, sub.idempotencyKey);
      const hash = submissionHash(sub);
      const prev = await this.d.gateway.claimIdempotency(tenant, sub.idempotencyKey, { flowId, hash });
      if (prev) {
        if (prev.hash !== hash) throw new JetflowError(ErrorCodes.CONFLICT, `idempotency key "${sub.idempotencyKey}" was already used with a different body (flow ${prev.flowId})`);
        existing = true;
      }
      msgId = `${tenant}:${sub.idempotencyKey}`;
    } else {
      flowId = randomFlowId();
      msgId = flowId;
    }
    // Published even when the key existed: the first request may have died before its publish.
    // The ingest stream's duplicate window and the saga's create-once state collapse repeats.
    await this.d.gateway.publishSubmission(tenant, flowId, sub, msgId, traceparent, startAt);
    // Lines logged here about the flow name its trace (tracing on or off).
    noteFlowTrace(flowId, traceparent);
    this.recent.add(flowId, tenant, sub.flow);
    if (!existing) this.d.quota?.accepted(tenant);
    return { flowId, status: startAt !== undefined && startAt > now ? 'scheduled' : 'accepted', existing };
  }

  async get(tenant: string, flowId: string) {
    if (!FLOW_ID_RE.test(flowId)) throw new JetflowError(ErrorCodes.NOT_FOUND, `flow ${flowId} not found`);
    const s = await this.d.gateway.getState(flowId);
    if (!s || s.tenant !== tenant) {
      // No state: finished and expired (the history has it), or accepted and not started yet.
      let historyDown: unknown;
      if (!s && this.d.history) {
        const h = await this.d.history.get(flowId).catch((err: unknown) => void (historyDown = err));
        if (h && h.tenant === tenant) return historyView(h, this.d.registry.get(h.flow));
      }
      const r = this.recent.get(flowId);
      if (r && r.tenant === tenant) return { flowId, flow: r.flow, tenant, status: 'accepted', submittedAt: new Date(r.at).toISOString(), stages: [] };
      if (historyDown) throw new JetflowError(ErrorCodes.UNAVAILABLE, `the flow history is unavailable: ${(historyDown as Error).message}`, { retryAfterMs: 1_000, cause: historyDown });
      throw new JetflowError(ErrorCodes.NOT_FOUND, `flow ${flowId} not found`);
    }
    const cb = isTerminal(s) && s.callbackUrl ? await this.d.gateway.getCallbackStatus(flowId) : undefined;
    const def = this.d.registry.get(s.flow);
    const view = publicView(s, def, cb);
    if (!isTerminal(s)) await markWaitingForLimits(view, def, flowId, this.d.limits);
    return markWaitingForWorkers(view, this.d.workers?.liveSubjects());
  }

  /** The callback URL policy's verdict on a URL (undefined when allowed): schedules check their submission's with it. */
  checkCallbackUrl(url: string): string | undefined {
    return this.d.policy.checkUrl(url);
  }

  /** The callback sender's record of a flow's delivery (`{ status: 'pending' }` before its first attempt). */
  callbackStatus(flowId: string): Promise<unknown> {
    return this.d.gateway.getCallbackStatus(flowId);
  }

  async state(tenant: string, flowId: string): Promise<FlowState> {
    const s = await this.stateOf(tenant, flowId);
    if (!s) throw new JetflowError(ErrorCodes.NOT_FOUND, `flow ${flowId} not found`);
    return s;
  }

  /** The flow's KV state when it exists and belongs to the tenant. */
  private async stateOf(tenant: string, flowId: string): Promise<FlowState | null> {
    const s = FLOW_ID_RE.test(flowId) ? await this.d.gateway.getState(flowId) : null;
    return s && s.tenant === tenant ? s : null;
  }

  /** Which consumer gets a task: the routes matching a subject or wildcard pattern. */
  routes(query: string) {
    if (!/^jetflow\.task(\.[a-z0-9_*>-]+)+$/.test(query))
      throw invalid([{ path: 'subject', message: 'expected a task subject or pattern under jetflow.task, e.g. jetflow.task.analyst.sentiment or jetflow.task.analyst.>' }]);
    return { query, routes: routesFor(query, this.d.registry) };
  }

  /**
   * A signal to a flow (README, "Signals"): recorded durably and applied by the orchestrator; the task
   * waiting for `name` takes it, or the first to become ready does. `key` (Idempotency-Key): the same
   * key twice is one signal. Unknown flow: 404; finished: 409.
   */
  async signal(tenant: string, flowId: string, name: string, payload: unknown, key?: string) {
    if (!SIGNAL_NAME_RE.test(name))
      throw invalid([{ path: 'name', message: `${JSON.stringify(name.slice(0, 80))} is not a signal name (letters, digits, _ or -, starting with a letter, at most 64)` }]);
    if (key !== undefined && !IDEMPOTENCY_KEY_RE.test(key)) throw invalid([{ path: 'Idempotency-Key', message: 'printable ASCII without spaces, 1 to 256 characters' }]);
    const bytes = Buffer.byteLength(JSON.stringify(payload ?? null));
    if (bytes > MAX_SIGNAL_PAYLOAD_BYTES) throw invalid([{ path: 'body', message: `the payload is ${bytes} bytes of JSON; a signal carries at most ${MAX_SIGNAL_PAYLOAD_BYTES}` }]);
    const s = await this.stateOf(tenant, flowId);
    if (!s) {
      if (this.recent.get(flowId)?.tenant === tenant)
        throw new JetflowError(ErrorCodes.UNAVAILABLE, `flow ${flowId} is accepted but not started yet; retry the signal in a moment`, { retryAfterMs: 200 });
      throw new JetflowError(ErrorCodes.NOT_FOUND, `flow ${flowId} not found`);
    }
    if (isTerminal(s)) throw new JetflowError(ErrorCodes.CONFLICT, `flow ${flowId} already ended as ${s.status}; the signal was not accepted`);
    const signalId = signalIdOf(key);
    await this.d.gateway.requestSignal(s, { name, id: signalId, payload: payload ?? null });
    return { flowId, signalId, status: 'accepted' };
  }

  /**
   * Pauses or resumes one flow (README, "Pause and resume"): while paused no task is dispatched; running
   * ones finish, and the deadline and timers run on. Unknown flow: 404; finished: 409.
   */
  async pause(tenant: string, flowId: string, paused: boolean, reason = '') {
    const s = await this.stateOf(tenant, flowId);
    if (!s) {
      if (this.recent.get(flowId)?.tenant === tenant)
        throw new JetflowError(ErrorCodes.UNAVAILABLE, `flow ${flowId} is accepted but not started yet; retry in a moment`, { retryAfterMs: 200 });
      throw new JetflowError(ErrorCodes.NOT_FOUND, `flow ${flowId} not found`);
    }
    if (isTerminal(s)) throw new JetflowError(ErrorCodes.CONFLICT, `flow ${flowId} already ended as ${s.status}`);
    await this.d.gateway.requestPause(s, paused, reason.slice(0, 500));
    return { flowId, status: paused ? 'pausing' : 'resuming' };
  }

  /** Pauses a flow definition (its new flows are accepted and start paused) or resumes it and the flows it paused. Unknown name: 404. */
  async pauseDefinition(name: string, paused: boolean, reason = '') {
    if (!this.d.registry.get(name)) throw new JetflowError(ErrorCodes.NOT_FOUND, `flow definition ${JSON.stringify(name.slice(0, 80))} not found`);
    const resumed = await this.d.gateway.requestDefinitionPause(name, paused, reason.slice(0, 500));
    return paused ? { flow: name, paused: true } : { flow: name, paused: false, resumedFlows: resumed };
  }

  /** Pauses a task subject (its workers stop pulling it; its tasks wait in the stream) or resumes it. */
  async pauseSubject(subject: string, paused: boolean, reason = '') {
    if (!/^jetflow\.task\.[a-z0-9_-]+\.[a-z0-9_-]+$/.test(subject))
      throw invalid([{ path: 'subject', message: `${JSON.stringify(subject.slice(0, 120))} is not a task subject (jetflow.task.<kind>.<name>)` }]);
    await this.d.gateway.requestSubjectPause(subject, paused, reason.slice(0, 500));
    return { subject, paused };
  }

  async cancel(tenant: string, flowId: string, reason = '') {
    const s = await this.stateOf(tenant, flowId);
    if (!s) {
      // Accepted but not started yet: there is nothing to cancel until the orchestrator has written its state.
      if (this.recent.get(flowId)?.tenant === tenant)
        throw new JetflowError(ErrorCodes.UNAVAILABLE, `flow ${flowId} is accepted but not started yet; retry the cancel in a moment`, { retryAfterMs: 200 });
      throw new JetflowError(ErrorCodes.NOT_FOUND, `flow ${flowId} not found`);
    }
    if (isTerminal(s)) throw new JetflowError(ErrorCodes.CONFLICT, `flow ${flowId} already ended as ${s.status}`);
    await this.d.gateway.requestCancel(s, reason.slice(0, 500));
    return { flowId, status: 'cancelling' };
  }
}
