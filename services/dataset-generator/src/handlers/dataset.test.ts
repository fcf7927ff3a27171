import assert from 'node:assert/strict';
import { test } from 'node:test';
import { create } from '@bufbuild/protobuf';
import { TaskSchema } from '@jetflow/proto';
import { partKey, preparedChunks } from './dataset.js';

const enc = new TextEncoder();
const chunkOut = (flowId: string, i: number, bucket = 'jetflow-data') => ({
  chunk: i,
  rows: 2,
  parts: Object.fromEntries(['text', 'features', 'embeddings'].map((n) => [n, { ref: `s3://${bucket}/${partKey('default', flowId, n, i)}`, bytes: 1, rawBytes: 1, rows: 2 }])),
});
const task = (deps: Array<{ task: string; out: unknown }>) =>
  create(TaskSchema, {
    flowId: 'f1',
    tenant: 'default',
    task: 'text',
    subject: 'jetflow.task.dataset.text',
    deps: deps.map((d) => ({ task: d.task, status: 'succeeded', outputJson: enc.encode(JSON.stringify(d.out)) })),
  });

test('preparedChunks: the chunks of prepare among the deps, in chunk order; none for a whole-batch task', () => {
  const got = preparedChunks(task([{ task: 'prepare', out: [chunkOut('f1', 0), chunkOut('f1', 1)] }]));
  assert.deepEqual(
    got?.map((c) => c.chunk),
    [0, 1],
  );
  assert.equal(preparedChunks(task([])), undefined);
  assert.equal(preparedChunks(task([{ task: 'text', out: { ref: 's3://jetflow-data/datasets/default/f1/text.jsonl.gz', rows: 2 } }])), undefined);
});

test('preparedChunks: a part that is not this flow own (another flow, another tenant, out of order) is refused', () => {
  assert.throws(() => preparedChunks(task([{ task: 'prepare', out: [chunkOut('f2', 0)] }])), {
    code: 'terminal',
    message: /prepare\[0\]\.parts\.text\.ref: not this flow's part datasets\/default\/f1\/parts\/text\.00000/,
  });
  assert.throws(() => preparedChunks(task([{ task: 'prepare', out: [chunkOut('f1', 1), chunkOut('f1', 0)] }])), /prepare\[0\]/);
  const other = chunkOut('f1', 0);
  other.parts.embeddings!.ref = 's3://jetflow-data/datasets/other/f1/parts/embeddings.00000.jsonl.gz';
  assert.throws(() => preparedChunks(task([{ task: 'prepare', out: [other] }])), /prepare\[0\]\.parts\.embeddings\.ref/);
});
