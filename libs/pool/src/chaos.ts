/**
 * A fault-injection plugin that runs in a pool thread, for the fault suite (a service registers it
 * only with JETFLOW_TEST_PLUGINS=1, see createWorkerPool's testPlugins): it keeps its thread busy for
 * `fields.busyMs` (the first record's), checking its signal every few ms like a real plugin, or, with
 * `fields.ignoreSignal` = 1, never looking at it, so only thread termination ends it.
 */
import { threadId } from 'node:worker_threads';
import { checkpoint, type InputRecord } from '@jetflow/plugins';

export const CHAOS_BUSY = 'chaos-busy';

export interface BusyReport {
  [k: string]: unknown;
  busyMs: number;
  threadId: number;
}

export async function busyWork(records: readonly InputRecord[], signal: AbortSignal): Promise<BusyReport> {
  const fields = records[0]?.fields ?? {};
  const ms = typeof fields.busyMs === 'number' && Number.isFinite(fields.busyMs) ? Math.min(Math.max(0, fields.busyMs), 600_000) : 1_000;
  const ignoreSignal = fields.ignoreSignal === 1;
  const t0 = performance.now();
  while (performance.now() - t0 < ms) {
    const slice = performance.now() + 5;
    while (performance.now() < slice) {
      // CPU work
    }
    if (!ignoreSignal) await checkpoint(signal);
  }
  return { busyMs: ms, threadId };
}
