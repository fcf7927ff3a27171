import type { FlowDef, TaskDef } from './definitions.js';

/**
 * The saga state of one flow as stored in the flows KV bucket, and the pure transitions over it.
 * Completed tasks are recorded by name, never counted, so a duplicate or redelivered result cannot
 * count twice. Side effects are derived from the state (pendingEffects), so a replay after a crash
 * re-derives exactly the same publishes with the same message ids, and JetStream collapses them.
 */
export type FlowStatus = 'running' | 'succeeded' | 'partial' | 'failed' | 'cancelled';
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
}

export interface FlowState {
  flowId: string;
  tenant: string;
  flow: string;
  version: number;
  status: FlowStatus;
  /** Index of the stage in progress (or the last one reached). */
  stage: number;
  submittedAt: number;
  startedAt: number;
  deadlineAt: number;
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
}

export function isTerminal(s: FlowState): boolean {
  return TERMINAL_FLOW.has(s.status);
}

export function newFlowState(req: StartRequest, def: FlowDef, now: number): FlowState {
  const tasks: Record<string, TaskState> = {};
  def.stages.forEach((st, i) => {
    for (const t of st.tasks) tasks[t.name] = i === 0 ? { stage: i, status: 'dispatched', attempts: 0, dispatchedAt: now } : { stage: i, status: 'pending', attempts: 0 };
  });
  const s: FlowState = {
    flowId: req.flowId,
    tenant: req.tenant,
    flow: def.name,
    version: def.version,
    status: 'running',
    stage: 0,
    submittedAt: req.submittedAt,
    startedAt: now,
    deadlineAt: req.submittedAt + (req.deadlineMs || def.deadlineMs),
    metadata: req.metadata ?? {},
    tasks,
    errors: [],
  };
  if (req.callbackUrl) s.callbackUrl = req.callbackUrl;
  if (req.idempotencyKey) s.idempotencyKey = req.idempotencyKey;
  if (req.inputJson !== undefined) s.input = req.inputJson;
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
}

export interface Transition {
  changed: boolean;
  /** Human-readable events of this transition, for the event stream. */
  events: Array<{ type: string; task?: string; stage?: string; message?: string }>;
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
      t.events.push({ type: 'task.dispatched', task: td.name, stage: def.stages[s.stage]!.name });
    }
  }
}

export function applyResult(s: FlowState, def: FlowDef, r: ResultIn, now: number): Transition {
  const t: Transition = { changed: false, events: [] };
  const ts = s.tasks[r.task];
  // Unknown task, settled task (duplicate / redelivery) or finished flow: nothing to count.
  if (!ts || SETTLED_TASK.has(ts.status) || isTerminal(s) || ts.status !== 'dispatched') return t;
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
    const stage = def.stages[ts.stage]!;
    if (stage.onFailure === 'fail_flow' && !r.cancelled) {
      finish(s, 'failed', now, `task ${r.task} failed and stage ${stage.name} fails the flow`, t);
      return t;
    }
  }
  advance(s, def, now, t);
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
  deadline: (flowId: string) => `${flowId}:deadline`,
  cancel: (flowId: string) => `${flowId}:cancel`,
};

export const deliveryIdOf = (flowId: string) => `dlv_${flowId}`;

/** The report the callback receives (API.md). */
export function callbackBody(s: FlowState, def: FlowDef) {
  const last = def.stages[def.stages.length - 1]!;
  const results: Record<string, unknown> = {};
  for (const td of last.tasks) {
    const ts = s.tasks[td.name]!;
    results[td.name] = ts.status === 'succeeded' ? (ts.output ?? (ts.outputRef ? { ref: ts.outputRef } : null)) : { status: ts.status, error: ts.error ?? null };
  }
  const datasets: Record<string, unknown> = {};
  for (const st of def.stages.slice(0, -1)) {
    for (const td of st.tasks) {
      const ts = s.tasks[td.name]!;
      datasets[td.name] = ts.status === 'succeeded' ? (ts.output ?? (ts.outputRef ? { ref: ts.outputRef } : null)) : { status: ts.status };
    }
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

/** The public view of a flow (GET /v1/flows/{id}); the input is not echoed back. */
export function publicView(s: FlowState, def: FlowDef | undefined, callback?: unknown) {
  const iso = (n?: number) => (n ? new Date(n).toISOString() : null);
  const stages = (def?.stages ?? []).map((st, i) => ({
    name: st.name,
    onFailure: st.onFailure,
    status: i < s.stage || isTerminal(s) ? 'settled' : i === s.stage ? 'running' : 'pending',
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
    startedAt: iso(s.startedAt),
    deadlineAt: iso(s.deadlineAt),
    finishedAt: iso(s.finishedAt),
    durationMs: s.finishedAt ? s.finishedAt - s.submittedAt : null,
    endReason: s.endReason ?? null,
    idempotencyKey: s.idempotencyKey ?? null,
    metadata: s.metadata,
    stages,
    errors: s.errors,
    ...(done && def ? (({ results, datasets }) => ({ results, datasets }))(callbackBody(s, def)) : {}),
    callback: callback ?? null,
  };
}
