import { test } from 'node:test';
import assert from 'node:assert/strict';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { FlowEventSchema, TaskSchema } from '../../proto/src/index.js';
import { encodeFlowEvent, encodeTask, encodeTaskShared } from './fast-codec.js';

const enc = new TextEncoder();

test('encodeFlowEvent is byte-identical to the generated encoder', () => {
  for (const e of [
    { flowId: 'f1', tenant: 'default', flow: 'insights', type: 'task.succeeded', status: 'running', task: 'text,features', stage: 'datasets', atMs: 1_795_708_647_123, message: 'ok', attempt: 2 },
    { flowId: 'f2', tenant: 't', type: 'flow.started', atMs: 1 },
  ]) {
    const mine = encodeFlowEvent(e);
    const gen = toBinary(FlowEventSchema, create(FlowEventSchema, { ...e, atMs: BigInt(e.atMs) }));
    assert.deepEqual(mine, gen);
    assert.equal(fromBinary(FlowEventSchema, mine).task, e.task ?? '');
  }
});

test('a task from a shared prefix plus its own fields decodes to the same message as the generated encoder makes', () => {
  const sharedFields = {
    flowId: 'fabc',
    tenant: 'default',
    flow: 'insights',
    flowVersion: 1,
    stage: 1,
    inputJson: enc.encode('{"records":[{"id":"r1","text":"é ok"}]}'),
    inputRef: '',
    deps: [
      { task: 'text', status: 'succeeded', outputJson: enc.encode('{"rows":1}'), outputRef: '' },
      { task: 'features', status: 'failed', outputJson: new Uint8Array(), outputRef: 's3://b/k' },
    ],
    deadlineAtMs: 1_795_708_657_000,
  };
  const own = { task: 'sentiment', subject: 'jetflow.task.analyst.sentiment', softLimitMs: 5000, hardLimitMs: 8000, maxAttempts: 3, backoffInitialMs: 200, backoffMaxMs: 2000, dispatchedAtMs: 1_795_708_647_500 };
  const bytes = encodeTask(encodeTaskShared(sharedFields), own);
  const decoded = fromBinary(TaskSchema, bytes);
  const expected = create(TaskSchema, { ...sharedFields, ...own, deadlineAtMs: BigInt(sharedFields.deadlineAtMs), dispatchedAtMs: BigInt(own.dispatchedAtMs) });
  assert.deepEqual(decoded, fromBinary(TaskSchema, toBinary(TaskSchema, expected)));
});
