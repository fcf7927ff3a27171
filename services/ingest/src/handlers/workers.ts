import { CONSUMERS, STREAMS, WORKER_REGISTRY, baseTaskSubject, summarizeSubjects, type WorkerInstance } from '@jetflow/messaging';
import type { ConsumerSource } from './consumers.js';

/** The registry as ingest reads it (libs/messaging watchWorkerRegistry). */
export interface WorkerRegistryReader {
  instances(now?: number): WorkerInstance[];
  liveSubjects(now?: number): ReadonlySet<string> | undefined;
}

export interface WorkerHandlersDeps {
  workers: WorkerRegistryReader;
  /** Task consumers' counters (num_pending per subject); a failed read leaves pending null. */
  consumers: ConsumerSource;
  /** Subjects the flow definitions name: shown even when no worker serves them. */
  subjects: () => Iterable<string>;
  now?: () => number;
}

/** GET /v1/workers: every announced instance (live or stale) and, per task subject, who serves it and what waits. */
export class WorkerHandlers {
  constructor(private readonly d: WorkerHandlersDeps) {}

  async list() {
    const now = (this.d.now ?? Date.now)();
    const workers = this.d.workers.instances(now);
    const pending = new Map<string, number>();
    const snap = await this.d.consumers.snapshot().catch(() => undefined);
    for (const c of snap?.consumers ?? []) {
      // Only the task consumers: one per subject and priority band (topology.ts), summed per subject.
      if (c.stream !== STREAMS.tasks || !c.filterSubject) continue;
      const subject = baseTaskSubject(c.filterSubject);
      if (CONSUMERS.taskAll(subject).includes(c.name)) pending.set(subject, (pending.get(subject) ?? 0) + c.numPending);
    }
    return {
      sampledAt: new Date(now).toISOString(),
      staleAfterIntervals: WORKER_REGISTRY.staleAfterIntervals,
      workers,
      subjects: summarizeSubjects(workers, pending, this.d.subjects()),
    };
  }
}

interface TaskView {
  name: string;
  subject: string | null;
  status: string;
  waitingForWorker?: boolean;
}

/**
 * Marks, in a flow's public view, each dispatched task whose subject no live worker serves
 * (`waitingForWorker: true`), and lists them as `waitingFor`. With the registry not read yet nothing is
 * marked (no claim either way). Reads tasks under `stages[].tasks` and a top-level `tasks` list.
 */
export function markWaitingForWorkers<V extends object>(view: V, live: ReadonlySet<string> | undefined): V & { waitingFor?: Array<{ task: string; subject: string }> } {
  if (!live) return view;
  const v = view as { stages?: Array<{ tasks?: TaskView[] }>; tasks?: unknown };
  const tasks: TaskView[] = [...(v.stages ?? []).flatMap((s) => s.tasks ?? []), ...(Array.isArray(v.tasks) ? (v.tasks as TaskView[]) : [])];
  const waitingFor: Array<{ task: string; subject: string }> = [];
  for (const t of tasks) {
    if (!t || typeof t !== 'object' || typeof t.name !== 'string') continue;
    const waiting = t.status === 'dispatched' && typeof t.subject === 'string' && !live.has(t.subject);
    t.waitingForWorker = waiting;
    if (waiting) waitingFor.push({ task: t.name, subject: t.subject! });
  }
  return Object.assign(view, { waitingFor });
}
