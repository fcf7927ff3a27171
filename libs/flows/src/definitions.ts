import { createHash } from 'node:crypto';
import { z } from 'zod';
import { SUBJECTS } from '../../messaging/src/topology.js';

/**
 * Flows are declared, not coded: a named, versioned list of stages. A stage is a group of tasks that
 * run in parallel; the next stage starts when the group has settled. Each task names its subject
 * (routing is by subject hierarchy), its limits, retries and backoff; each group states explicitly
 * what a failed task does to the flow.
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
});
const StageDefSchema = z.object({
  name: z.string().regex(/^[a-z][a-z0-9_-]{0,40}$/),
  onFailure: FailurePolicy,
  tasks: z.array(TaskDefSchema).min(1).max(64),
});
export const FlowDefSchema = z.object({
  name: z.string().regex(/^[a-z][a-z0-9_-]{0,40}$/),
  version: z.number().int().min(1),
  deadlineMs: z.number().int().min(100).max(86_400_000),
  stages: z.array(StageDefSchema).min(1).max(16),
});
export type TaskDef = z.infer<typeof TaskDefSchema>;
export type StageDef = z.infer<typeof StageDefSchema>;
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

export const INSIGHTS: FlowDef = {
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

export const BUILTIN_FLOWS: FlowDef[] = [INSIGHTS];

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
    const taskNames = new Set<string>();
    const stageNames = new Set<string>();
    def.stages.forEach((st, si) => {
      if (stageNames.has(st.name)) throw new DefinitionError(`${def.name}.stages[${si}]`, `duplicate stage name "${st.name}"`);
      stageNames.add(st.name);
      st.tasks.forEach((t, ti) => {
        const where = `${def.name}.stages[${si}].tasks[${ti}] (${t.name})`;
        if (taskNames.has(t.name)) throw new DefinitionError(where, `duplicate task name "${t.name}"`);
        taskNames.add(t.name);
        if (!/^jetflow\.task\.[a-z0-9_-]+\.[a-z0-9_-]+$/.test(t.subject)) throw new DefinitionError(where, `subject "${t.subject}" must be ${SUBJECTS.task}.<kind>.<name>`);
        if (knownSubjects && !knownSubjects.some((p) => subjectMatches(p, t.subject))) throw new DefinitionError(where, `unknown subject "${t.subject}": no worker serves it`);
        if (t.softLimitMs > t.hardLimitMs) throw new DefinitionError(where, `softLimitMs (${t.softLimitMs}) must not exceed hardLimitMs (${t.hardLimitMs})`);
        if (t.backoff.initialMs > t.backoff.maxMs) throw new DefinitionError(where, `backoff.initialMs must not exceed backoff.maxMs`);
        if (t.hardLimitMs > def.deadlineMs) throw new DefinitionError(where, `hardLimitMs (${t.hardLimitMs}) exceeds the flow deadline (${def.deadlineMs})`);
      });
    });
    out.push(def);
  });
  return out;
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
  return [...new Set(defs.flatMap((d) => d.stages.flatMap((s) => s.tasks.map((t) => t.subject))))].sort();
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
