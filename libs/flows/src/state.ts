import { randomBytes } from 'node:crypto';
import { definitionHash, type FlowDef, type TaskDef } from './definitions.js';

/**
 * The saga state of one flow as stored in the flows KV bucket, and the pure transitions over it.
 * Completed tasks are recorded by name, never counted, so a duplicate or redelivered result cannot
 * count twice. Side effects are derived from the state (pendingEffects), so a replay after a crash
 * re-derives exactly the same publishes with the same message ids, and JetStream collapses them.
 */
export type FlowStatus = 'scheduled' | 'running' | 'succeeded' | 'partial' | 'failed' | 'cancelled';
export type TaskStatus = 'pending' | 'dispatched' | 'succeeded' | 'failed' | 'cancelled' | 'skipped' | 'timed_out';

export const TERMINAL_FLOW: ReadonlySet<FlowStatus> = new Set(['succeeded', 'partial', 'failed', 'cancelled']);
export const SETTLED_TASK: ReadonlySet<TaskStatus> = new Set(['succeeded', 'failed', 'cancelled', 'skipped', 'timed_out']);

export interface TaskError {
  task: string;
  code: string;
  message: string;
}

export interface TaskState {
  stage: number;
  status: TaskStatus;
  attempts: number;
  dispatchedAt?: number;
  startedAt?: number;
  finishedAt?: number;
  durationMs?: number;
  output?: unknown;
  outputRef?: string;
  error?: { code: string; message: string };
  worker?: string;
  /**
   * The result token of this dispatch (newTaskToken): it travels in the Task, the worker copies it into
   * its TaskResult, and a result without it is not applied. One per dispatch, so every attempt of the
   * task (a retry is a redelivery of the same Task message) carries it. Absent in states written before
   * tokens, whose results are taken as before.
   */
  token?: string;
}

export interface FlowState {
  flowId: string;
  tenant: string;
  flow: string;
  version: number;
  /**
   * definitionHash of the definition the flow started on: it finishes on that one, even after the
   * definitions change (versions.ts). Absent in states written before definitions were versioned.
   */
  defHash?: string;
  status: FlowStatus;
  /** Index of the stage in progress (or the last one reached). */
  stage: number;
  submittedAt: number;
  startedAt: number;
  deadlineAt: number;
  /** Delayed start: the flow waits `scheduled` until this time (applyStart); its deadline counts from it. */
  startAt?: number;
  finishedAt?: number;
  callbackUrl?: string;
  idempotencyKey?: string;
  metadata: Record<string, string>;
  /** JSON of the input (inline), or inputRef when it went to the object store. */
  input?: string;
  inputRef?: string;
  tasks: Record<string, TaskState>;
  errors: TaskError[];
  endReason?: string;
  traceparent?: string;
}

export interface StartRequest {
  flowId: string;
  tenant: string;
  flow: string;
  inputJson?: string;
  inputRef?: string;
  callbackUrl?: string;
  idempotencyKey?: string;
  deadlineMs?: number;
  metadata?: Record<string, string>;
  submittedAt: number;
  traceparent?: string;
  /** Delayed start (epoch ms); a time not after `now` starts at once. */
  startAt?: number;
}

export function isTerminal(s: FlowState): boolean {
  return TERMINAL_FLOW.has(s.status);
}

export function newFlowState(req: StartRequest, def: FlowDef, now: number): FlowState {
  const tasks: Record<string, TaskState> = {};
  const later = req.startAt !== undefined && req.startAt > now;
  def.stages.forEach((st, i) => {
    for (const t of st.tasks)
      tasks[t.name] =
        i === 0 && later
          ? // Scheduled: the first stage's tokens are drawn now (the timers' message ids use one) and dispatched by applyStart.
            { stage: i, status: 'pending', attempts: 0, token: newTaskToken() }
          : i === 0
            ? { stage: i, status: 'dispatched', attempts: 0, dispatchedAt: now, token: newTaskToken() }
            : { stage: i, status: 'pending', attempts: 0 };
  });
  const s: FlowState = {
    flowId: req.flowId,
    tenant: req.tenant,
    flow: def.name,
    version: def.version,
    defHash: definitionHash(def),
    status: later ? 'scheduled' : 'running',
    stage: 0,
    submittedAt: req.submittedAt,
    startedAt: now,
    deadlineAt: (later ? req.startAt! : req.submittedAt) + (req.deadlineMs || def.deadlineMs),
    metadata: req.metadata ?? {},
    tasks,
    errors: [],
  };
  if (later) s.startAt = req.startAt!;
  if (req.callbackUrl) s.callbackUrl = req.callbackUrl;
  if (req.idempotencyKey) s.idempotencyKey = req.idempotencyKey;
  if (req.inputJson !== undefined) s.input = req.inputJson;
  if (req.inputRef) s.inputRef = req.inputRef;
  if (req.traceparent) s.traceparent = req.traceparent;
  return s;
}

/**
 * The state of an accepted flow that cannot start, ended `failed` at once with the reason (its
 * definition is no longer loaded; version 0, no tasks): it still gets its terminal state and its one
 * callback.
 */
export function unstartableFlowState(req: StartRequest, e: TaskError, now: number): FlowState {
  const s: FlowState = {
    flowId: req.flowId,
    tenant: req.tenant,
    flow: req.flow,
    version: 0,
    status: 'failed',
    stage: 0,
    submittedAt: req.submittedAt,
    startedAt: now,
    deadlineAt: req.submittedAt + (req.deadlineMs || 0),
    finishedAt: now,
    endReason: e.message,
    metadata: req.metadata ?? {},
    tasks: {},
    errors: [e],
  };
  if (req.callbackUrl) s.callbackUrl = req.callbackUrl;
  if (req.idempotencyKey) s.idempotencyKey = req.idempotencyKey;
  if (req.inputRef) s.inputRef = req.inputRef;
  if (req.traceparent) s.traceparent = req.traceparent;
  return s;
}

export interface ResultIn {
  task: string;
  succeeded: boolean;
  cancelled?: boolean;
  output?: unknown;
  outputRef?: string;
  errorCode?: string;
  errorMessage?: string;
  attempts: number;
  startedAt?: number;
  finishedAt?: number;
  worker?: string;
  /** The token the worker copied from the Task (TaskState.token). */
  token?: string;
}

export interface Transition {
  changed: boolean;
  /** Human-readable events of this transition, for the event stream. */
  events: Array<{ type: string; task?: string; stage?: string; message?: string }>;
  /** The message could not be applied (the flow failed because of it): dead-letter it with this reason. */
  rejected?: { code: string; message: string };
}

function finish(s: FlowState, status: FlowStatus, now: number, reason: string, t: Transition) {
  s.status = status;
  s.finishedAt = now;
  s.endReason = reason;
  for (const [name, ts] of Object.entries(s.tasks)) {
    if (SETTLED_TASK.has(ts.status)) continue;
    ts.status = status === 'cancelled' ? 'cancelled' : ts.status === 'dispatched' && reason === 'deadline' ? 'timed_out' : 'skipped';
    if (ts.status === 'timed_out') s.errors.push({ task: name, code: 'timeout', message: 'flow deadline passed before the task finished' });
  }
  t.events.push({ type: 'flow.completed', message: `${status}: ${reason}` });
}

/** Advances to the next stage(s) while the current one is settled. */
function advance(s: FlowState, def: FlowDef, now: number, t: Transition) {
  while (s.status === 'running') {
    const stage = def.stages[s.stage]!;
    const settled = stage.tasks.every((td) => SETTLED_TASK.has(s.tasks[td.name]!.status));
    if (!settled) return;
    t.events.push({ type: 'stage.completed', stage: stage.name });
    if (s.stage === def.stages.length - 1) {
      const anyFailed = Object.values(s.tasks).some((ts) => ts.status !== 'succeeded');
      finish(s, anyFailed ? 'partial' : 'succeeded', now, anyFailed ? 'some tasks failed under a continue policy' : 'all tasks succeeded', t);
      return;
    }
    s.stage++;
    for (const td of def.stages[s.stage]!.tasks) {
      const ts = s.tasks[td.name]!;
      ts.status = 'dispatched';
      ts.dispatchedAt = now;
      ts.token = newTaskToken();
      t.events.push({ type: 'task.dispatched', task: td.name, stage: def.stages[s.stage]!.name });
    }
  }
}

// Per-dispatch result tokens come from one pooled buffer: a randomBytes call per 256 tokens, not per task.
const TOKEN_BYTES = 12;
let tokenPool = Buffer.alloc(0);
let tokenAt = 0;

/** An unguessable result token: 12 random bytes as base64url (16 characters). */
export function newTaskToken(): string {
  if (tokenAt + TOKEN_BYTES > tokenPool.length) {
    tokenPool = randomBytes(TOKEN_BYTES * 256);
    tokenAt = 0;
  }
  const t = tokenPool.toString('base64url', tokenAt, tokenAt + TOKEN_BYTES);
  tokenAt += TOKEN_BYTES;
  return t;
}

/** Compares without an early exit, so the time taken says nothing about how much of a guess was right. */
function sameToken(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return d === 0;
}

/**
 * Why a result may not be applied to the flow, or undefined. Anyone who may publish results could have
 * sent it, so a result that cannot prove it answers a dispatch of this flow (the task's token) changes
 * nothing: it is dead-lettered with this reason and the flow goes on (its deadline still ends it).
 */
export function resultProblem(s: FlowState, r: { task: string; token?: string }): TaskError | undefined {
  const ts = s.tasks[r.task];
  if (!ts) return { task: r.task, code: 'unknown_task', message: `a result arrived for task ${JSON.stringify(r.task.slice(0, 50))}, which flow ${s.flow} v${s.version} does not have` };
  if (ts.token === undefined) {
    // A state from before tokens: its dispatched tasks' results are taken as they were.
    return ts.status === 'pending' ? { task: r.task, code: 'unexpected_result', message: `a result arrived for task "${r.task}", which was never dispatched (pending)` } : undefined;
  }
  if (!sameToken(r.token ?? '', ts.token))
    return { task: r.task, code: 'bad_token', message: `a result for task "${r.task}" does not carry the token of its dispatch${r.token ? '' : ' (it carries none)'}` };
  return undefined;
}

export function applyResult(s: FlowState, def: FlowDef, r: ResultIn, now: number): Transition {
  const t: Transition = { changed: false, events: [] };
  const problem = resultProblem(s, r);
  if (problem) return { ...t, rejected: { code: problem.code, message: problem.message } };
  const ts = s.tasks[r.task]!;
  // Settled task (duplicate / redelivery) or finished flow: nothing to count.
  if (isTerminal(s) || SETTLED_TASK.has(ts.status)) return t;
  if (ts.status !== 'dispatched') return { ...t, rejected: { code: 'unexpected_result', message: `a result arrived for task "${r.task}", which was never dispatched (${ts.status})` } };
  t.changed = true;
  ts.attempts = r.attempts;
  if (r.startedAt) ts.startedAt = r.startedAt;
  ts.finishedAt = r.finishedAt ?? now;
  if (ts.startedAt) ts.durationMs = ts.finishedAt - ts.startedAt;
  if (r.worker) ts.worker = r.worker;
  if (r.succeeded) {
    ts.status = 'succeeded';
    if (r.output !== undefined) ts.output = r.output;
    if (r.outputRef) ts.outputRef = r.outputRef;
    t.events.push({ type: 'task.succeeded', task: r.task });
  } else {
    ts.status = r.cancelled ? 'cancelled' : 'failed';
    ts.error = { code: r.errorCode || 'internal', message: r.errorMessage || 'task failed' };
    s.errors.push({ task: r.task, code: ts.error.code, message: ts.error.message });
    t.events.push({ type: 'task.failed', task: r.task, message: `${ts.error.code}: ${ts.error.message}` });
    // A failure that arrives once the flow's deadline has passed (typically the worker's "deadline
    // passed before the task started") only raced the deadline timer: the deadline decides, so the
    // flow ends partial with what it has, as it would had the timer been applied first.
    if (now >= s.deadlineAt && !r.cancelled) {
      finish(s, 'partial', now, 'deadline', t);
      return t;
    }
    const stage = def.stages[ts.stage]!;
    if (stage.onFailure === 'fail_flow' && !r.cancelled) {
      finish(s, 'failed', now, `task ${r.task} failed and stage ${stage.name} fails the flow`, t);
      return t;
    }
  }
  advance(s, def, now, t);
  return t;
}

/**
 * A scheduled flow's start timer is due: it runs, its first stage dispatched with the tokens drawn when
 * it was scheduled. Anything but a scheduled flow (started, cancelled, ended) is unchanged.
 */
export function applyStart(s: FlowState, def: FlowDef, now: number): Transition {
  const t: Transition = { changed: false, events: [] };
  if (s.status !== 'scheduled') return t;
  t.changed = true;
  s.status = 'running';
  s.startedAt = now;
  t.events.push({ type: 'flow.started', stage: def.stages[0]!.name });
  for (const td of def.stages[0]!.tasks) {
    const ts = s.tasks[td.name]!;
    ts.status = 'dispatched';
    ts.dispatchedAt = now;
    ts.token ??= newTaskToken();
    t.events.push({ type: 'task.dispatched', task: td.name, stage: def.stages[0]!.name });
  }
  return t;
}

export function applyDeadline(s: FlowState, now: number): Transition {
  const t: Transition = { changed: false, events: [] };
  if (isTerminal(s)) return t;
  t.changed = true;
  finish(s, 'partial', now, 'deadline', t);
  return t;
}

export function applyCancel(s: FlowState, reason: string, now: number): Transition {
  const t: Transition = { changed: false, events: [] };
  if (isTerminal(s)) return t;
  t.changed = true;
  finish(s, 'cancelled', now, reason ? `cancelled: ${reason}` : 'cancelled', t);
  return t;
}

/**
 * Ends a running flow `failed` because of a message it cannot apply (a result for a task it does not
 * have, a definition that cannot be found), naming why in its errors; the transition says the message
 * is to be dead-lettered. A finished flow stays as it is.
 */
export function failFlow(s: FlowState, e: TaskError, now: number): Transition {
  const t: Transition = { changed: false, events: [], rejected: { code: e.code, message: e.message } };
  if (isTerminal(s)) return t;
  t.changed = true;
  s.errors.push(e);
  finish(s, 'failed', now, e.message, t);
  return t;
}

/**
 * Whether a definition has exactly the stages and tasks of a state (for states without a defHash,
 * written before definitions were versioned, and for views given the definition loaded now).
 */
export function defFits(s: FlowState, def: FlowDef): boolean {
  let n = 0;
  for (const [i, st] of def.stages.entries()) {
    for (const td of st.tasks) {
      if (s.tasks[td.name]?.stage !== i) return false;
      n++;
    }
  }
  return n === Object.keys(s.tasks).length;
}

/** The tasks that the state says are dispatched (to publish, idempotently, with deterministic ids). */
export function tasksToDispatch(s: FlowState, def: FlowDef): TaskDef[] {
  if (isTerminal(s)) return [];
  return def.stages[s.stage]!.tasks.filter((td) => s.tasks[td.name]!.status === 'dispatched');
}

/** Deterministic message ids: a replay or a race collapses into one message. */
export const msgIds = {
  task: (flowId: string, stage: number, task: string) => `${flowId}:${stage}:${task}`,
  result: (flowId: string, task: string) => `${flowId}:${task}:result`,
  callback: (flowId: string) => `${flowId}:callback`,
  /** `nonce` (a token of the flow's first dispatch) keeps anyone who guesses a flow id from taking its timer's id first. */
  deadline: (flowId: string, nonce = '') => (nonce ? `${flowId}:deadline:${nonce}` : `${flowId}:deadline`),
  cancel: (flowId: string) => `${flowId}:cancel`,
  /** A scheduled flow's start timer (the nonce as for the deadline timer). */
  start: (flowId: string, nonce: string) => `${flowId}:start:${nonce}`,
};

export const deliveryIdOf = (flowId: string) => `dlv_${flowId}`;

/**
 * The report the callback receives (README, "The callback"): the last stage's tasks under `results`,
 * earlier ones under `datasets`. Built from the state alone (its tasks are in definition order and know
 * their stage), so a flow whose definition can no longer be found still gets its callback.
 */
export function callbackBody(s: FlowState) {
  let last = 0;
  for (const ts of Object.values(s.tasks)) if (ts.stage > last) last = ts.stage;
  const results: Record<string, unknown> = {};
  const datasets: Record<string, unknown> = {};
  for (const [name, ts] of Object.entries(s.tasks)) {
    if (ts.stage === last) results[name] = ts.status === 'succeeded' ? (ts.output ?? (ts.outputRef ? { ref: ts.outputRef } : null)) : { status: ts.status, error: ts.error ?? null };
    else datasets[name] = ts.status === 'succeeded' ? (ts.output ?? (ts.outputRef ? { ref: ts.outputRef } : null)) : { status: ts.status };
  }
  const finishedAt = s.finishedAt ?? Date.now();
  return {
    flowId: s.flowId,
    flow: s.flow,
    tenant: s.tenant,
    status: s.status,
    startedAt: new Date(s.submittedAt).toISOString(),
    finishedAt: new Date(finishedAt).toISOString(),
    durationMs: finishedAt - s.submittedAt,
    results,
    datasets,
    errors: s.errors,
    metadata: s.metadata,
    idempotencyKey: s.idempotencyKey ?? null,
  };
}

/**
 * The public view of a flow (GET /v1/flows/{id}); the input is not echoed back. `def` is used only if
 * it is the flow's own definition; otherwise (the definitions changed since the flow started) the
 * stages come from the state, which knows each task's stage but not stage names, policies or subjects.
 */
export function publicView(s: FlowState, def: FlowDef | undefined, callback?: unknown) {
  const iso = (n?: number) => (n ? new Date(n).toISOString() : null);
  const own = def && (s.defHash ? s.defHash === definitionHash(def) : defFits(s, def)) ? def : undefined;
  const shape: Array<{ name: string; onFailure: string | null; tasks: Array<{ name: string; subject: string | null }> }> = own
    ? own.stages.map((st) => ({ name: st.name, onFailure: st.onFailure, tasks: st.tasks.map((td) => ({ name: td.name, subject: td.subject })) }))
    : [];
  if (!own) {
    for (const [name, ts] of Object.entries(s.tasks)) {
      if (!Number.isInteger(ts.stage) || ts.stage < 0 || ts.stage >= 64) continue;
      while (shape.length <= ts.stage) shape.push({ name: `stage-${shape.length}`, onFailure: null, tasks: [] });
      shape[ts.stage]!.tasks.push({ name, subject: null });
    }
  }
  const stages = shape.map((st, i) => ({
    name: st.name,
    onFailure: st.onFailure,
    status: i < s.stage || isTerminal(s) ? 'settled' : i === s.stage && s.status !== 'scheduled' ? 'running' : 'pending',
    tasks: st.tasks.map((td) => {
      const ts = s.tasks[td.name]!;
      return {
        name: td.name,
        subject: td.subject,
        status: ts.status,
        attempts: ts.attempts,
        dispatchedAt: iso(ts.dispatchedAt),
        startedAt: iso(ts.startedAt),
        finishedAt: iso(ts.finishedAt),
        durationMs: ts.durationMs ?? null,
        error: ts.error ?? null,
        worker: ts.worker ?? null,
      };
    }),
  }));
  const done = isTerminal(s);
  return {
    flowId: s.flowId,
    flow: s.flow,
    version: s.version,
    tenant: s.tenant,
    status: s.status,
    submittedAt: iso(s.submittedAt),
    startedAt: s.status === 'scheduled' ? null : iso(s.startedAt),
    deadlineAt: iso(s.deadlineAt),
    ...(s.startAt !== undefined ? { startAt: iso(s.startAt) } : {}),
    finishedAt: iso(s.finishedAt),
    durationMs: s.finishedAt ? s.finishedAt - s.submittedAt : null,
    endReason: s.endReason ?? null,
    idempotencyKey: s.idempotencyKey ?? null,
    metadata: s.metadata,
    stages,
    errors: s.errors,
    ...(done ? (({ results, datasets }) => ({ results, datasets }))(callbackBody(s)) : {}),
    callback: callback ?? null,
  };
}
