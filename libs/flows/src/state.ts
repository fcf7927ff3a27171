import { createHash, randomBytes } from 'node:crypto';
import { definitionHash, stagesOf, type FlowDef } from './definitions.js';
import { chunkToken, isChunkIndex, mapCounts, planOf, type FlowPlan, type PlanTask } from './plan.js';

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
  /**
   * A mapped task: its number of chunks (from the input at the flow's start), and `cs`, one character
   * per chunk: `-` not dispatched yet, `d` dispatched, `s` succeeded, `f` failed, `c` cancelled. The
   * chunks' tokens derive from `token` (chunkToken) and their outputs are stored beside the state (one
   * KV entry per chunk, the engine's), so 10,000 chunks keep the state at about 10 KB.
   */
  chunks?: number;
  cs?: string;
  /** A leaf of a DAG definition (no task needs it): the callback's `results` (states of stage flows go by stage). */
  leaf?: true;
  /** A DAG task marked `internal`: its output is left out of the callback (the tasks that need it report). */
  internal?: true;
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
  /** The submission's priority (1..10) when it was not the default 5: carried into every Task it dispatches. */
  priority?: number;
  /** JSON of the input (inline), or inputRef when it went to the object store. */
  input?: string;
  inputRef?: string;
  tasks: Record<string, TaskState>;
  errors: TaskError[];
  /** Paused (POST /v1/flows/{id}/pause): no task is dispatched until it is resumed; running tasks finish, timers run on. */
  paused?: true;
  /** Signals the flow received (applySignal), in arrival order, each once by its id; `task` names the waiting task that took it. */
  signals?: SignalRecord[];
  endReason?: string;
  traceparent?: string;
  /** A child flow: the parent task its end answers. */
  parent?: ParentLink;
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
  /** 1..10 (absent or 5: the default). */
  priority?: number;
  submittedAt: number;
  traceparent?: string;
  /** Delayed start (epoch ms); a time not after `now` starts at once. */
  startAt?: number;
  /** The input as read back from the object store when it travels by reference: mapped tasks are cut from it (the state keeps only the ref). */
  mapInput?: unknown;
  /** A child flow: the parent task it answers (its end becomes that task's result) and its depth. */
  parent?: ParentLink;
  /** Starts paused (its definition is paused): nothing is dispatched until it is resumed. */
  paused?: boolean;
}

/** The task of a parent flow a child flow answers, with that task's result token and the child's depth (1 under a top flow). */
export interface ParentLink {
  flowId: string;
  task: string;
  token: string;
  depth: number;
}

/** Child flows nest at most this deep (a flow that runs a flow that runs…): deeper ones end failed at start. */
export const MAX_CHILD_DEPTH = 4;

/** A child flow's id: derived from its parent and task, so a replay of the dispatch starts the same child. */
export const childFlowKey = (parentFlowId: string, task: string) => `jetflow-child:${parentFlowId}:${task}`;

/** A signal a flow received (POST /v1/flows/{id}/signals/{name}); its payload is the output of the task that takes it. */
export interface SignalRecord {
  id: string;
  name: string;
  at: number;
  payload?: unknown;
  /** The task (a `waitFor` of this name) that took it; absent while it waits for one. */
  task?: string;
}

/** A flow's pause flag in KV jetflow_pauses (set by POST /v1/flows/{id}/pause, deleted by …/resume). */
export const pauseFlagKey = (flowId: string) => `flow.${flowId}`;

/** A paused definition's flag in KV jetflow_pauses (`def.<name>`): its new flows start paused. */
export const DEF_PAUSE_PREFIX = 'def.';
export const defPauseKey = (name: string) => `${DEF_PAUSE_PREFIX}${name}`;
/** The value of the flag of a flow paused because its definition was: resuming the definition resumes it. */
export const pausedByDefinition = (name: string) => `definition:${name}`;

/** Signals one flow keeps at most: more are refused (dead-lettered, the flow unchanged). */
export const MAX_SIGNALS_PER_FLOW = 100;

/** The largest signal payload (its JSON, in bytes): it is kept in the flow's state. */
export const MAX_SIGNAL_PAYLOAD_BYTES = 64 * 1024;

/** A signal's id: a KV key token (the caller's Idempotency-Key when it is one, else derived from it, else random). */
export const SIGNAL_ID_RE = /^[A-Za-z0-9_-]{1,64}$/;

/** The id of a signal: the caller's key as it is when it can be a key token, else a hash of it; without a key a new one. */
export function signalIdOf(key?: string): string {
  if (!key) return `s${newTaskToken()}`;
  return SIGNAL_ID_RE.test(key) ? key : `k${createHash('sha256').update(key).digest('hex').slice(0, 40)}`;
}

/** Where ingest records a signal (KV jetflow_signals) before its control goes out: `<flowId>.<name>.<id>` → `{ payload }`. */
export const signalRecordKey = (flowId: string, name: string, id: string) => `${flowId}.${name}.${id}`;

export function isTerminal(s: FlowState): boolean {
  return TERMINAL_FLOW.has(s.status);
}

export function newFlowState(req: StartRequest, def: FlowDef, now: number): FlowState {
  const tasks: Record<string, TaskState> = {};
  const later = req.startAt !== undefined && req.startAt > now;
  const plan = planOf(def);
  // Tasks in definition order (the callback lists them so), each at its stage or DAG level.
  for (const st of stagesOf(def))
    for (const td of st.tasks) {
      const pt = plan.byName.get(td.name)!;
      const ts: TaskState = { stage: pt.level, status: 'pending', attempts: 0 };
      if (plan.dag && pt.leaf) ts.leaf = true;
      if (pt.internal) ts.internal = true;
      // Scheduled: the root tasks' tokens are drawn now (the timers' message ids use one) and dispatched by applyStart.
      if (later && !pt.needs.length) ts.token = newTaskToken();
      tasks[td.name] = ts;
    }
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
  if (req.priority && req.priority !== 5) s.priority = req.priority;
  if (req.parent) s.parent = req.parent;
  if (req.paused) s.paused = true;
  if (req.callbackUrl) s.callbackUrl = req.callbackUrl;
  if (req.idempotencyKey) s.idempotencyKey = req.idempotencyKey;
  if (req.inputJson !== undefined) s.input = req.inputJson;
  if (req.inputRef) s.inputRef = req.inputRef;
  if (req.traceparent) s.traceparent = req.traceparent;
  const t: Transition = { changed: true, events: [] };
  if (s.parent && s.parent.depth > MAX_CHILD_DEPTH) {
    const why = `child flows nest at most ${MAX_CHILD_DEPTH} deep; this one (of ${s.parent.flowId}) would be ${s.parent.depth}`;
    s.errors.push({ task: '', code: 'invalid_argument', message: why });
    finish(s, 'failed', now, why, t);
    return s;
  }
  if (plan.order.some((pt) => pt.map)) {
    // The chunks of every mapped task are cut once, from the input as it was submitted.
    const problem = mapProblem(s, def, req.mapInput);
    if (typeof problem === 'string') {
      s.errors.push({ task: '', code: 'invalid_argument', message: problem });
      finish(s, 'failed', now, problem, t);
      return s;
    }
    for (const [name, n] of Object.entries(problem)) tasks[name]!.chunks = n;
  }
  if (!later) dispatchReady(s, plan, now, t);
  return s;
}

/** The chunk count of each mapped task, or why the input cannot be cut (ingest refuses such inputs; this guards the rest). */
function mapProblem(s: FlowState, def: FlowDef, stored: unknown): Record<string, number> | string {
  let input = stored;
  if (input === undefined) {
    if (s.input === undefined) return `flow ${def.name} maps tasks over its input, which was stored by reference (${s.inputRef ?? 'none'}) and could not be read back here`;
    try {
      input = JSON.parse(s.input);
    } catch (err) {
      return `the flow input is not JSON: ${(err as Error).message}`;
    }
  }
  const m = mapCounts(def, input);
  if (m.problems.length) return m.problems.map((p) => `${p.path}: ${p.message}`).join('; ');
  return m.chunks;
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
  if (req.priority && req.priority !== 5) s.priority = req.priority;
  if (req.parent) s.parent = req.parent;
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
  /** The token the worker copied from the Task (TaskState.token, or its chunk's chunkToken). */
  token?: string;
  /** Which chunk of a mapped task this answers (TaskResult.chunk_index). */
  chunk?: number;
}

/** One task message to publish: a task, or one chunk of a mapped task. */
export interface Dispatch {
  task: string;
  chunk?: number;
}

export interface Transition {
  changed: boolean;
  /** Human-readable events of this transition, for the event stream. */
  events: Array<{ type: string; task?: string; stage?: string; message?: string }>;
  /** The message could not be applied (the flow failed because of it): dead-letter it with this reason. */
  rejected?: { code: string; message: string };
  /** Task messages this transition made due, in order (publish them after the state that names them is safe). */
  dispatched?: Dispatch[];
  /**
   * A task started (a new token in the state): the state must be written before its messages go out.
   * Further chunks of a started task need no write first: their ids and tokens derive from the state
   * written when the task started, and a replay of the results that freed them frees them again.
   */
  started?: boolean;
  /** A chunk's output to store (outside the state) before the result that carried it is acked. */
  chunkOutput?: { task: string; chunk: number; value: unknown };
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

/**
 * Starts every pending task whose needs have all settled (a failed need under `continue` still lets
 * it run: its dependents see the need's status), in the plan's order so a mapped task over an empty
 * array settles at once and frees its dependents in the same pass; ends the flow when every task has
 * settled; keeps `stage` at the lowest level still open.
 */
function dispatchReady(s: FlowState, plan: FlowPlan, now: number, t: Transition) {
  if (s.status !== 'running') return;
  // A paused flow dispatches nothing (its running tasks finish); it still ends when every task has settled.
  for (const pt of s.paused ? [] : plan.order) {
    const ts = s.tasks[pt.name];
    if (!ts || ts.status !== 'pending') continue;
    if (!pt.needs.every((n) => SETTLED_TASK.has(s.tasks[n]?.status ?? 'pending'))) continue;
    ts.status = 'dispatched';
    ts.dispatchedAt = now;
    ts.token ??= newTaskToken();
    t.started = true;
    if (pt.signal) {
      // Runs nothing: it takes a signal received earlier, or waits (its timeout timer is what goes out).
      if (takeSignal(s, pt, now, t)) continue;
      (t.dispatched ??= []).push({ task: pt.name });
      t.events.push({ type: 'task.waiting', task: pt.name, stage: pt.group, message: `waits for signal ${pt.signal.name} (at most ${pt.signal.timeoutMs} ms)` });
      continue;
    }
    if (pt.map && ts.chunks !== undefined) {
      ts.cs = '-'.repeat(ts.chunks);
      t.events.push({ type: 'task.dispatched', task: pt.name, stage: pt.group, message: `task ${pt.name}: ${ts.chunks} chunks` });
      if (ts.chunks === 0) {
        ts.status = 'succeeded';
        ts.finishedAt = now;
        t.events.push({ type: 'task.succeeded', task: pt.name });
        continue;
      }
      dispatchChunks(ts, pt, t);
      continue;
    }
    (t.dispatched ??= []).push({ task: pt.name });
    t.events.push({ type: 'task.dispatched', task: pt.name, stage: pt.group });
  }
  let open = Infinity;
  let last = 0;
  for (const pt of plan.order) {
    const ts = s.tasks[pt.name];
    if (!ts) continue;
    last = Math.max(last, pt.level);
    if (!SETTLED_TASK.has(ts.status)) open = Math.min(open, pt.level);
  }
  if (open === Infinity) {
    if (!plan.dag) for (let l = s.stage; l <= last; l++) t.events.push({ type: 'stage.completed', stage: stageNameOf(plan, l) });
    s.stage = last;
    const anyFailed = Object.values(s.tasks).some((ts) => ts.status !== 'succeeded');
    finish(s, anyFailed ? 'partial' : 'succeeded', now, anyFailed ? 'some tasks failed under a continue policy' : 'all tasks succeeded', t);
    return;
  }
  if (open > s.stage) for (let l = s.stage; l < open; l++) if (!plan.dag) t.events.push({ type: 'stage.completed', stage: stageNameOf(plan, l) });
  s.stage = open;
}

const stageNameOf = (plan: FlowPlan, level: number) => plan.order.find((pt) => pt.level === level)?.group ?? `level-${level}`;

/** Dispatches a mapped task's next chunks, lowest index first, while fewer than maxParallel are out. */
function dispatchChunks(ts: TaskState, pt: PlanTask, t: Transition) {
  const cs = ts.cs!;
  let out = 0;
  for (let i = cs.indexOf('d'); i >= 0; i = cs.indexOf('d', i + 1)) out++;
  if (out >= pt.map!.maxParallel) return;
  const chars = cs.split('');
  for (let i = cs.indexOf('-'); i >= 0 && out < pt.map!.maxParallel; i = cs.indexOf('-', i + 1)) {
    chars[i] = 'd';
    out++;
    (t.dispatched ??= []).push({ task: pt.name, chunk: i });
  }
  ts.cs = chars.join('');
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
export function resultProblem(s: FlowState, r: { task: string; token?: string; chunk?: number }): TaskError | undefined {
  const ts = s.tasks[r.task];
  if (!ts) return { task: r.task, code: 'unknown_task', message: `a result arrived for task ${JSON.stringify(r.task.slice(0, 50))}, which flow ${s.flow} v${s.version} does not have` };
  if (ts.token === undefined) {
    // A state from before tokens: its dispatched tasks' results are taken as they were.
    return ts.status === 'pending' ? { task: r.task, code: 'unexpected_result', message: `a result arrived for task "${r.task}", which was never dispatched (pending)` } : undefined;
  }
  if (ts.chunks !== undefined) {
    if (ts.cs === undefined) return { task: r.task, code: 'unexpected_result', message: `a result arrived for task "${r.task}", which was never dispatched (${ts.status})` };
    if (!isChunkIndex(r.chunk ?? 0, ts.chunks))
      return { task: r.task, code: 'unknown_task', message: `a result arrived for chunk ${String(r.chunk)} of task "${r.task}", which has ${ts.chunks} chunks` };
    if (!sameToken(r.token ?? '', chunkToken(ts.token, r.chunk ?? 0)))
      return {
        task: r.task,
        code: 'bad_token',
        message: `a result for chunk ${r.chunk ?? 0} of task "${r.task}" does not carry the token of its dispatch${r.token ? '' : ' (it carries none)'}`,
      };
    return undefined;
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
  const plan = planOf(def);
  const pt = plan.byName.get(r.task);
  if (!pt) return { ...t, rejected: { code: 'unknown_task', message: `task "${r.task}" is not in the definition of flow ${s.flow} v${s.version}` } };
  if (ts.status !== 'dispatched') return { ...t, rejected: { code: 'unexpected_result', message: `a result arrived for task "${r.task}", which was never dispatched (${ts.status})` } };
  const chunk = ts.cs !== undefined ? (r.chunk ?? 0) : undefined;
  if (chunk !== undefined) {
    // One character per chunk: a settled one is a duplicate. A `-` one was dispatched by a transition
    // whose state was not written yet (a replay): its token proves the dispatch.
    const c = ts.cs![chunk];
    if (c === 's' || c === 'f' || c === 'c') return t;
  }
  t.changed = true;
  ts.attempts = Math.max(ts.attempts, r.attempts);
  if (r.startedAt && (chunk === undefined || !ts.startedAt || r.startedAt < ts.startedAt)) ts.startedAt = r.startedAt;
  ts.finishedAt = r.finishedAt ?? now;
  if (ts.startedAt) ts.durationMs = ts.finishedAt - ts.startedAt;
  if (r.worker) ts.worker = r.worker;
  const name = chunk === undefined ? r.task : `${r.task}[${chunk}]`;
  if (r.succeeded) {
    if (chunk !== undefined) {
      ts.cs = `${ts.cs!.slice(0, chunk)}s${ts.cs!.slice(chunk + 1)}`;
      t.chunkOutput = { task: r.task, chunk, value: r.output !== undefined ? r.output : r.outputRef ? { ref: r.outputRef } : null };
      if (ts.cs.indexOf('s') === 0 && !/[^s]/.test(ts.cs)) {
        ts.status = 'succeeded';
        t.events.push({ type: 'task.succeeded', task: r.task });
      } else {
        if (!s.paused) dispatchChunks(ts, pt, t);
        return t;
      }
    } else {
      ts.status = 'succeeded';
      if (r.output !== undefined) ts.output = r.output;
      if (r.outputRef) ts.outputRef = r.outputRef;
      t.events.push({ type: 'task.succeeded', task: r.task });
    }
  } else {
    if (chunk !== undefined) ts.cs = `${ts.cs!.slice(0, chunk)}${r.cancelled ? 'c' : 'f'}${ts.cs!.slice(chunk + 1)}`;
    ts.status = r.cancelled ? 'cancelled' : 'failed';
    ts.error = { code: r.errorCode || 'internal', message: r.errorMessage || 'task failed' };
    if (chunk !== undefined) ts.error.message = `chunk ${chunk} of ${ts.chunks}: ${ts.error.message}`;
    s.errors.push({ task: r.task, code: ts.error.code, message: ts.error.message });
    t.events.push({ type: 'task.failed', task: name, message: `${ts.error.code}: ${ts.error.message}` });
    // A failure that arrives once the flow's deadline has passed (typically the worker's "deadline
    // passed before the task started") only raced the deadline timer: the deadline decides, so the
    // flow ends partial with what it has, as it would had the timer been applied first.
    if (now >= s.deadlineAt && !r.cancelled) {
      finish(s, 'partial', now, 'deadline', t);
      return t;
    }
    if (pt.onFailure === 'fail_flow' && !r.cancelled) {
      finish(s, 'failed', now, plan.dag ? `task ${r.task} failed and its onFailure fails the flow` : `task ${r.task} failed and stage ${pt.group} fails the flow`, t);
      return t;
    }
  }
  dispatchReady(s, plan, now, t);
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
  // The root tasks (a stage flow's first stage), with the tokens drawn when the flow was scheduled.
  t.events.push({ type: 'flow.started', stage: stagesOf(def)[0]!.name });
  dispatchReady(s, planOf(def), now, t);
  return t;
}

/**
 * A waiting task (`waitFor`) takes the oldest signal of its name that no task took yet: it succeeds with
 * the signal's payload as output. False when there is none (it goes on waiting).
 */
function takeSignal(s: FlowState, pt: PlanTask, now: number, t: Transition): boolean {
  const rec = s.signals?.find((r) => r.name === pt.signal!.name && r.task === undefined);
  if (!rec) return false;
  const ts = s.tasks[pt.name]!;
  rec.task = pt.name;
  ts.status = 'succeeded';
  ts.attempts = 1;
  ts.startedAt = ts.dispatchedAt ?? now;
  ts.finishedAt = now;
  ts.durationMs = now - ts.startedAt;
  ts.worker = `signal:${rec.id}`;
  ts.output = rec.payload ?? null;
  t.events.push({ type: 'task.succeeded', task: pt.name, message: `signal ${rec.name} (${rec.id})` });
  return true;
}

export interface SignalIn {
  /** The signal's id: the same id twice counts once (the caller's Idempotency-Key, or one drawn by ingest). */
  id: string;
  name: string;
  payload?: unknown;
}

/**
 * A signal arrived (its record proved by the engine: ingest stored it before the control went out). It
 * is kept in the state, once by its id; a task waiting for its name takes it at once (and what needs that
 * task may start), else the first task of its name to become ready takes it. A signal no task waits for
 * is kept all the same (listed in the flow's view). A finished flow is unchanged.
 */
export function applySignal(s: FlowState, def: FlowDef, sig: SignalIn, now: number): Transition {
  const t: Transition = { changed: false, events: [] };
  if (isTerminal(s) || s.signals?.some((r) => r.id === sig.id)) return t;
  if ((s.signals?.length ?? 0) >= MAX_SIGNALS_PER_FLOW)
    return { ...t, rejected: { code: 'too_many_signals', message: `flow ${s.flowId} holds ${MAX_SIGNALS_PER_FLOW} signals already; signal ${sig.name} (${sig.id}) was not applied` } };
  t.changed = true;
  (s.signals ??= []).push({ id: sig.id, name: sig.name, at: now, ...(sig.payload !== undefined ? { payload: sig.payload } : {}) });
  t.events.push({ type: 'signal.received', message: `signal ${sig.name} (${sig.id})` });
  if (s.status !== 'running') return t;
  const plan = planOf(def);
  const waiting = plan.order.find((pt) => pt.signal?.name === sig.name && s.tasks[pt.name]?.status === 'dispatched');
  if (waiting && takeSignal(s, waiting, now, t)) dispatchReady(s, plan, now, t);
  return t;
}

/** When a waiting task's timeout is due (epoch ms), or undefined when it waits for nothing (settled, not a `waitFor`, the flow ended). */
export function signalTimeoutDue(s: FlowState, def: FlowDef, task: string): number | undefined {
  const pt = planOf(def).byName.get(task);
  const ts = s.tasks[task];
  if (isTerminal(s) || s.status !== 'running' || !pt?.signal || ts?.status !== 'dispatched') return undefined;
  return (ts.dispatchedAt ?? s.startedAt) + pt.signal.timeoutMs;
}

/**
 * A waiting task's timeout timer: when the state says it is due (anyone may publish a timer: the state
 * decides), the task fails with code `timeout` and its onFailure applies. Otherwise nothing changes.
 */
export function applySignalTimeout(s: FlowState, def: FlowDef, task: string, now: number): Transition {
  const t: Transition = { changed: false, events: [] };
  const due = signalTimeoutDue(s, def, task);
  if (due === undefined || now < due) return t;
  const plan = planOf(def);
  const pt = plan.byName.get(task)!;
  const ts = s.tasks[task]!;
  t.changed = true;
  ts.status = 'failed';
  ts.finishedAt = now;
  ts.error = { code: 'timeout', message: `no signal ${pt.signal!.name} arrived within ${pt.signal!.timeoutMs} ms` };
  s.errors.push({ task, code: 'timeout', message: ts.error.message });
  t.events.push({ type: 'task.failed', task, message: `timeout: ${ts.error.message}` });
  if (now >= s.deadlineAt) finish(s, 'partial', now, 'deadline', t);
  else if (pt.onFailure === 'fail_flow')
    finish(s, 'failed', now, plan.dag ? `task ${task} failed and its onFailure fails the flow` : `task ${task} failed and stage ${pt.group} fails the flow`, t);
  else dispatchReady(s, plan, now, t);
  return t;
}

/**
 * Brings the flow's pause in line with its flag (KV jetflow_pauses, set and cleared only by the API): so
 * any control, forged or repeated, can only apply what the flag says. Paused: nothing more is dispatched.
 * Resumed: every ready task goes out, and the next chunks of mapped tasks that are out.
 */
export function applyPauseSync(s: FlowState, def: FlowDef, paused: boolean, now: number): Transition {
  const t: Transition = { changed: false, events: [] };
  if (isTerminal(s) || paused === (s.paused === true)) return t;
  t.changed = true;
  if (paused) {
    s.paused = true;
    t.events.push({ type: 'flow.paused', message: 'paused: no task is dispatched until it is resumed' });
    return t;
  }
  delete s.paused;
  t.events.push({ type: 'flow.resumed' });
  const plan = planOf(def);
  if (s.status === 'running')
    for (const pt of plan.order) {
      const ts = s.tasks[pt.name];
      if (pt.map && ts?.status === 'dispatched' && ts.cs?.includes('-')) dispatchChunks(ts, pt, t);
    }
  dispatchReady(s, plan, now, t);
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
  const plan = planOf(def);
  for (const pt of plan.order) if (s.tasks[pt.name]?.stage !== pt.level) return false;
  return plan.order.length === Object.keys(s.tasks).length;
}

/**
 * Every task message the state says is out (dispatched tasks, dispatched chunks), to publish again,
 * idempotently, with their deterministic ids: what a replay after a crash re-derives.
 */
export function pendingDispatches(s: FlowState, def: FlowDef): Dispatch[] {
  if (s.status !== 'running') return [];
  const out: Dispatch[] = [];
  for (const pt of planOf(def).order) {
    const ts = s.tasks[pt.name];
    if (ts?.status !== 'dispatched') continue;
    if (ts.cs === undefined) out.push({ task: pt.name });
    else for (let i = ts.cs.indexOf('d'); i >= 0; i = ts.cs.indexOf('d', i + 1)) out.push({ task: pt.name, chunk: i });
  }
  return out;
}

/** The tasks that the state says are dispatched (pendingDispatches without chunks; kept for callers of before). */
export function tasksToDispatch(s: FlowState, def: FlowDef): PlanTask[] {
  const plan = planOf(def);
  return [...new Set(pendingDispatches(s, def).map((d) => d.task))].map((n) => plan.byName.get(n)!);
}

/** Deterministic message ids: a replay or a race collapses into one message. */
export const msgIds = {
  task: (flowId: string, stage: number, task: string, chunk?: number) => (chunk === undefined ? `${flowId}:${stage}:${task}` : `${flowId}:${stage}:${task}:${chunk}`),
  result: (flowId: string, task: string, chunk?: number) => (chunk === undefined ? `${flowId}:${task}:result` : `${flowId}:${task}:${chunk}:result`),
  callback: (flowId: string) => `${flowId}:callback`,
  /** `nonce` (a token of the flow's first dispatch) keeps anyone who guesses a flow id from taking its timer's id first. */
  deadline: (flowId: string, nonce = '') => (nonce ? `${flowId}:deadline:${nonce}` : `${flowId}:deadline`),
  cancel: (flowId: string) => `${flowId}:cancel`,
  /** A scheduled flow's start timer (the nonce as for the deadline timer). */
  start: (flowId: string, nonce: string) => `${flowId}:start:${nonce}`,
  /** A waiting task's timeout timer (its dispatch token as the nonce). */
  signalTimeout: (flowId: string, task: string, token: string) => `${flowId}:wait:${task}:${token}`,
  /** A signal's control message, once per signal id. */
  signal: (flowId: string, signalId: string) => `${flowId}:signal:${signalId}`,
};

export const deliveryIdOf = (flowId: string) => `dlv_${flowId}`;

/**
 * The report the callback receives (README, "The callback"): the leaf tasks (a stage flow's last stage)
 * under `results`, the others under `datasets`. Built from the state alone (its tasks are in definition
 * order and know their stage, a DAG's leaves are marked), so a flow whose definition can no longer be
 * found still gets its callback. A mapped task's output is the array of its chunk outputs in chunk
 * order, which the state does not hold: `outputs` gives it (the engine's chunk store), else the entry
 * is `{ chunks }`.
 */
export function callbackBody(s: FlowState, outputs?: (task: string) => unknown[] | undefined) {
  let last = 0;
  let marked = false;
  for (const ts of Object.values(s.tasks)) {
    if (ts.stage > last) last = ts.stage;
    if (ts.leaf) marked = true;
  }
  const results: Record<string, unknown> = {};
  const datasets: Record<string, unknown> = {};
  const outputOf = (name: string, ts: TaskState) =>
    ts.chunks !== undefined ? (outputs?.(name) ?? (ts.chunks === 0 ? [] : { chunks: ts.chunks })) : (ts.output ?? (ts.outputRef ? { ref: ts.outputRef } : null));
  for (const [name, ts] of Object.entries(s.tasks)) {
    if (ts.internal) continue;
    if (marked ? ts.leaf : ts.stage === last) results[name] = ts.status === 'succeeded' ? outputOf(name, ts) : { status: ts.status, error: ts.error ?? null };
    else datasets[name] = ts.status === 'succeeded' ? outputOf(name, ts) : { status: ts.status };
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

function chunkProgress(ts: TaskState) {
  const cs = ts.cs ?? '';
  const n = (c: string) => cs.split(c).length - 1;
  return { count: ts.chunks ?? 0, succeeded: ts.status === 'succeeded' && !cs ? (ts.chunks ?? 0) : n('s'), failed: n('f') + n('c'), running: n('d') };
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
    ? stagesOf(own).map((st) => ({ name: st.name, onFailure: st.onFailure, tasks: st.tasks.map((td) => ({ name: td.name, subject: td.subject || null })) }))
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
        // A mapped task's progress: its chunks by state.
        ...(ts.chunks !== undefined ? { chunks: chunkProgress(ts) } : {}),
        // A `waitFor` task still waiting: the signal it waits for.
        ...(ts.status === 'dispatched' && own && planOf(own).byName.get(td.name)?.signal ? { waitingForSignal: planOf(own).byName.get(td.name)!.signal!.name } : {}),
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
    ...(s.paused ? { paused: true } : {}),
    finishedAt: iso(s.finishedAt),
    durationMs: s.finishedAt ? s.finishedAt - s.submittedAt : null,
    endReason: s.endReason ?? null,
    idempotencyKey: s.idempotencyKey ?? null,
    priority: s.priority ?? 5,
    metadata: s.metadata,
    stages,
    errors: s.errors,
    ...(s.signals ? { signals: s.signals.map((r) => ({ id: r.id, name: r.name, receivedAt: iso(r.at), task: r.task ?? null })) } : {}),
    ...(done ? (({ results, datasets }) => ({ results, datasets }))(callbackBody(s)) : {}),
    callback: callback ?? null,
  };
}
