import { createHmac } from 'node:crypto';
import { DEFAULT_MAX_PARALLEL, dagLevels, type FailurePolicy, type FlowDef, type TaskDef } from './definitions.js';

/**
 * A definition compiled into the one shape the engine runs: a DAG of tasks. `stages` compile into it
 * (every task of stage i needs every task of stage i-1, with its stage's policy, and sees the outputs
 * of every earlier stage), so stage flows and DAG flows take the same path through the transitions.
 */
export interface PlanTask extends TaskDef {
  /** The tasks that must have settled before this one starts. */
  needs: string[];
  /** The tasks whose outputs travel in its Task messages (`deps`): a DAG task's needs, a stage task's every earlier stage's. */
  deps: string[];
  onFailure: FailurePolicy;
  /** Its stage (stage definitions), or its depth in the DAG: the `<level>` of its message ids. */
  level: number;
  /** Its stage's name, or `level-<n>` in a DAG (events and views). */
  group: string;
  /** No other task needs it: its output is in the callback's `results` (else `datasets`). */
  leaf: boolean;
  map?: { over: string; path: string[]; chunkSize: number; maxParallel: number };
  /** A child-flow task: the flow it runs (its subject is ''). */
  child?: string;
  /** Left out of the callback (a DAG task's `internal`): only the tasks that need it read its output. */
  internal?: true;
  /** A task that waits for a signal (`waitFor`): no task message; it settles with the signal's payload or times out. */
  signal?: { name: string; timeoutMs: number };
}

export interface FlowPlan {
  /** In an order where every task comes after the tasks it needs (definition order among equals). */
  order: PlanTask[];
  byName: ReadonlyMap<string, PlanTask>;
  /** Whether the definition is a DAG (`tasks`), not `stages`. */
  dag: boolean;
}

const plans = new WeakMap<FlowDef, FlowPlan>();

/** The plan of a validated definition (memoised per definition object). */
export function planOf(def: FlowDef): FlowPlan {
  let p = plans.get(def);
  if (!p) {
    p = compile(def);
    plans.set(def, p);
  }
  return p;
}

function compile(def: FlowDef): FlowPlan {
  const out: PlanTask[] = [];
  if (def.stages) {
    const last = def.stages.length - 1;
    const earlier: string[] = [];
    def.stages.forEach((st, i) => {
      const prev = i > 0 ? def.stages![i - 1]!.tasks.map((t) => t.name) : [];
      const deps = [...earlier];
      for (const t of st.tasks) out.push({ ...t, needs: prev, deps, onFailure: st.onFailure, level: i, group: st.name, leaf: i === last });
      earlier.push(...st.tasks.map((t) => t.name));
    });
  } else {
    const tasks = def.tasks!;
    const level = dagLevels(tasks);
    const needed = new Set(tasks.flatMap((t) => t.needs ?? []));
    const byLevel = [...tasks].sort((a, b) => level.get(a.name)! - level.get(b.name)!);
    for (const t of byLevel) {
      const { name, subject, softLimitMs, hardLimitMs, maxAttempts, backoff } = t;
      const needs = t.needs ?? [];
      out.push({
        name,
        subject,
        softLimitMs,
        hardLimitMs,
        maxAttempts,
        backoff,
        needs,
        deps: needs,
        onFailure: t.onFailure ?? 'fail_flow',
        level: level.get(name)!,
        group: `level-${level.get(name)!}`,
        leaf: !needed.has(name),
        ...(t.internal ? { internal: true as const } : {}),
        ...(t.concurrency ? { concurrency: t.concurrency } : {}),
        ...(t.rateLimit ? { rateLimit: t.rateLimit } : {}),
        ...(t.waitFor ? { signal: { name: t.waitFor.signal, timeoutMs: t.waitFor.timeoutMs } } : {}),
        ...(t.flow ? { child: t.flow } : {}),
        ...(t.map ? { map: { over: t.map.over, path: t.map.over.split('.'), chunkSize: t.map.chunkSize, maxParallel: t.map.maxParallel ?? DEFAULT_MAX_PARALLEL } } : {}),
      });
    }
  }
  return { order: out, byName: new Map(out.map((t) => [t.name, t])), dag: !def.stages };
}

/** The value at a dot path of an input object (undefined when any step is missing or not an object). */
export function valueAt(input: unknown, path: readonly string[]): unknown {
  let v = input;
  for (const k of path) {
    if (!v || typeof v !== 'object' || Array.isArray(v) || !Object.prototype.hasOwnProperty.call(v, k)) return undefined;
    v = (v as Record<string, unknown>)[k];
  }
  return v;
}

/** A copy of the input without the value at `path` (what a mapped task's chunks see as the flow input). */
export function withoutPath(input: Record<string, unknown>, path: readonly string[]): Record<string, unknown> {
  const [k, ...rest] = path;
  if (k === undefined || !Object.prototype.hasOwnProperty.call(input, k)) return input;
  const copy = { ...input };
  if (!rest.length) delete copy[k];
  else {
    const inner = copy[k];
    if (inner && typeof inner === 'object' && !Array.isArray(inner)) copy[k] = withoutPath(inner as Record<string, unknown>, rest);
  }
  return copy;
}

/** The number of chunks of `items` items in chunks of `size`. */
export const chunkCount = (items: number, size: number) => Math.ceil(items / size);

/** Whether `x` is the index of one of `count` chunks. */
export const isChunkIndex = (x: unknown, count: number): x is number => typeof x === 'number' && Number.isInteger(x) && x >= 0 && x < count;

/**
 * The result token of one chunk: derived from its task's dispatch token (HMAC-SHA256 over the index,
 * 16 base64url characters), so the state keeps one token per task however many chunks it has, a
 * replay derives the same tokens, and one chunk's token says nothing about another's.
 */
export function chunkToken(taskToken: string, index: number): string {
  return createHmac('sha256', taskToken).update(String(index)).digest('base64url').slice(0, 16);
}

/**
 * How many task instances a submission's input makes (one per unmapped task, one per chunk of a
 * mapped one), and the problems of its mapped paths: each must name an array in the input.
 */
export function mapCounts(def: FlowDef, input: unknown): { instances: number; chunks: Record<string, number>; problems: Array<{ path: string; message: string }> } {
  const chunks: Record<string, number> = {};
  const problems: Array<{ path: string; message: string }> = [];
  let instances = 0;
  for (const t of planOf(def).order) {
    if (!t.map) {
      instances++;
      continue;
    }
    const v = valueAt(input, t.map.path);
    if (!Array.isArray(v)) {
      problems.push({
        path: `input.${t.map.over}`,
        message: `flow ${def.name} maps task ${t.name} over it: expected an array, got ${v === undefined ? 'nothing (missing)' : v === null ? 'null' : typeof v}`,
      });
      continue;
    }
    chunks[t.name] = chunkCount(v.length, t.map.chunkSize);
    instances += chunks[t.name]!;
  }
  return { instances, chunks, problems };
}

/** Task instances per flow allowed by default (JETFLOW_MAX_TASKS_PER_FLOW). */
export const DEFAULT_MAX_TASKS_PER_FLOW = 10_000;
