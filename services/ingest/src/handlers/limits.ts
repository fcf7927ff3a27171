import { allTasks, type FlowDef } from '@jetflow/flows';
import type { WaitingForLimit } from '@jetflow/messaging';

/** Reads a task's waiting mark (KV jetflow_limits `<kind>.<name>.w.<flowId>.<task>`, written by its worker). */
export interface LimitWaitReader {
  waiting(subject: string, flowId: string, task: string): Promise<WaitingForLimit | undefined>;
}

interface TaskView {
  name: string;
  subject: string | null;
  status: string;
  chunks?: unknown;
  waitingForLimit?: { kind: 'concurrency' | 'rate'; key: string; limit: number; since: string };
}

/**
 * Marks, in a flow's public view, each dispatched task that its worker holds back for its concurrency or
 * rate limit (`waitingForLimit`: which limit, its key's name, the limit, since when). Only the tasks whose
 * definition has a limit are looked up (one KV read each, while dispatched); a mapped task's chunks are not.
 * A read that fails marks nothing (no claim either way).
 */
export async function markWaitingForLimits<V extends object>(view: V, def: FlowDef | undefined, flowId: string, reader: LimitWaitReader | undefined): Promise<V> {
  if (!reader || !def) return view;
  const limited = new Set(allTasks(def).flatMap((t) => (t.concurrency || t.rateLimit ? [t.name] : [])));
  if (!limited.size) return view;
  const v = view as { stages?: Array<{ tasks?: TaskView[] }> };
  const tasks = (v.stages ?? []).flatMap((s) => s.tasks ?? []).filter((t) => t.status === 'dispatched' && typeof t.subject === 'string' && limited.has(t.name) && t.chunks === undefined);
  await Promise.all(
    tasks.map(async (t) => {
      const w = await reader.waiting(t.subject!, flowId, t.name).catch(() => undefined);
      if (w) t.waitingForLimit = { kind: w.kind, key: w.key, limit: w.limit, since: new Date(w.since).toISOString() };
    }),
  );
  return view;
}
