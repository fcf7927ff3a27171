import { TerminalError, pluginOf, runChunkUnderLimits, runUnderLimits, type Task, type TaskMessageContext, type TaskMessageHandler } from '@jetflow/worker';
import { readInputObject, storageTaskError, type ObjectStore } from '@jetflow/storage';
import type { EmbeddingPartial } from '../generators/embeddings.js';
import { embeddingSummary } from '../generators/embeddings.js';
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
  objects: Pick<ObjectStore, 'putJsonLines' | 'resolveClaimJson' | 'putBytes' | 'getBytes'>;
  /** This process (JETFLOW_INSTANCE_ID), named in each output's `_worker`. */
  instance: string;
}

/** Where a flow's dataset lives in the bucket. */
export const datasetKey = (tenant: string, flowId: string, task: string) => `datasets/${tenant}/${flowId}/${task}.jsonl.gz`;

/** The plugin a task runs: the last token of its subject (jetflow.task.dataset.<plugin>), whatever the task is called. */
export { pluginOf };

/**
 * The records of a task: its input JSON, or the claim-checked input in S3 (task.inputRef). A missing
 * or malformed input is terminal (a retry reads the same bytes); S3 being unreachable is retryable.
 */
export async function readRecords(task: Task, objects: Pick<ObjectStore, 'resolveClaimJson' | 'getBytes'>): Promise<InputRecord[]> {
  if (!task.inputRef && !task.inputJson.length) throw new TerminalError(`task ${task.task} of flow ${task.flowId} has no input`);
  let input: unknown;
  try {
    // A stored input (claim check, or a submission's inputRef) may be JSON lines: one record per line.
    input = task.inputRef ? await readInputObject(objects, task.inputRef) : await objects.resolveClaimJson({ inline: task.inputJson });
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
export function datasetHandler(d: DatasetHandlerDeps): TaskMessageHandler {
  return async (task, ctx) => {
    // insights v2 (a DAG on map): a chunk of `prepare`, or a dataset merged from the chunks' parts.
    if (task.chunkCount > 0) return prepareChunk(d, task, ctx);
    const chunks = preparedChunks(task);
    if (chunks) return mergeDataset(d, task, chunks, ctx);
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

// ---- insights v2: the datasets on map

/** The datasets a chunk of `prepare` writes a part of. */
export const PART_DATASETS = ['text', 'features', 'embeddings'] as const;
type PartDataset = (typeof PART_DATASETS)[number];

/** Where a chunk's part of a dataset lives: `datasets/<tenant>/<flowId>/parts/<dataset>.<chunk>.jsonl.gz`. */
export const partKey = (tenant: string, flowId: string, dataset: string, chunk: number) => `datasets/${tenant}/${flowId}/parts/${dataset}.${String(chunk).padStart(5, '0')}.jsonl.gz`;

/** What a chunk of `prepare` returns: small, since every merge task gets the array of them in its deps. */
export interface PreparedChunk {
  chunk: number;
  rows: number;
  parts: Record<PartDataset, { ref: string; bytes: number; rawBytes: number; rows: number }>;
  embeddings: EmbeddingPartial;
  _worker: WorkerInfo;
}

const dec = new TextDecoder();

/** A chunk of `prepare`: the per-record work of the three datasets on its items, each part stored in S3. */
async function prepareChunk(d: DatasetHandlerDeps, task: Task, ctx: TaskMessageContext) {
  const { items: records, result, meta } = await runChunkUnderLimits(d.pool, task, ctx);
  const encoded = result.encoded;
  if (!encoded) throw new TerminalError(`${pluginOf(task)} is not a chunk step (it made no parts); a mapped insights task runs jetflow.task.dataset.prepare`);
  const parts = {} as PreparedChunk['parts'];
  await Promise.all(
    PART_DATASETS.map(async (name) => {
      const e = encoded[name];
      if (!e) throw new TerminalError(`${pluginOf(task)} made no ${name} part`);
      try {
        const stored = await d.objects.putBytes(partKey(task.tenant, task.flowId, name, task.chunkIndex), e.body, { contentType: 'application/x-ndjson', contentEncoding: 'gzip' });
        parts[name] = { ref: stored.ref, bytes: stored.bytes, rawBytes: e.rawBytes, rows: e.rows };
      } catch (err) {
        throw storageTaskError(err, `writing part ${task.chunkIndex} of dataset ${name}`);
      }
    }),
  );
  const output: PreparedChunk = {
    chunk: task.chunkIndex,
    rows: records.length,
    parts,
    embeddings: result.partial!.embeddings as EmbeddingPartial,
    _worker: { instance: d.instance, threadId: meta.threadId, modelLoads: meta.modelLoads },
  };
  return { output };
}

/**
 * The chunks of `prepare` among a task's deps (its output: the array of chunk outputs, in chunk order),
 * or undefined when the task has none (a whole-batch task). What arrives is checked, not trusted.
 */
export function preparedChunks(task: Task): PreparedChunk[] | undefined {
  for (const dep of task.deps) {
    if (!dep.outputJson.length) continue;
    let out: unknown;
    try {
      out = JSON.parse(dec.decode(dep.outputJson));
    } catch {
      continue;
    }
    if (!Array.isArray(out) || !out.some((c) => c && typeof c === 'object' && 'parts' in c)) continue;
    if (dep.status && dep.status !== 'succeeded') throw new TerminalError(`${dep.task} did not succeed (${dep.status}): no parts to merge`);
    out.forEach((c: unknown, i) => {
      const p = (c as { parts?: Record<string, { ref?: unknown }> } | null)?.parts;
      // Only this flow's own parts: an output naming another object (another flow's, another tenant's) is refused.
      for (const name of PART_DATASETS) {
        const ref = p?.[name]?.ref;
        if (typeof ref !== 'string' || !ref.startsWith('s3://') || !ref.endsWith(`/${partKey(task.tenant, task.flowId, name, i)}`))
          throw new TerminalError(`${dep.task}[${i}].parts.${name}.ref: not this flow's part ${partKey(task.tenant, task.flowId, name, i)}`);
      }
    });
    return out as PreparedChunk[];
  }
  return undefined;
}

/**
 * A dataset of insights v2, merged from the parts of every chunk in chunk (= record) order: text and
 * features finish their batch-wide statistics in the pool over the concatenated rows; embeddings'
 * rows need nothing more, so their gzip parts are joined as they are (gzip members concatenate) and
 * the summary comes from the chunks' partial sums.
 */
async function mergeDataset(d: DatasetHandlerDeps, task: Task, chunks: PreparedChunk[], ctx: TaskMessageContext) {
  const name = pluginOf(task) as PartDataset;
  if (!PART_DATASETS.includes(name)) throw new TerminalError(`${task.subject} cannot merge the parts of prepare (datasets: ${PART_DATASETS.join(', ')})`);
  const key = datasetKey(task.tenant, task.flowId, task.task);
  const read = <T>(f: () => Promise<T>, what: string) => f().catch((err: unknown) => Promise.reject(storageTaskError(err, what)));
  if (name === 'embeddings') {
    const bodies = await Promise.all(chunks.map((c, i) => read(() => d.objects.getBytes(c.parts.embeddings.ref), `reading part ${i} of embeddings`)));
    const body = Buffer.concat(bodies.map((b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength)));
    const stored = await read(() => d.objects.putBytes(key, body, { contentType: 'application/x-ndjson', contentEncoding: 'gzip' }), `writing dataset ${task.task}`);
    const w = chunks[0]?._worker;
    const output: DatasetOutput = {
      ref: stored.ref,
      rows: chunks.reduce((n, c) => n + c.parts.embeddings.rows, 0),
      bytes: stored.bytes,
      rawBytes: chunks.reduce((n, c) => n + c.parts.embeddings.rawBytes, 0),
      summary: embeddingSummary(chunks.map((c) => c.embeddings)),
      // The vectors were made by the chunks' threads; this names the first.
      _worker:
        w && typeof w === 'object' ? { instance: String(w.instance), threadId: Number(w.threadId), modelLoads: Number(w.modelLoads) } : { instance: d.instance, threadId: 0, modelLoads: 0 },
    };
    return { output };
  }
  // The parts' bytes go to the thread as they are: it gunzips, parses, finishes and encodes.
  const bodies = await Promise.all(chunks.map((c, i) => read(() => d.objects.getBytes(c.parts[name].ref), `reading part ${i} of ${name}`)));
  const { result, meta } = await runUnderLimits(d.pool, { plugin: `merge-${name}`, records: bodies as unknown as InputRecord[] }, ctx);
  const e = result.encoded?.dataset;
  if (!e) throw new TerminalError(`merge-${name} made no dataset`);
  const stored = await read(() => d.objects.putBytes(key, e.body, { contentType: 'application/x-ndjson', contentEncoding: 'gzip' }), `writing dataset ${task.task}`);
  const output: DatasetOutput = {
    ref: stored.ref,
    rows: e.rows,
    bytes: stored.bytes,
    rawBytes: e.rawBytes,
    summary: result.summary,
    _worker: { instance: d.instance, threadId: meta.threadId, modelLoads: meta.modelLoads },
  };
  return { output };
}
