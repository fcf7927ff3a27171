import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  applyCancel,
  applyResult,
  applyStart,
  loadFlowRegistry,
  MAX_START_DELAY_MS,
  msgIds,
  newFlowState,
  publicView,
  startProblem,
  startTimeOf,
  tasksToDispatch,
  validateSubmission,
  INSIGHTS,
} from './index.js';

const registry = loadFlowRegistry({});
const NOW = Date.parse('2026-03-01T12:00:00Z');
const base = { flow: 'insights', input: { records: [{ id: 'a', text: 'hello' }] } };

function refused(body: unknown): Array<{ path: string; message: string }> {
  try {
    validateSubmission(body, { registry, now: NOW });
  } catch (err) {
    const e = err as { code?: string; details?: Array<{ path: string; message: string }> };
    assert.equal(e.code, 'invalid_argument');
    return e.details ?? [];
  }
  assert.fail('accepted');
}

test('startAt and delayMs: accepted within the bounds, each bad value refused naming its field', () => {
  assert.equal(validateSubmission({ ...base, startAt: '2026-03-01T12:00:05Z' }, { registry, now: NOW }).startAt, '2026-03-01T12:00:05Z');
  assert.equal(validateSubmission({ ...base, startAt: '2026-03-01T13:00:05.250+01:00' }, { registry, now: NOW }).startAt, '2026-03-01T13:00:05.250+01:00');
  assert.equal(validateSubmission({ ...base, delayMs: 1_500 }, { registry, now: NOW }).delayMs, 1_500);
  // A time already past starts at once.
  validateSubmission({ ...base, startAt: '2020-01-01T00:00:00Z' }, { registry, now: NOW });

  assert.deepEqual(
    refused({ ...base, startAt: '2026-03-01 12:00' }).map((d) => d.path),
    ['startAt'],
  );
  assert.deepEqual(
    refused({ ...base, startAt: '2026-03-01T12:00:00' }).map((d) => d.path),
    ['startAt'],
    'an offset is required',
  );
  assert.deepEqual(
    refused({ ...base, startAt: '2026-02-30T12:00:00Z' }).map((d) => d.path),
    ['startAt'],
  );
  const far = refused({ ...base, startAt: new Date(NOW + MAX_START_DELAY_MS + 1_000).toISOString() });
  assert.deepEqual(
    far.map((d) => d.path),
    ['startAt'],
  );
  assert.match(far[0]!.message, /30 days/);
  assert.deepEqual(
    refused({ ...base, startAt: 12 }).map((d) => d.path),
    ['startAt'],
  );
  assert.deepEqual(
    refused({ ...base, delayMs: -1 }).map((d) => d.path),
    ['delayMs'],
  );
  assert.deepEqual(
    refused({ ...base, delayMs: 1.5 }).map((d) => d.path),
    ['delayMs'],
  );
  assert.deepEqual(
    refused({ ...base, delayMs: MAX_START_DELAY_MS + 1 }).map((d) => d.path),
    ['delayMs'],
  );
  const both = refused({ ...base, delayMs: 10, startAt: '2026-03-01T12:00:05Z' });
  assert.deepEqual(
    both.map((d) => d.path),
    ['startAt'],
  );
  assert.match(both[0]!.message, /not both/);
  assert.equal(startProblem({}, NOW), undefined);
});

test('startTimeOf: startAt as given, delayMs from the clock, nothing for at once', () => {
  assert.equal(startTimeOf({ startAt: '2026-03-01T13:00:00+01:00' }, NOW), NOW);
  assert.equal(startTimeOf({ delayMs: 1_500 }, NOW), NOW + 1_500);
  assert.equal(startTimeOf({}, NOW), undefined);
});

const req = (startAt?: number) => ({
  flowId: 'fabc',
  tenant: 't',
  flow: 'insights',
  inputJson: '{}',
  deadlineMs: 10_000,
  submittedAt: NOW,
  ...(startAt !== undefined ? { startAt } : {}),
});

test('a flow whose start lies ahead is created scheduled: nothing to dispatch, the deadline counts from its start', () => {
  const s = newFlowState(req(NOW + 60_000), INSIGHTS, NOW);
  assert.equal(s.status, 'scheduled');
  assert.equal(s.startAt, NOW + 60_000);
  assert.equal(s.deadlineAt, NOW + 60_000 + 10_000);
  assert.deepEqual(tasksToDispatch(s, INSIGHTS), []);
  const first = INSIGHTS.stages[0]!.tasks.map((t) => s.tasks[t.name]!);
  assert.ok(first.every((t) => t.status === 'pending' && t.token));
  const view = publicView(s, INSIGHTS);
  assert.equal(view.status, 'scheduled');
  assert.equal((view as { startAt?: string }).startAt, new Date(NOW + 60_000).toISOString());
  assert.equal(view.startedAt, null);
  assert.ok(view.stages.every((st) => st.status === 'pending'));
  // A result for a first-stage task (even with its token) is not applied before the start.
  const name = INSIGHTS.stages[0]!.tasks[0]!.name;
  const r = applyResult(s, INSIGHTS, { task: name, token: s.tasks[name]!.token!, succeeded: true, attempts: 1 }, NOW + 1);
  assert.equal(r.changed, false);
  assert.equal(r.rejected?.code, 'unexpected_result');
});

test('a start at or before now runs at once, with the deadline from submission as before', () => {
  for (const at of [NOW, NOW - 5_000]) {
    const s = newFlowState(req(at), INSIGHTS, NOW);
    assert.equal(s.status, 'running');
    assert.equal(s.startAt, undefined);
    assert.equal(s.deadlineAt, NOW + 10_000);
    assert.equal(tasksToDispatch(s, INSIGHTS).length, INSIGHTS.stages[0]!.tasks.length);
  }
});

test('applyStart dispatches the first stage with the tokens drawn when scheduled, once', () => {
  const s = newFlowState(req(NOW + 1_000), INSIGHTS, NOW);
  const tokens = INSIGHTS.stages[0]!.tasks.map((t) => s.tasks[t.name]!.token);
  const t = applyStart(s, INSIGHTS, NOW + 1_010);
  assert.equal(t.changed, true);
  assert.equal(t.events[0]?.type, 'flow.started');
  assert.equal(s.status, 'running');
  assert.equal(s.startedAt, NOW + 1_010);
  assert.deepEqual(
    tasksToDispatch(s, INSIGHTS).map((td) => s.tasks[td.name]!.token),
    tokens,
  );
  assert.ok(INSIGHTS.stages[0]!.tasks.every((td) => s.tasks[td.name]!.dispatchedAt === NOW + 1_010));
  // A replayed start timer changes nothing.
  assert.equal(applyStart(s, INSIGHTS, NOW + 2_000).changed, false);
  assert.equal(s.startedAt, NOW + 1_010);
});

test('a scheduled flow cancelled before its start ends cancelled, and its start timer then changes nothing', () => {
  const s = newFlowState(req(NOW + 1_000), INSIGHTS, NOW);
  const c = applyCancel(s, 'not needed', NOW + 10);
  assert.equal(c.changed, true);
  assert.equal(s.status, 'cancelled');
  assert.ok(Object.values(s.tasks).every((t) => t.status === 'cancelled'));
  assert.equal(applyStart(s, INSIGHTS, NOW + 1_000).changed, false);
  assert.equal(s.status, 'cancelled');
  assert.deepEqual(tasksToDispatch(s, INSIGHTS), []);
});

test('the start timer has a message id of its own, with the nonce', () => {
  assert.equal(msgIds.start('fabc', 'n1'), 'fabc:start:n1');
  assert.notEqual(msgIds.start('fabc', 'n1'), msgIds.deadline('fabc', 'n1'));
});
