import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  applyCancel,
  applyResult,
  applySignal,
  applySignalTimeout,
  applyStart,
  callbackBody,
  DefinitionError,
  MAX_SIGNALS_PER_FLOW,
  newFlowState,
  pendingDispatches,
  publicView,
  signalTimeoutDue,
  validateDefinitions,
  type FlowDef,
  type FlowState,
} from './index.js';

const NOW = Date.parse('2026-03-01T12:00:00Z');

/** prepare → approval (waits for "approved") → publish; `onFailure` is the approval's. */
function approvalDef(onFailure: 'fail_flow' | 'continue' = 'fail_flow'): FlowDef {
  return validateDefinitions([
    {
      name: 'approvals',
      version: 1,
      deadlineMs: 600_000,
      tasks: [
        { name: 'prepare', subject: 'jetflow.task.dataset.text' },
        { name: 'approval', waitFor: { signal: 'approved', timeoutMs: 60_000 }, needs: ['prepare'], onFailure },
        { name: 'publish', subject: 'jetflow.task.analyst.keywords', needs: ['approval'] },
      ],
    },
  ])[0]!;
}

function started(def: FlowDef, startAt?: number): FlowState {
  return newFlowState({ flowId: 'fsig1', tenant: 'acme', flow: def.name, inputJson: '{}', submittedAt: NOW, ...(startAt ? { startAt } : {}) }, def, NOW);
}

function prepareDone(s: FlowState, def: FlowDef, at = NOW + 100) {
  return applyResult(s, def, { task: 'prepare', token: s.tasks.prepare!.token!, succeeded: true, output: { rows: 1 }, attempts: 1 }, at);
}

function definitionError(defs: unknown[]): DefinitionError {
  try {
    validateDefinitions(defs);
  } catch (err) {
    assert.ok(err instanceof DefinitionError, String(err));
    return err;
  }
  assert.fail('accepted');
}

test('waitFor: a subject, a map or a timeout past the deadline is refused naming the task and field', () => {
  const base = { name: 'w', version: 1, deadlineMs: 10_000 };
  const withSubject = definitionError([{ ...base, tasks: [{ name: 'a', subject: 'jetflow.task.dataset.text', waitFor: { signal: 'go', timeoutMs: 100 } }] }]);
  assert.equal(withSubject.where, 'w.tasks[0] (a) waitFor');
  assert.match(withSubject.message, /no subject/);
  const mapped = definitionError([{ ...base, tasks: [{ name: 'a', waitFor: { signal: 'go', timeoutMs: 100 }, map: { over: 'records', chunkSize: 1 } }] }]);
  assert.equal(mapped.where, 'w.tasks[0] (a) waitFor');
  assert.match(mapped.message, /cannot be mapped/);
  assert.equal(definitionError([{ ...base, tasks: [{ name: 'a', waitFor: { signal: 'go', timeoutMs: 20_000 } }] }]).where, 'w.tasks[0] (a) waitFor.timeoutMs');
  const badName = definitionError([{ ...base, tasks: [{ name: 'a', waitFor: { signal: 'no.dots', timeoutMs: 100 } }] }]);
  assert.match(badName.where, /tasks\.0\.waitFor\.signal/);
});

test('a signal after the task is ready settles it with the payload; what needs it starts; the view shows the wait before', () => {
  const def = approvalDef();
  const s = started(def);
  const t1 = prepareDone(s, def);
  assert.deepEqual(t1.dispatched, [{ task: 'approval' }], 'the waiting task goes out as its timeout timer');
  assert.equal(s.tasks.approval!.status, 'dispatched');
  const view = publicView(s, def);
  const approval = view.stages.flatMap((st) => st.tasks).find((t) => t.name === 'approval')!;
  assert.equal((approval as { waitingForSignal?: string }).waitingForSignal, 'approved');
  assert.equal(approval.subject, null);

  const t2 = applySignal(s, def, { id: 'sig-1', name: 'approved', payload: { by: 'ada' } }, NOW + 500);
  assert.equal(t2.changed, true);
  assert.equal(s.tasks.approval!.status, 'succeeded');
  assert.deepEqual(s.tasks.approval!.output, { by: 'ada' });
  assert.deepEqual(t2.dispatched, [{ task: 'publish' }]);
  assert.deepEqual(s.signals, [{ id: 'sig-1', name: 'approved', at: NOW + 500, payload: { by: 'ada' }, task: 'approval' }]);
  assert.equal(signalTimeoutDue(s, def, 'approval'), undefined, 'settled: its timer does nothing');
  assert.equal(applySignalTimeout(s, def, 'approval', NOW + 120_000).changed, false);
});

test('a signal before the task is reached is kept and taken when it becomes ready (also while scheduled)', () => {
  const def = approvalDef();
  const s = started(def);
  const early = applySignal(s, def, { id: 'sig-early', name: 'approved', payload: 'yes' }, NOW + 10);
  assert.equal(early.changed, true);
  assert.equal(early.dispatched, undefined);
  assert.equal(s.signals![0]!.task, undefined);
  const t = prepareDone(s, def);
  assert.equal(s.tasks.approval!.status, 'succeeded');
  assert.equal(s.tasks.approval!.output, 'yes');
  assert.deepEqual(t.dispatched, [{ task: 'publish' }], 'no timer for a task that took its signal at once');

  const root = validateDefinitions([{ name: 'gate', version: 1, deadlineMs: 600_000, tasks: [{ name: 'wait', waitFor: { signal: 'go', timeoutMs: 1_000 } }] }])[0]!;
  const sched = started(root, NOW + 60_000);
  assert.equal(sched.status, 'scheduled');
  applySignal(sched, root, { id: 's1', name: 'go', payload: 1 }, NOW + 5);
  assert.equal(sched.tasks.wait!.status, 'pending');
  applyStart(sched, root, NOW + 60_000);
  assert.equal(sched.status, 'succeeded');
  assert.deepEqual(callbackBody(sched).results, { wait: 1 });
});

test('the same signal id twice counts once; a second signal of the name is kept for no one; unknown names are stored', () => {
  const def = approvalDef();
  const s = started(def);
  prepareDone(s, def);
  applySignal(s, def, { id: 'a', name: 'approved', payload: 1 }, NOW + 200);
  const dup = applySignal(s, def, { id: 'a', name: 'approved', payload: 2 }, NOW + 300);
  assert.equal(dup.changed, false);
  assert.equal(s.signals!.length, 1);
  assert.equal(s.tasks.approval!.output, 1);
  applySignal(s, def, { id: 'b', name: 'approved', payload: 3 }, NOW + 400);
  applySignal(s, def, { id: 'c', name: 'nobody-waits', payload: 4 }, NOW + 500);
  assert.deepEqual(
    s.signals!.map((r) => [r.id, r.task ?? null]),
    [
      ['a', 'approval'],
      ['b', null],
      ['c', null],
    ],
  );
  assert.deepEqual((publicView(s, def) as { signals?: unknown }).signals, [
    { id: 'a', name: 'approved', receivedAt: new Date(NOW + 200).toISOString(), task: 'approval' },
    { id: 'b', name: 'approved', receivedAt: new Date(NOW + 400).toISOString(), task: null },
    { id: 'c', name: 'nobody-waits', receivedAt: new Date(NOW + 500).toISOString(), task: null },
  ]);
  while (s.signals!.length < MAX_SIGNALS_PER_FLOW) applySignal(s, def, { id: `x${s.signals!.length}`, name: 'other' }, NOW + 600);
  assert.equal(applySignal(s, def, { id: 'one-more', name: 'other' }, NOW + 700).rejected?.code, 'too_many_signals');
  applyCancel(s, '', NOW + 800);
  assert.equal(applySignal(s, def, { id: 'late', name: 'approved' }, NOW + 900).changed, false, 'a finished flow is unchanged');
});

test('timeout: not before its time (an early timer changes nothing), then the task fails `timeout` and its onFailure applies', () => {
  const def = approvalDef();
  const s = started(def);
  prepareDone(s, def, NOW + 100);
  assert.equal(signalTimeoutDue(s, def, 'approval'), NOW + 100 + 60_000, 'counted from when it became ready');
  assert.equal(applySignalTimeout(s, def, 'approval', NOW + 30_000).changed, false);
  assert.equal(applySignalTimeout(s, def, 'prepare', NOW + 90_000).changed, false, 'a timer for a task that waits for nothing');
  const t = applySignalTimeout(s, def, 'approval', NOW + 60_100);
  assert.equal(t.changed, true);
  assert.equal(s.status, 'failed');
  assert.deepEqual(s.tasks.approval!.error, { code: 'timeout', message: 'no signal approved arrived within 60000 ms' });
  assert.equal(s.tasks.publish!.status, 'skipped');
  assert.equal(applySignal(s, def, { id: 'late', name: 'approved' }, NOW + 60_200).changed, false);

  const cont = approvalDef('continue');
  const c = started(cont);
  prepareDone(c, cont, NOW + 100);
  const tc = applySignalTimeout(c, cont, 'approval', NOW + 60_100);
  assert.equal(c.status, 'running');
  assert.equal(c.tasks.approval!.status, 'failed');
  assert.deepEqual(tc.dispatched, [{ task: 'publish' }], 'under continue what needs it still runs');
});

test('replay: the stored state re-derives the same publishes (the waiting task once, as its timer)', () => {
  const def = approvalDef();
  const s = started(def);
  const t = prepareDone(s, def);
  const stored = JSON.parse(JSON.stringify(s)) as FlowState;
  assert.deepEqual(pendingDispatches(stored, def), t.dispatched);
  // A signal applied after a crash that lost the first application counts once and gives the same state.
  const a = JSON.parse(JSON.stringify(stored)) as FlowState;
  const b = JSON.parse(JSON.stringify(stored)) as FlowState;
  const ta = applySignal(a, def, { id: 'k', name: 'approved', payload: { ok: true } }, NOW + 1_000);
  const tb = applySignal(b, def, { id: 'k', name: 'approved', payload: { ok: true } }, NOW + 1_000);
  applySignal(b, def, { id: 'k', name: 'approved', payload: { ok: true } }, NOW + 2_000);
  assert.deepEqual(
    (({ tasks, signals }) => ({ tasks: { ...tasks, publish: { ...tasks.publish, token: '' } }, signals }))(a),
    (({ tasks, signals }) => ({ tasks: { ...tasks, publish: { ...tasks.publish, token: '' } }, signals }))(b),
  );
  assert.deepEqual(ta.dispatched, tb.dispatched);
});
