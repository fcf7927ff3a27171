import type { Task } from '../../../../libs/proto/src/index.js';
import type { TaskHandler } from '../../../../libs/messaging/src/worker.js';
import { TerminalError } from '../../../../libs/errors/src/index.js';
import { storageTaskError, type ObjectStore } from '../../../../libs/storage/src/index.js';
import { runUnderLimits } from '../../../../libs/pool/src/index.js';
import type { InputRecord } from '../generators/types.js';
import type { GeneratorPool } from '../pool.js';

/** What a dataset task returns: small, because it travels to every analyst and into the callback's `datasets`. */
export interface DatasetOutput {
  /** `s3://<bucket>/datasets/<tenant>/<flowId>/<task>.jsonl.gz`: gzip JSON lines, one row per record. */
  ref: string;
  rows: number;
  /** Stored (gzip) bytes. */
  bytes: number;
  /** JSON-lines bytes before gzip (what a reader holds in memory). */
  rawBytes: number;
  /** The generator's summary (vocabulary, column profiles, model...). */
  summary: Record<string, unknown>;
  /** Where it ran: the process, the worker thread, and the ONNX sessions that thread has created so far. */
  _worker: WorkerInfo;
}

export interface WorkerInfo {
  instance: string;
  threadId: number;
  modelLoads: number;
}

export interface DatasetHandlerDeps {
  pool: Pick<GeneratorPool, 'runDetailed'>;
  objects: Pick<ObjectStore, 'putJsonLines' | 'resolveClaimJson'>;
  /** This process (JETFLOW_INSTANCE_ID), named in each output's `_worker`. */
  instance: string;
}

/** Where a flow's dataset lives in the bucket. */
export const datasetKey = (tenant: string, flowId: string, task: string) => `datasets/${tenant}/${flowId}/${task}.jsonl.gz`;

/** The plugin a task runs: the last token of its subject (jetflow.task.dataset.<plugin>), whatever the task is called. */
export const pluginOf = (task: Task) => task.subject.slice(task.subject.lastIndexOf('.') + 1);

/**
 * The records of a task: its input JSON, or the claim-checked input in S3 (task.inputRef). A missing
 * or malformed input is terminal (a retry reads the same bytes); S3 being unreachable is retryable.
 */
export async function readRecords(task: Task, objects: Pick<ObjectStore, 'resolveClaimJson'>): Promise<InputRecord[]> {
  if (!task.inputRef && !task.inputJson.length) throw new TerminalError(`task ${task.task} of flow ${task.flowId} has no input`);
  let input: unknown;
  try {
    input = await objects.resolveClaimJson(task.inputRef ? { ref: task.inputRef } : { inline: task.inputJson });
  } catch (err) {
    throw storageTaskError(err, task.inputRef ? `reading the input ${task.inputRef}` : 'decoding the input');
  }
  const records = (input as { records?: unknown } | null)?.records;
  if (!Array.isArray(records)) throw new TerminalError(`the input of flow ${task.flowId} has no records array`);
  return records as InputRecord[];
}

/**
 * A dataset task: read the records, run the generator in the worker-thread pool (soft limit = the
 * plugin's ctx.signal, hard limit = the thread is terminated), write the rows to S3 as gzip JSON
 * lines, and return the reference with the summary. The key is deterministic, so a retried task
 * overwrites its own file.
 */
export function datasetHandler(d: DatasetHandlerDeps): TaskHandler {
  return async (task, ctx) => {
    const records = await readRecords(task, d.objects);
    // Errors from the pool carry their code (terminal, timeout, cancelled, internal). The limits count
    // from when a thread starts the job, not while it waits for one.
    const { result, meta } = await runUnderLimits(d.pool, { plugin: pluginOf(task), records }, ctx);
    let stored;
    try {
      stored = await d.objects.putJsonLines(datasetKey(task.tenant, task.flowId, task.task), result.rows);
    } catch (err) {
      throw storageTaskError(err, `writing dataset ${task.task}`);
    }
    const output: DatasetOutput = {
      ref: stored.ref,
      rows: stored.rows,
      bytes: stored.bytes,
      rawBytes: stored.rawBytes,
      summary: result.summary,
      _worker: { instance: d.instance, threadId: meta.threadId, modelLoads: meta.modelLoads },
    };
    return { output };
  };
}
