import type { WorkerConfig } from '../../../../libs/config/src/worker.js';
import type { TaskHandler, TaskOutput } from '../../../../libs/messaging/src/worker.js';
import type { Logger } from '../../../../libs/logging/src/index.js';
import { TerminalError } from '../../../../libs/errors/src/index.js';
import { chaosHandler } from './chaos.js';

const dec = new TextDecoder();
const NOOP: TaskOutput = { outputJson: new TextEncoder().encode('{"noop":true}') };

/** Simple analysis over the dataset outputs. */
export async function createAnalystHandler(cfg: WorkerConfig, _log: Logger): Promise<{ handler: TaskHandler }> {
  if (cfg.mode === 'noop') return { handler: async (task, ctx) => (cfg.testPlugins && task.subject.startsWith('jetflow.task.test.') ? chaosHandler(task, ctx) : NOOP) };
  const handler: TaskHandler = async (task, ctx) => {
    if (cfg.testPlugins && task.subject.startsWith('jetflow.task.test.')) return chaosHandler(task, ctx);
    const deps = Object.fromEntries(task.deps.map((d) => [d.task, d.outputJson.length ? (JSON.parse(dec.decode(d.outputJson)) as { data?: Array<Record<string, unknown>> }) : undefined]));
    const text = deps.text?.data as Array<{ id: string; tokens: string[] }> | undefined;
    if (!text) throw new TerminalError('analyst needs the text dataset');
    switch (task.task) {
      case 'sentiment':
        return { output: { records: text.length, datasetsSeen: Object.keys(deps).sort() } };
      case 'anomaly':
        return { output: { records: (deps.features?.data ?? []).length, datasetsSeen: Object.keys(deps).sort() } };
      case 'keywords': {
        const freq = new Map<string, number>();
        for (const r of text) for (const t of r.tokens) freq.set(t, (freq.get(t) ?? 0) + 1);
        return { output: { keywords: [...freq.entries()].sort((a, b) => b[1] - a[1]).slice(0, 10).map(([k]) => k), datasetsSeen: Object.keys(deps).sort() } };
      }
      default:
        throw new TerminalError(`analyst has no plugin "${task.task}"`);
    }
  };
  return { handler };
}
