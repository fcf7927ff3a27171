import assert from 'node:assert/strict';
import { test } from 'node:test';
import { create } from '@bufbuild/protobuf';
import { TaskSchema, TaskInputSchema } from '@jetflow/proto';
import { TerminalError, chunkItemsOf, defineTask, errorCodeOf, pluginOf, runChunkUnderLimits, runTask, taskInputOf, type RunOptions } from './index.js';

const enc = new TextEncoder();
const tokenize = defineTask<{ records: Array<{ text: string }> }, { tokens: number[] }>({
  subject: 'jetflow.task.custom.tokenize',
  async run(input, ctx) {
    ctx.heartbeat();
    return { tokens: (input.items as Array<{ text: string }>).map((r) => r.text.split(' ').length) };
  },
});

test('runTask runs a task in process: items from flowInput.records, heartbeats counted', async () => {
  const r = await runTask(tokenize, { flowInput: { records: [{ text: 'a b c' }, { text: 'd' }] } });
  assert.deepEqual(r.output, { tokens: [3, 1] });
  assert.equal(r.heartbeats, 1);
});

test('runTask: the soft limit aborts ctx.signal; a TerminalError keeps its code', async () => {
  const slow = defineTask({ subject: 'jetflow.task.custom.slow', run: (_i, ctx) => new Promise((_r, rej) => ctx.signal.addEventListener('abort', () => rej(new TerminalError('gave up')))) });
  await assert.rejects(runTask(slow, {}, { softLimitMs: 20 }), (e) => errorCodeOf(e) === 'terminal');
});

test('defineTask refuses bad definitions, naming what is wrong', () => {
  assert.throws(() => defineTask({ subject: 'tasks.tokenize', run: () => 1 }), /subject "tasks.tokenize" must be jetflow.task.<kind>.<name>/);
  assert.throws(() => defineTask({ subject: 'jetflow.task.custom.x' }), /exactly one of run .* and thread/);
  assert.throws(() => defineTask({ subject: 'jetflow.task.custom.x', run: () => 1, thread: '/x.js' }), /exactly one of run/);
});

test('taskInputOf: deps by task name, flow input, malformed input is terminal', () => {
  const task = create(TaskSchema, {
    flowId: 'f1',
    task: 'count',
    inputJson: enc.encode('{"records":[{"text":"x"}],"lang":"en"}'),
    deps: [create(TaskInputSchema, { task: 'tokenize', outputJson: enc.encode('{"tokens":[1]}') }), create(TaskInputSchema, { task: 'big', outputRef: 's3://b/k' })],
  });
  assert.deepEqual(taskInputOf(task), { items: [{ text: 'x' }], deps: { tokenize: { tokens: [1] }, big: { ref: 's3://b/k' } }, flowInput: { records: [{ text: 'x' }], lang: 'en' } });
  assert.throws(
    () => taskInputOf(create(TaskSchema, { flowId: 'f1', task: 't', inputJson: enc.encode('[1]') })),
    (e) => errorCodeOf(e) === 'terminal' && /not a JSON object/.test((e as Error).message),
  );
});

test('taskInputOf: a chunk of a mapped task gets its own items and { index, count }; a mapped need is the array of its chunk outputs', () => {
  const task = create(TaskSchema, {
    flowId: 'f1',
    task: 'tokenize',
    inputJson: enc.encode('{"lang":"en"}'),
    chunkIndex: 3,
    chunkCount: 10,
    itemsJson: enc.encode('[{"text":"a b"},{"text":"c"}]'),
    deps: [create(TaskInputSchema, { task: 'split', status: 'succeeded', outputJson: enc.encode('[{"n":1},{"n":2}]') })],
  });
  assert.deepEqual(taskInputOf(task), { items: [{ text: 'a b' }, { text: 'c' }], deps: { split: [{ n: 1 }, { n: 2 }] }, flowInput: { lang: 'en' }, chunk: { index: 3, count: 10 } });
  // Chunk 0 (its index is proto3's default) is still a chunk.
  assert.deepEqual(taskInputOf(create(TaskSchema, { flowId: 'f1', task: 't', chunkCount: 2, itemsJson: enc.encode('[1]') })).chunk, { index: 0, count: 2 });
  assert.throws(
    () => taskInputOf(create(TaskSchema, { flowId: 'f1', task: 't', chunkCount: 2, itemsJson: enc.encode('{"a":1}') })),
    (e) => errorCodeOf(e) === 'terminal' && /items of chunk 0 are not a JSON array/.test((e as Error).message),
  );
});

test('taskInputOf: a flow input stored in S3 fails a task without deps, and only the reading of flowInput in a reducer', () => {
  const ref = 's3://b/inputs/x';
  assert.throws(
    () => taskInputOf(create(TaskSchema, { flowId: 'f1', task: 'only', inputRef: ref })),
    (e) => errorCodeOf(e) === 'terminal' && /stored in S3/.test((e as Error).message),
  );
  const input = taskInputOf(create(TaskSchema, { flowId: 'f1', task: 'count', inputRef: ref, deps: [create(TaskInputSchema, { task: 'tokenize', outputJson: enc.encode('[1,2]') })] }));
  assert.deepEqual(input.deps, { tokenize: [1, 2] });
  assert.deepEqual(input.items, []);
  assert.throws(
    () => input.flowInput,
    (e) => errorCodeOf(e) === 'terminal' && /flow input is stored in S3/.test((e as Error).message),
  );
});

test("chunkItemsOf: a chunk's items; items that are not JSON, or not an array, are terminal and say which chunk", () => {
  const chunk = (items: string) => create(TaskSchema, { flowId: 'f1', task: 'prepare', subject: 'jetflow.task.dataset.prepare', chunkIndex: 3, chunkCount: 4, itemsJson: enc.encode(items) });
  assert.deepEqual(chunkItemsOf(chunk('[{"id":"r1"},{"id":"r2"}]')), [{ id: 'r1' }, { id: 'r2' }]);
  assert.throws(
    () => chunkItemsOf(chunk('[{')),
    (e) => errorCodeOf(e) === 'terminal' && /chunk 3 of prepare \(flow f1\): its items are not JSON/.test((e as Error).message),
  );
  assert.throws(
    () => chunkItemsOf(chunk('{"id":"r1"}')),
    (e) => errorCodeOf(e) === 'terminal' && /chunk 3 of prepare \(flow f1\): its items are no array/.test((e as Error).message),
  );
  assert.equal(pluginOf({ subject: 'jetflow.task.analyst.score' }), 'score');
});

test("runChunkUnderLimits: the subject's plugin on the chunk's items, under the task's signals, the limits paused until a thread starts it", async () => {
  const calls: Array<{ job: { plugin: string; records: readonly unknown[] }; opts: RunOptions | undefined }> = [];
  const events: string[] = [];
  const pool = {
    async runDetailed(job: { plugin: string; records: readonly unknown[] }, opts?: RunOptions) {
      calls.push({ job, opts });
      events.push('queued');
      opts?.onStart?.();
      return { result: { rows: job.records.length }, meta: { plugin: job.plugin, threadId: 7, durationMs: 1, modelLoads: 1 } };
    },
  };
  const soft = new AbortController();
  const hard = new AbortController();
  const ctx = {
    signal: soft.signal,
    hardSignal: hard.signal,
    pauseLimits: () => (events.push('paused'), () => void events.push('resumed')),
  };
  const task = create(TaskSchema, { flowId: 'f1', task: 'score', subject: 'jetflow.task.analyst.score', chunkIndex: 0, chunkCount: 2, itemsJson: enc.encode('[{"id":"a"},{"id":"b"}]') });
  const r = await runChunkUnderLimits(pool, task, ctx);
  assert.deepEqual(r, { items: [{ id: 'a' }, { id: 'b' }], result: { rows: 2 }, meta: { plugin: 'score', threadId: 7, durationMs: 1, modelLoads: 1 } });
  assert.equal(calls.length, 1);
  assert.deepEqual(calls[0]!.job, { plugin: 'score', records: [{ id: 'a' }, { id: 'b' }] });
  assert.equal(calls[0]!.opts?.softSignal, soft.signal);
  assert.equal(calls[0]!.opts?.signal, hard.signal);
  assert.deepEqual(events.slice(0, 3), ['paused', 'queued', 'resumed']);
  // Malformed items never reach the pool.
  await assert.rejects(runChunkUnderLimits(pool, create(TaskSchema, { ...task, itemsJson: enc.encode('nope') }), ctx), (e) => errorCodeOf(e) === 'terminal');
  assert.equal(calls.length, 1);
});
