import { test } from 'node:test';
import assert from 'node:assert/strict';
import { applyResult, newFlowState, type FlowDef, type FlowState, type ResultIn } from './index.js';

const limits = { softLimitMs: 1_000, hardLimitMs: 2_000, maxAttempts: 2, backoff: { initialMs: 100, maxMs: 400, multiplier: 2 } };
const DEF: FlowDef = {
  name: 'race',
  version: 1,
  deadlineMs: 10_000,
  stages: [
    {
      name: 'prepare',
      onFailure: 'fail_flow',
      tasks: [
        { name: 'a', subject: 'jetflow.task.test.echo', ...limits },
        { name: 'b', subject: 'jetflow.task.test.echo', ...limits },
      ],
    },
    { name: 'report', onFailure: 'continue', tasks: [{ name: 'c', subject: 'jetflow.task.test.echo', ...limits }] },
  ],
};
const start = (now = 1_000): FlowState => newFlowState({ flowId: 'frace1', tenant: 'default', flow: DEF.name, inputJson: '{}', submittedAt: now }, DEF, now);
const apply = (s: FlowState, r: ResultIn, now: number) => applyResult(s, DEF, { token: s.tasks[r.task]?.token, ...r }, now);
const late = { task: 'a', succeeded: false, errorCode: 'timeout', errorMessage: 'flow deadline passed before the task started', attempts: 1 } satisfies ResultIn;

test('a fail_flow task failure that arrives after the flow deadline ends the flow partial (the deadline decides), keeping what succeeded', () => {
  const s = start();
  apply(s, { task: 'b', succeeded: true, output: { ok: 1 }, attempts: 1 }, 2_000);
  const t = apply(s, late, s.deadlineAt + 5);
  assert.equal(s.status, 'partial');
  assert.equal(s.endReason, 'deadline');
  assert.equal(s.tasks.b!.status, 'succeeded', 'what the flow has is kept');
  assert.equal(s.tasks.a!.status, 'failed');
  assert.equal(s.tasks.c!.status, 'skipped');
  assert.ok(t.changed);
  assert.ok(t.events.some((e) => e.type === 'flow.completed' && e.message === 'partial: deadline'));
});

test('the same failure before the deadline still fails the flow under fail_flow', () => {
  const s = start();
  apply(s, late, s.deadlineAt - 1);
  assert.equal(s.status, 'failed');
  assert.match(s.endReason ?? '', /task a failed and stage prepare fails the flow/);
});
