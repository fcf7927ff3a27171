import { test } from 'node:test';
import assert from 'node:assert/strict';
import { applyPauseSync, chunkToken, applyResult, applySignal, newFlowState, pendingDispatches, publicView, validateDefinitions, type FlowDef, type FlowState } from './index.js';

const NOW = Date.parse('2026-03-01T12:00:00Z');

const def: FlowDef = validateDefinitions([
  {
    name: 'chain',
    version: 1,
    deadlineMs: 600_000,
    tasks: [
      { name: 'a', subject: 'jetflow.task.dataset.text' },
      { name: 'm', subject: 'jetflow.task.dataset.text', needs: ['a'], map: { over: 'records', chunkSize: 1, maxParallel: 2 } },
      { name: 'b', subject: 'jetflow.task.analyst.keywords', needs: ['m'] },
    ],
  },
])[0]!;

const start = (): FlowState => newFlowState({ flowId: 'fpause1', tenant: 'acme', flow: 'chain', inputJson: '{"records":[1,2,3,4]}', submittedAt: NOW }, def, NOW);
const ok = (s: FlowState, task: string, chunk?: number) =>
  applyResult(
    s,
    def,
    { task, token: s.tasks[task]!.token!, succeeded: true, output: { task, chunk }, attempts: 1, ...(chunk !== undefined ? { chunk, token: chunkTok(s, task, chunk) } : {}) },
    NOW + 10,
  );
/** A chunk's result token, derived from its task's as the engine does. */
const chunkTok = (s: FlowState, task: string, i: number) => chunkToken(s.tasks[task]!.token!, i);

test('paused: a result that frees the next task dispatches nothing; resume dispatches what is ready', () => {
  const s = start();
  const p = applyPauseSync(s, def, true, NOW + 1);
  assert.equal(p.changed, true);
  assert.equal(s.paused, true);
  assert.equal((publicView(s, def) as { paused?: boolean }).paused, true);
  assert.equal(applyPauseSync(s, def, true, NOW + 2).changed, false, 'the same pause twice is one');
  const t = ok(s, 'a');
  assert.equal(s.tasks.a!.status, 'succeeded');
  assert.equal(s.tasks.m!.status, 'pending', 'nothing dispatched while paused');
  assert.equal(t.dispatched, undefined);
  assert.deepEqual(pendingDispatches(s, def), [], 'a replay of the paused state publishes nothing new');
  const r = applyPauseSync(s, def, false, NOW + 3);
  assert.equal(s.paused, undefined);
  assert.deepEqual(r.dispatched, [
    { task: 'm', chunk: 0 },
    { task: 'm', chunk: 1 },
  ]);
  assert.equal(r.started, true, 'the state is written before they go out');
  assert.equal(applyPauseSync(s, def, false, NOW + 4).changed, false, 'resuming a running flow changes nothing');
});

test('paused mid-map: the chunks out finish, no further chunk goes out until resumed', () => {
  const s = start();
  ok(s, 'a');
  applyPauseSync(s, def, true, NOW + 20);
  const t = ok(s, 'm', 0);
  assert.equal(t.dispatched, undefined, 'chunk 2 waits');
  assert.equal(s.tasks.m!.cs, 'sd--');
  const r = applyPauseSync(s, def, false, NOW + 30);
  assert.deepEqual(r.dispatched, [{ task: 'm', chunk: 2 }]);
  assert.equal(s.tasks.m!.cs, 'sdd-');
});

test('a paused flow still ends when everything has settled, and a finished flow is not paused or resumed', () => {
  const one = validateDefinitions([{ name: 'one', version: 1, deadlineMs: 60_000, tasks: [{ name: 'w', waitFor: { signal: 'go', timeoutMs: 10_000 } }] }])[0]!;
  const s = newFlowState({ flowId: 'fpause2', tenant: 'acme', flow: 'one', inputJson: '{}', submittedAt: NOW }, one, NOW);
  applyPauseSync(s, one, true, NOW + 1);
  applySignal(s, one, { id: 'x', name: 'go', payload: 1 }, NOW + 2);
  assert.equal(s.status, 'succeeded', 'the waiting task took its signal; nothing was left to dispatch');
  assert.equal(applyPauseSync(s, one, false, NOW + 3).changed, false);
});
