import { TerminalError, pluginOf, runChunkUnderLimits, runUnderLimits, type Task, type TaskMessageContext, type TaskMessageHandler } from '@jetflow/worker';
import type { KvCache } from '@jetflow/cache';
import { readInputObject, storageTaskError, type ObjectStore } from '@jetflow/storage';
import type { Datasets, InputRecord, Report } from '../analyzers/types.js';
import { decodeJsonLines, type EncodedDatasets } from '../datasets.js';
import type { AnalystPool } from '../pool.js';

export interface AnalystHandlerDeps {
  pool: Pick<AnalystPool, 'runDetailed'>;
  objects: Pick<ObjectStore, 'getJsonLines' | 'getJson' | 'getBytes' | 'putJson' | 'resolveClaimJson' | 'putBytes'>;
  /** Cache-aside for datasets and claim-checked inputs, keyed by their S3 reference; none = always read S3. */
  cache?: Pick<KvCache, 'getOrLoad' | 'stats'>;
  /** Only datasets up to this many JSON bytes go through the cache (a KV value is one NATS message). */
  cacheMaxBytes: number;
  /** Reports larger than this go to S3; the task then returns `{ ref, bytes, headline }`. */
  resultInlineBytes: number;
  /** This process (JETFLOW_INSTANCE_ID), named in each output's `_worker`. */
  instance: string;
}

/** The part of a dataset task's output an analyst reads (see the dataset-generator's DatasetOutput). */
interface DatasetRef {
  ref?: string | undefined;
  rows?: number;
  rawBytes?: number;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Where a flow's large report lives in the bucket. */
export const reportKey = (tenant: string, flowId: string, task: string) => `results/${tenant}/${flowId}/${task}.json`;

/** The plugin a task runs: the last token of its subject (jetflow.task.analyst.<plugin>). */
export { pluginOf };

/**
 * An analyst task: load the datasets its dependencies wrote (through the cache), take the records
 * from the flow's input (or, without one, from the text dataset), run the analyzer in the
 * worker-thread pool, and return the report: inline when small, else stored in S3 and referenced.
 */
export function analystHandler(d: AnalystHandlerDeps): TaskMessageHandler {
  return async (task, ctx) => {
    if (task.chunkCount > 0) return scoreChunk(task, d, ctx);
    const [{ datasets, encoded }, input] = await Promise.all([loadDatasets(task, d), readInput(task, d)]);
    // Without input records the text dataset gives them: parsed here then (rare: every insights flow has records).
    if (!input && encoded.text) {
      datasets.text = decodeJsonLines(encoded.text, 'dataset text') as Datasets['text'];
      delete encoded.text;
    }
    const records = input ?? recordsFromText(datasets);
    if (!records) throw new TerminalError(`flow ${task.flowId} has neither input records nor a text dataset for ${task.task}`);
    // The limits count from when a thread starts the job, not while it waits for one.
    const { result, meta } = await runUnderLimits(d.pool, { plugin: pluginOf(task), records, datasets, encoded }, ctx);
    const stats = d.cache?.stats();
    const _worker = {
      instance: d.instance,
      threadId: meta.threadId,
      modelLoads: meta.modelLoads,
      ...(stats ? { cache: { hits: stats.hits, misses: stats.misses, coalesced: stats.coalesced } } : {}),
    };
    const inline = enc.encode(JSON.stringify({ ...result, _worker }));
    if (inline.byteLength <= d.resultInlineBytes) return { outputJson: inline };
    let stored;
    try {
      stored = await d.objects.putJson(reportKey(task.tenant, task.flowId, task.task), result);
    } catch (err) {
      throw storageTaskError(err, `writing the ${task.task} report`);
    }
    return { output: { ref: stored.ref, bytes: stored.bytes, ...(typeof result.headline === 'string' ? { headline: result.headline } : {}), _worker } };
  };
}

/**
 * The datasets of the task's succeeded dependencies, by dependency name (text, features, embeddings):
 * small ones parsed through the cache, the others as their stored bytes, which the pool thread parses
 * (see ../datasets.ts).
 */
async function loadDatasets(task: Task, d: AnalystHandlerDeps): Promise<{ datasets: Datasets; encoded: EncodedDatasets }> {
  const results: Record<string, unknown[]> = {};
  const encoded: EncodedDatasets = {};
  await Promise.all(
    task.deps.map(async (dep) => {
      if (dep.status && dep.status !== 'succeeded') return; // failed under a continue policy: analyse without it
      let meta: DatasetRef = {};
      if (dep.outputJson.length) {
        let out: unknown;
        try {
          out = JSON.parse(dec.decode(dep.outputJson));
        } catch (err) {
          throw new TerminalError(`the output of ${dep.task} is not JSON`, { cause: err });
        }
        // A mapped dependency (insights v2's score): the array of its chunks' outputs, each a part in S3.
        if (Array.isArray(out)) {
          // Only this flow's own parts: an output naming another object (another flow's, another tenant's) is refused.
          (out as unknown[]).forEach((c, i) => {
            const ref = (c as DatasetRef | null)?.ref;
            if (typeof ref !== 'string' || !ref.startsWith('s3://') || !ref.endsWith(`/${partKey(task.tenant, task.flowId, dep.task, i)}`))
              throw new TerminalError(`${dep.task}[${i}].ref: not this flow's part ${partKey(task.tenant, task.flowId, dep.task, i)}`);
          });
          encoded[dep.task] = await Promise.all(
            (out as DatasetRef[]).map((c, i) => d.objects.getBytes(c.ref!).catch((err: unknown) => Promise.reject(storageTaskError(err, `reading part ${i} of ${dep.task} (${c.ref})`)))),
          );
          return;
        }
        meta = out as DatasetRef;
      }
      const ref = typeof meta.ref === 'string' ? meta.ref : dep.outputRef;
      if (!ref) return; // a dependency that wrote no dataset
      const failed = (err: unknown) => Promise.reject(storageTaskError(err, `reading dataset ${dep.task} (${ref})`));
      const small = typeof meta.rawBytes === 'number' && meta.rawBytes <= d.cacheMaxBytes;
      if (d.cache && small) results[dep.task] = await d.cache.getOrLoad(ref, () => d.objects.getJsonLines(ref).catch(failed));
      else encoded[dep.task] = [await d.objects.getBytes(ref).catch(failed)];
    }),
  );
  return { datasets: results, encoded };
}

/** The flow's input records (inline, or the claim-checked input through the cache), or undefined without input. */
async function readInput(task: Task, d: AnalystHandlerDeps): Promise<InputRecord[] | undefined> {
  if (!task.inputRef && !task.inputJson.length) return undefined;
  let input: unknown;
  const ref = task.inputRef;
  if (ref) {
    // JSON, or JSON lines (one record per line) for a submission's inputRef.
    const load = () => readInputObject(d.objects, ref).catch((err: unknown) => Promise.reject(storageTaskError(err, `reading the input ${ref}`)));
    input = d.cache && d.cacheMaxBytes > 0 ? await d.cache.getOrLoad(ref, load) : await load();
  } else {
    try {
      input = JSON.parse(dec.decode(task.inputJson));
    } catch (err) {
      throw new TerminalError(`the input of flow ${task.flowId} is not JSON`, { cause: err });
    }
  }
  const records = (input as { records?: unknown } | null)?.records;
  if (records === undefined) return undefined;
  if (!Array.isArray(records)) throw new TerminalError(`input.records of flow ${task.flowId} is not an array`);
  return records as InputRecord[];
}

/** Records rebuilt from the text dataset (normalised text) when the flow has no input records. */
function recordsFromText(datasets: Datasets): InputRecord[] | undefined {
  return datasets.text?.map((r) => ({ id: r.id, text: (r as { normalized?: string }).normalized ?? r.tokens.join(' ') }));
}

export type { Report };

/** Where a chunk's part of a mapped analyst step lives: `results/<tenant>/<flowId>/parts/<task>.<chunk>.jsonl.gz`. */
export const partKey = (tenant: string, flowId: string, task: string, chunk: number) => `results/${tenant}/${flowId}/parts/${task}.${String(chunk).padStart(5, '0')}.jsonl.gz`;

/**
 * A chunk of a mapped analyst step (insights v2's `score`): the analyzer on the chunk's items, its
 * rows stored as a part in S3; the output is the reference, which the step that needs it reads.
 */
async function scoreChunk(task: Task, d: AnalystHandlerDeps, ctx: TaskMessageContext) {
  const { result, meta } = await runChunkUnderLimits(d.pool, task, ctx);
  // Encoded in the thread (gzip JSON lines): stored as it is.
  const part = (result as { part?: { body?: unknown; rows: number; rawBytes: number } }).part;
  if (!(part?.body instanceof Uint8Array)) throw new TerminalError(`${pluginOf(task)} is not a per-chunk analyzer (it returned no part)`);
  const body = part.body;
  let stored;
  try {
    stored = await d.objects.putBytes(partKey(task.tenant, task.flowId, task.task, task.chunkIndex), body, { contentType: 'application/x-ndjson', contentEncoding: 'gzip' });
  } catch (err) {
    throw storageTaskError(err, `writing part ${task.chunkIndex} of ${task.task}`);
  }
  return {
    output: {
      chunk: task.chunkIndex,
      ref: stored.ref,
      rows: part.rows,
      bytes: stored.bytes,
      rawBytes: part.rawBytes,
      _worker: { instance: d.instance, threadId: meta.threadId, modelLoads: meta.modelLoads },
    },
  };
}
