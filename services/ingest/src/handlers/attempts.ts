/** A flow event as read back from the events stream (FlowEvent, the fields the history needs). */
export interface FlowEventRecord {
  type: string;
  /** One task, or several comma-separated (one event per transition carries the tasks it touched). */
  task: string;
  status: string;
  message: string;
  attempt: number;
  atMs: number;
}

export interface AttemptError {
  /** 1-based attempt number; 0 when the event did not say. */
  attempt: number;
  at: string;
  /** `retrying`: the attempt failed and the task was retried; `failed`: the task's final failure. */
  outcome: 'retrying' | 'failed';
  code: string;
  message: string;
}

export interface CallbackAttempt {
  attempt: number;
  at: string;
  outcome: 'delivered' | 'retrying' | 'dead_lettered';
  message: string;
}

/** "code: message" as the worker and the saga write it; a message without a code is `error`. */
function splitCode(m: string): { code: string; message: string } {
  const r = /^([a-z][a-z0-9_]{0,63}): ([\s\S]*)$/.exec(m);
  return r ? { code: r[1]!, message: r[2]! } : { code: 'error', message: m };
}

/** A task's final failure as its state records it. */
export interface FinalFailure {
  task: string;
  attempts: number;
  finishedAt: number | undefined;
  error: { code: string; message: string };
}

/**
 * Each task's failed attempts, in order: one per task.retrying event (the worker publishes one for
 * every failed attempt it retries), then the final failure from the flow state (the saga's events
 * are one per transition and may fold it into flow.completed); and the callback's delivery attempts
 * from callback.* events. The state alone keeps only the last error.
 */
export function attemptHistory(events: readonly FlowEventRecord[], finals: readonly FinalFailure[] = []): { tasks: Record<string, AttemptError[]>; callback: CallbackAttempt[] } {
  const tasks: Record<string, AttemptError[]> = {};
  const callback: CallbackAttempt[] = [];
  const sorted = [...events].sort((a, b) => a.atMs - b.atMs);
  for (const e of sorted) {
    const at = new Date(e.atMs).toISOString();
    if (e.type === 'task.retrying') {
      const { code, message } = splitCode(e.message);
      for (const name of e.task.split(',').filter(Boolean)) (tasks[name] ??= []).push({ attempt: e.attempt, at, outcome: 'retrying', code, message });
    } else if (e.type === 'callback.delivered' || e.type === 'callback.retrying' || e.type === 'callback.failed') {
      callback.push({ attempt: e.attempt, at, outcome: e.type === 'callback.delivered' ? 'delivered' : e.type === 'callback.retrying' ? 'retrying' : 'dead_lettered', message: e.message });
    }
  }
  for (const f of finals) {
    const list = (tasks[f.task] ??= []);
    const attempt = Math.max(f.attempts, (list.at(-1)?.attempt ?? 0) + 1);
    list.push({ attempt, at: new Date(f.finishedAt ?? Date.now()).toISOString(), outcome: 'failed', code: f.error.code, message: f.error.message });
  }
  return { tasks, callback };
}
