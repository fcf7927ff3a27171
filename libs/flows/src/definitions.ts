import { createHash } from 'node:crypto';
import { z } from 'zod';
import { SUBJECTS } from '@jetflow/messaging';
import { ConcurrencySchema, RateLimitSchema } from './task-limits.js';

/**
 * Flows are declared, not coded: a named, versioned list of stages, or of tasks with dependencies (a
 * DAG, README "Flow definitions"). A stage is a group of tasks that run in parallel; the next stage
 * starts when the group has settled. A DAG task starts when the tasks it `needs` have settled, and may
 * `map` over an array of the input in chunks. Each task names its subject (routing is by subject
 * hierarchy), its limits, retries and backoff; each group (or DAG task) states what a failed task does
 * to the flow.
 */
export const FailurePolicy = z.enum(['fail_flow', 'continue']);
export type FailurePolicy = z.infer<typeof FailurePolicy>;

const TaskDefSchema = z.object({
  name: z.string().regex(/^[a-z][a-z0-9_-]{0,40}$/, 'lowercase letters, digits, _ or -, starting with a letter'),
  subject: z.string(),
  softLimitMs: z.number().int().min(10).max(3_600_000),
  hardLimitMs: z.number().int().min(10).max(3_600_000),
  maxAttempts: z.number().int().min(1).max(20),
  backoff: z.object({ initialMs: z.number().int().min(0).max(600_000), maxMs: z.number().int().min(0).max(3_600_000), multiplier: z.number().min(1).max(10) }),
  /** At most `limit` of its tasks with one key value running at once, across every worker (task-limits.ts). */
  concurrency: ConcurrencySchema.optional(),
  /** At most `perSecond` of its tasks with one key value starting per second, across every worker. */
  rateLimit: RateLimitSchema.optional(),
});
const StageDefSchema = z.object({
  name: z.string().regex(/^[a-z][a-z0-9_-]{0,40}$/),
  onFailure: FailurePolicy,
  tasks: z.array(TaskDefSchema).min(1).max(64),
});

/** A signal's name (`waitFor.signal`, POST /v1/flows/{id}/signals/{name}): a subject token and a KV key token. */
export const SIGNAL_NAME_RE = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/;

/**
 * A DAG task that runs nothing: it waits for the flow's signal `signal` (README, "Signals") and settles
 * with its payload as output, or fails with code `timeout` `timeoutMs` after it became ready.
 */
const WaitForSchema = z.object({
  signal: z.string().regex(SIGNAL_NAME_RE, 'letters, digits, _ or -, starting with a letter (at most 64)'),
  timeoutMs: z.number().int().min(10).max(86_400_000),
});

/** Chunks of a mapped task dispatched at once when the definition does not say (`map.maxParallel`). */
export const DEFAULT_MAX_PARALLEL = 64;
/** A `map.over` path: dot-separated keys into the submission's input (`records`, `batch.items`). */
export const MAP_PATH_RE = /^[A-Za-z_$][A-Za-z0-9_$-]{0,63}(\.[A-Za-z_$][A-Za-z0-9_$-]{0,63}){0,7}$/;

const MapDefSchema = z.object({
  over: z.string().max(600),
  chunkSize: z.number().int().min(1).max(100_000),
  maxParallel: z.number().int().min(1).max(10_000).optional(),
});
/**
 * A task of a DAG definition (`tasks`): it starts when every task it `needs` has settled; with `map`
 * it runs once per chunk of the array at `map.over` in the input. Limits default to the built-in ones.
 */
const DagTaskDefSchema = z.object({
  name: TaskDefSchema.shape.name,
  /** The subject its task messages go to; '' for a task that waits for a signal (`waitFor`) or runs a child flow (`flow`). */
  subject: z.string().default(''),
  /** Instead of a subject: run this flow (same tenant) as a child and wait for it; its output is the child's `results`. */
  flow: z.string().max(64).optional(),
  /** Instead of a subject: wait for a signal to the flow; its payload is the output. */
  waitFor: WaitForSchema.optional(),
  needs: z.array(z.string().max(64)).max(64).optional(),
  map: MapDefSchema.optional(),
  onFailure: FailurePolicy.optional(),
  /** A step whose output only the tasks that need it read (a mapped step of a reducer): the callback leaves it out. */
  internal: z.boolean().optional(),
  softLimitMs: TaskDefSchema.shape.softLimitMs.default(5_000),
  hardLimitMs: TaskDefSchema.shape.hardLimitMs.default(8_000),
  maxAttempts: TaskDefSchema.shape.maxAttempts.default(3),
  backoff: TaskDefSchema.shape.backoff.default({ initialMs: 200, maxMs: 2_000, multiplier: 2 }),
  concurrency: TaskDefSchema.shape.concurrency,
  rateLimit: TaskDefSchema.shape.rateLimit,
});
/**
 * A definition lists either `stages` (barriers of parallel tasks) or `tasks` (a DAG by `needs`), never
 * both: stages compile into the same DAG (plan.ts), so one engine path runs both.
 */
export const FlowDefSchema = z
  .object({
    name: z.string().regex(/^[a-z][a-z0-9_-]{0,40}$/),
    version: z.number().int().min(1),
    deadlineMs: z.number().int().min(100).max(86_400_000),
    stages: z.array(StageDefSchema).min(1).max(16).optional(),
    tasks: z.array(DagTaskDefSchema).min(1).max(256).optional(),
  })
  .superRefine((d, ctx) => {
    if ((d.stages === undefined) === (d.tasks === undefined))
      ctx.addIssue({ code: 'custom', path: [], message: `give exactly one of stages and tasks (${d.stages ? 'both are' : 'neither is'} given)` });
  });
export type TaskDef = z.infer<typeof TaskDefSchema>;
export type StageDef = z.infer<typeof StageDefSchema>;
export type DagTaskDef = z.infer<typeof DagTaskDefSchema>;
export type MapDef = z.infer<typeof MapDefSchema>;
export type FlowDef = z.infer<typeof FlowDefSchema>;

export class DefinitionError extends Error {
  constructor(
    readonly where: string,
    message: string,
  ) {
    super(`flow definition ${where}: ${message}`);
    this.name = 'DefinitionError';
  }
}

const defaultLimits = { softLimitMs: 5_000, hardLimitMs: 8_000, maxAttempts: 3, backoff: { initialMs: 200, maxMs: 2_000, multiplier: 2 } };

/**
 * insights version 1: two stages, each task on the whole batch on one thread. No longer submitted to
 * (INSIGHTS_V2 is), kept so flows started on it finish on it (LEGACY_FLOWS), and as the stage example.
 */
export const INSIGHTS: FlowDef & { stages: StageDef[] } = {
  name: 'insights',
  version: 1,
  deadlineMs: 10_000,
  stages: [
    {
      name: 'datasets',
      onFailure: 'fail_flow',
      tasks: [
        { name: 'text', subject: 'jetflow.task.dataset.text', ...defaultLimits },
        { name: 'features', subject: 'jetflow.task.dataset.features', ...defaultLimits },
        { name: 'embeddings', subject: 'jetflow.task.dataset.embeddings', ...defaultLimits },
      ],
    },
    {
      name: 'analysis',
      onFailure: 'continue',
      tasks: [
        { name: 'sentiment', subject: 'jetflow.task.analyst.sentiment', ...defaultLimits },
        { name: 'anomaly', subject: 'jetflow.task.analyst.anomaly', ...defaultLimits },
        { name: 'keywords', subject: 'jetflow.task.analyst.keywords', ...defaultLimits },
      ],
    },
  ],
};

/** Records per chunk of insights' mapped steps, and chunks of each out at once (docs/PERFORMANCE.md, "insights on map"). */
export const INSIGHTS_CHUNK = { chunkSize: 250, maxParallel: 8 };
const task = (name: string, subject: string, more: Partial<DagTaskDef> = {}): DagTaskDef => ({ name, subject, ...defaultLimits, ...more });
/** The limits of insights v2's batch-wide steps (the merges and the analyses). */
const BATCH_LIMITS = { softLimitMs: 20_000, hardLimitMs: 25_000 };

/**
 * insights on map: the per-record work in chunks over `records` (prepare: text rows, text features and
 * embeddings; score: the sentiment classifier, on the analyst's threads at the same time), each dataset
 * merged from the chunks' parts, and the batch-wide analyses over the merged datasets. The callback keeps
 * the report of version 1: `results` = sentiment, anomaly, keywords; `datasets` = text, features,
 * embeddings (prepare and score are internal).
 */
export const INSIGHTS_V2: FlowDef & { tasks: DagTaskDef[] } = {
  name: 'insights',
  version: 2,
  // Batch-wide steps over 50,000 records take seconds each on a loaded 2-core box: 30 s, and 20/25 s limits for them.
  deadlineMs: 30_000,
  tasks: [
    task('prepare', 'jetflow.task.dataset.prepare', { map: { over: 'records', ...INSIGHTS_CHUNK }, internal: true }),
    task('score', 'jetflow.task.analyst.score', { map: { over: 'records', ...INSIGHTS_CHUNK }, internal: true }),
    task('text', 'jetflow.task.dataset.text', { needs: ['prepare'], ...BATCH_LIMITS }),
    task('features', 'jetflow.task.dataset.features', { needs: ['prepare'], ...BATCH_LIMITS }),
    task('embeddings', 'jetflow.task.dataset.embeddings', { needs: ['prepare'], ...BATCH_LIMITS }),
    task('sentiment', 'jetflow.task.analyst.sentiment', { needs: ['score', 'text'], onFailure: 'continue', ...BATCH_LIMITS }),
    task('anomaly', 'jetflow.task.analyst.anomaly', { needs: ['features', 'embeddings'], onFailure: 'continue', ...BATCH_LIMITS }),
    task('keywords', 'jetflow.task.analyst.keywords', { needs: ['text', 'embeddings'], onFailure: 'continue', ...BATCH_LIMITS }),
  ],
};

export const BUILTIN_FLOWS: FlowDef[] = [INSIGHTS_V2];

/** Built-in definitions no longer submitted to but still run: flows started on them finish on them (versions.ts). */
export const LEGACY_FLOWS: FlowDef[] = [INSIGHTS];

/**
 * Validates definitions at start: schema, duplicate names, limits that contradict each other, and
 * subjects outside the task hierarchy or not served by any known worker pattern. Errors say where.
 */
export function validateDefinitions(defs: unknown[], knownSubjects?: string[]): FlowDef[] {
  const out: FlowDef[] = [];
  const flowNames = new Set<string>();
  defs.forEach((raw, i) => {
    const parsed = FlowDefSchema.safeParse(raw);
    const label = `#${i}${typeof (raw as { name?: unknown })?.name === 'string' ? ` (${(raw as { name: string }).name})` : ''}`;
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw new DefinitionError(`${label} at ${issue.path.join('.') || '(root)'}`, issue.message);
    }
    const def = parsed.data;
    if (flowNames.has(def.name)) throw new DefinitionError(label, `duplicate flow name "${def.name}"`);
    flowNames.add(def.name);
    const checkTask = (t: { name: string; subject: string; softLimitMs: number; hardLimitMs: number; backoff: { initialMs: number; maxMs: number } }, where: string) => {
      if (!/^jetflow\.task\.[a-z0-9_-]+\.[a-z0-9_-]+$/.test(t.subject)) throw new DefinitionError(where, `subject "${t.subject}" must be ${SUBJECTS.task}.<kind>.<name>`);
      if (knownSubjects && !knownSubjects.some((p) => subjectMatches(p, t.subject))) throw new DefinitionError(where, `unknown subject "${t.subject}": no worker serves it`);
      if (t.softLimitMs > t.hardLimitMs) throw new DefinitionError(where, `softLimitMs (${t.softLimitMs}) must not exceed hardLimitMs (${t.hardLimitMs})`);
      if (t.backoff.initialMs > t.backoff.maxMs) throw new DefinitionError(where, `backoff.initialMs must not exceed backoff.maxMs`);
      if (t.hardLimitMs > def.deadlineMs) throw new DefinitionError(where, `hardLimitMs (${t.hardLimitMs}) exceeds the flow deadline (${def.deadlineMs})`);
    };
    const taskNames = new Set<string>();
    if (def.tasks) {
      def.tasks.forEach((t, ti) => {
        const where = `${def.name}.tasks[${ti}] (${t.name})`;
        if (taskNames.has(t.name)) throw new DefinitionError(where, `duplicate task name "${t.name}"`);
        taskNames.add(t.name);
        if (t.waitFor !== undefined) checkWaitFor(t, where, def.deadlineMs);
        else if ((t.subject === '') === (t.flow === undefined)) throw new DefinitionError(where, 'give exactly one of subject and flow (a child flow)');
        else if (t.flow !== undefined) {
          if (!/^[a-z][a-z0-9_-]{0,40}$/.test(t.flow)) throw new DefinitionError(`${where} flow`, `"${t.flow}" is not a flow name`);
          if (t.flow === def.name) throw new DefinitionError(`${where} flow`, `a flow cannot run itself as a child`);
          if (t.map) throw new DefinitionError(`${where} map`, 'a child-flow task cannot be mapped');
        } else checkTask(t, where);
        if ((t.concurrency || t.rateLimit) && t.subject === '')
          throw new DefinitionError(`${where} ${t.concurrency ? 'concurrency' : 'rateLimit'}`, 'only a task with a subject (run by a worker) can have concurrency or rateLimit');
        if (t.map && !MAP_PATH_RE.test(t.map.over))
          throw new DefinitionError(
            `${def.name}.tasks[${ti}].map.over (${t.name})`,
            `${JSON.stringify(t.map.over)} is not a dot path into the input (keys of letters, digits, _, $ or -, e.g. "records" or "batch.items")`,
          );
      });
      def.tasks.forEach((t, ti) => {
        const seen = new Set<string>();
        (t.needs ?? []).forEach((n, ni) => {
          const where = `${def.name}.tasks[${ti}].needs[${ni}] (${t.name})`;
          if (!taskNames.has(n)) throw new DefinitionError(where, `unknown task "${n}" (tasks: ${[...taskNames].join(', ')})`);
          if (seen.has(n)) throw new DefinitionError(where, `"${n}" is needed twice`);
          seen.add(n);
        });
      });
      const cycle = findCycle(def.tasks);
      if (cycle) throw new DefinitionError(`${def.name}.tasks`, `the needs form a cycle: ${cycle.join(' -> ')}`);
    } else {
      const stageNames = new Set<string>();
      def.stages!.forEach((st, si) => {
        if (stageNames.has(st.name)) throw new DefinitionError(`${def.name}.stages[${si}]`, `duplicate stage name "${st.name}"`);
        stageNames.add(st.name);
        st.tasks.forEach((t, ti) => {
          const where = `${def.name}.stages[${si}].tasks[${ti}] (${t.name})`;
          if (taskNames.has(t.name)) throw new DefinitionError(where, `duplicate task name "${t.name}"`);
          taskNames.add(t.name);
          checkTask(t, where);
        });
      });
    }
    out.push(def);
  });
  return out;
}

/** A task that waits for a signal runs nothing: no subject, no child flow, no map; its timeout within the flow's deadline. */
function checkWaitFor(t: DagTaskDef, where: string, deadlineMs: number) {
  const w = t.waitFor!;
  if (t.subject !== '') throw new DefinitionError(`${where} waitFor`, `a task that waits for a signal has no subject (it names "${t.subject}"); give one of subject and waitFor`);
  if ((t as { flow?: unknown }).flow !== undefined) throw new DefinitionError(`${where} waitFor`, 'a task that waits for a signal runs no child flow; give one of flow and waitFor');
  if (t.map) throw new DefinitionError(`${where} waitFor`, 'a task that waits for a signal cannot be mapped (remove map)');
  if (w.timeoutMs > deadlineMs) throw new DefinitionError(`${where} waitFor.timeoutMs`, `${w.timeoutMs} exceeds the flow deadline (${deadlineMs})`);
}

/** NATS subject matching with * and > wildcards. */
export function subjectMatches(pattern: string, subject: string): boolean {
  const p = pattern.split('.');
  const s = subject.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return s.length > i;
    if (i >= s.length) return false;
    if (p[i] !== '*' && p[i] !== s[i]) return false;
  }
  return p.length === s.length;
}

export function taskSubjects(defs: FlowDef[]): string[] {
  return [...new Set(defs.flatMap((d) => allTasks(d).map((t) => t.subject)))].filter(Boolean).sort();
}

/** Every task of a definition, in definition order (stage by stage, or the DAG's list). */
export function allTasks(def: FlowDef): Array<TaskDef & Partial<Pick<DagTaskDef, 'needs' | 'map' | 'onFailure'>>> {
  return def.tasks ?? def.stages!.flatMap((st) => st.tasks);
}

/** The first cycle of `needs` found (its names, the first repeated at the end), or undefined. */
function findCycle(tasks: Array<{ name: string; needs?: string[] | undefined }>): string[] | undefined {
  const needs = new Map(tasks.map((t) => [t.name, t.needs ?? []]));
  const state = new Map<string, 1 | 2>();
  const path: string[] = [];
  const visit = (n: string): string[] | undefined => {
    if (state.get(n) === 2) return undefined;
    if (state.get(n) === 1) return [...path.slice(path.indexOf(n)), n];
    state.set(n, 1);
    path.push(n);
    for (const m of needs.get(n) ?? []) {
      const c = visit(m);
      if (c) return c;
    }
    path.pop();
    state.set(n, 2);
    return undefined;
  };
  for (const t of tasks) {
    const c = visit(t.name);
    if (c) return c;
  }
  return undefined;
}

/**
 * The stages a view shows: a stage definition's own, or a DAG's tasks grouped by depth (`level-<n>`:
 * a task's level is one more than the deepest task it needs), each with the policy of its tasks
 * (`continue` when any of them continues).
 */
export function stagesOf(def: FlowDef): StageDef[] {
  if (def.stages) return def.stages;
  const level = dagLevels(def.tasks!);
  const out: StageDef[] = [];
  for (const t of def.tasks!) {
    const l = level.get(t.name)!;
    while (out.length <= l) out.push({ name: `level-${out.length}`, onFailure: 'fail_flow', tasks: [] });
    const { name, subject, softLimitMs, hardLimitMs, maxAttempts, backoff } = t;
    out[l]!.tasks.push({ name, subject, softLimitMs, hardLimitMs, maxAttempts, backoff });
    if ((t.onFailure ?? 'fail_flow') === 'continue') out[l]!.onFailure = 'continue';
  }
  return out;
}

/** Each DAG task's depth: 0 without needs, else one more than its deepest need (the needs are acyclic). */
export function dagLevels(tasks: Array<{ name: string; needs?: string[] | undefined }>): Map<string, number> {
  const needs = new Map(tasks.map((t) => [t.name, t.needs ?? []]));
  const level = new Map<string, number>();
  const of = (n: string): number => {
    let l = level.get(n);
    if (l === undefined) {
      l = 0;
      for (const m of needs.get(n) ?? []) l = Math.max(l, of(m) + 1);
      level.set(n, l);
    }
    return l;
  };
  for (const t of tasks) of(t.name);
  return level;
}

export class FlowRegistry {
  private readonly byName = new Map<string, FlowDef>();
  constructor(readonly defs: FlowDef[]) {
    for (const d of defs) this.byName.set(d.name, d);
  }
  get(name: string): FlowDef | undefined {
    return this.byName.get(name);
  }
  names(): string[] {
    return [...this.byName.keys()];
  }
  /** Makes `def` the definition of its name: a newer version registered while running (registrations.ts). */
  use(def: FlowDef): void {
    const i = this.defs.findIndex((d) => d.name === def.name);
    if (i >= 0) this.defs[i] = def;
    else this.defs.push(def);
    this.byName.set(def.name, def);
  }
}

/** JSON with the keys of every object sorted: one definition gives the same bytes in every process. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .sort()
      .filter((k) => o[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

export const DEFINITION_HASH_RE = /^[0-9a-f]{16}$/;
const hashes = new WeakMap<FlowDef, string>();

/**
 * A definition's identity: the first 64 bits of the sha256 of its canonical JSON. A flow's state records
 * it, so the flow finishes on the definition it started with whatever the definitions file says later
 * (libs/flows versions.ts). Memoised per object: it is computed at every flow start.
 */
export function definitionHash(def: FlowDef): string {
  let h = hashes.get(def);
  if (!h) {
    h = createHash('sha256').update(canonicalJson(def)).digest('hex').slice(0, 16);
    hashes.set(def, h);
  }
  return h;
}

/** The key of a definition version in the definitions store: `<name>.v<version>.<hash>`. */
export const definitionKey = (name: string, version: number, hash: string) => `${name}.v${version}.${hash}`;
