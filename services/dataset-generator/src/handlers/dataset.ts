import type { Task } from '../../../../libs/proto/src/index.js';
import type { WorkerConfig } from '../../../../libs/config/src/worker.js';
import type { TaskHandler, TaskOutput } from '../../../../libs/messaging/src/worker.js';
import type { Logger } from '../../../../libs/logging/src/index.js';
import { TerminalError } from '../../../../libs/errors/src/index.js';

export interface InputRecord {
  id: string;
  text: string;
  fields?: Record<string, number | string | boolean | null>;
}

const dec = new TextDecoder();
const NOOP: TaskOutput = { outputJson: new TextEncoder().encode('{"noop":true}') };

export function decodeRecords(task: Task): InputRecord[] {
  if (!task.inputJson.length) throw new TerminalError(`task ${task.task} of flow ${task.flowId} has no input`);
  const input = JSON.parse(dec.decode(task.inputJson)) as { records?: InputRecord[] };
  if (!Array.isArray(input.records)) throw new TerminalError('input.records is missing');
  return input.records;
}

/** Simple dataset generation per task name. */
export async function createDatasetHandler(cfg: WorkerConfig, _log: Logger): Promise<{ handler: TaskHandler }> {
  if (cfg.mode === 'noop') return { handler: async () => NOOP };
  const handler: TaskHandler = async (task) => {
    const records = decodeRecords(task);
    switch (task.task) {
      case 'text': {
        const rows = records.map((r) => ({ id: r.id, tokens: r.text.toLowerCase().match(/[\p{L}\p{N}']+/gu) ?? [] }));
        return { output: { rows: rows.length, summary: { tokens: rows.reduce((a, r) => a + r.tokens.length, 0) }, data: rows } };
      }
      case 'features': {
        const rows = records.map((r) => ({ id: r.id, length: r.text.length, ...Object.fromEntries(Object.entries(r.fields ?? {}).filter(([, v]) => typeof v === 'number')) }));
        return { output: { rows: rows.length, summary: { columns: Object.keys(rows[0] ?? {}).filter((k) => k !== 'id') }, data: rows } };
      }
      case 'embeddings': {
        const rows = records.map((r) => ({ id: r.id, vector: hashVector(r.text, 16) }));
        return { output: { rows: rows.length, summary: { dim: 16 }, data: rows } };
      }
      default:
        throw new TerminalError(`dataset-generator has no plugin "${task.task}"`);
    }
  };
  return { handler };
}

function hashVector(text: string, dim: number): number[] {
  const v = new Array<number>(dim).fill(0);
  for (const tok of text.toLowerCase().split(/\W+/).filter(Boolean)) {
    let h = 0;
    for (let i = 0; i < tok.length; i++) h = (h * 31 + tok.charCodeAt(i)) | 0;
    v[Math.abs(h) % dim]! += 1;
  }
  const n = Math.hypot(...v) || 1;
  return v.map((x) => x / n);
}
