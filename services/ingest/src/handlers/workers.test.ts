import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { WorkerInstance } from '@jetflow/messaging';
import { WorkerHandlers, markWaitingForWorkers } from './workers.js';
import type { ConsumerCounters } from './consumers.js';

const task = (name: string, subject: string | null, status: string) => ({ name, subject, status, attempts: 0 });

test('dispatched tasks whose subject no live worker serves are marked and listed; others say false', () => {
  const view = {
    status: 'running',
    stages: [
      { tasks: [task('a', 'jetflow.task.x.a', 'succeeded'), task('b', 'jetflow.task.x.b', 'dispatched')] },
      { tasks: [task('c', 'jetflow.task.x.c', 'dispatched'), task('d', null, 'dispatched')] },
    ],
  };
  const out = markWaitingForWorkers(view, new Set(['jetflow.task.x.c']));
  assert.deepEqual(out.waitingFor, [{ task: 'b', subject: 'jetflow.task.x.b' }]);
  assert.deepEqual(
    out.stages.flatMap((s) => s.tasks.map((t) => [t.name, (t as { waitingForWorker?: boolean }).waitingForWorker])),
    [
      ['a', false],
      ['b', true],
      ['c', false],
      ['d', false],
    ],
    'a task whose subject is unknown (definition gone) is not claimed to wait',
  );
  // A top-level task list (DAG views) is read the same way.
  assert.deepEqual(markWaitingForWorkers({ tasks: [task('e', 'jetflow.task.x.e', 'dispatched')] }, new Set()).waitingFor, [{ task: 'e', subject: 'jetflow.task.x.e' }]);
  // Before the registry has been read: no claim either way.
  const unknown = markWaitingForWorkers({ stages: [{ tasks: [task('b', 'jetflow.task.x.b', 'dispatched')] }] }, undefined);
  assert.equal('waitingFor' in unknown, false);
  assert.equal('waitingForWorker' in unknown.stages[0]!.tasks[0]!, false);
});

test('GET /v1/workers: instances as read, per subject live counts and the task consumer pending; a failed consumer read leaves pending null', async () => {
  const base = { service: 'sdk', version: '1', host: 'h', pid: 1, busy: 1, startedAt: '2026-01-05T10:00:00.000Z', heartbeatAt: '2026-01-05T10:00:00.000Z', intervalMs: 1000 };
  const instances: WorkerInstance[] = [
    { ...base, id: 'w1', name: 'w', subjects: ['jetflow.task.x.a'], concurrency: 4, status: 'live' },
    { ...base, id: 'w2', name: 'w', subjects: ['jetflow.task.x.a'], concurrency: 2, status: 'stale' },
  ];
  const consumer = (name: string, filterSubject: string, numPending: number, stream = 'JETFLOW_TASKS'): ConsumerCounters => ({
    stream,
    name,
    filterSubject,
    numPending,
    numAckPending: 0,
    numRedelivered: 0,
    numWaiting: 0,
    delivered: 0,
    maxAckPending: null,
    lastActive: null,
  });
  let fail = false;
  const h = new WorkerHandlers({
    workers: { instances: () => instances, liveSubjects: () => new Set(['jetflow.task.x.a']) },
    consumers: {
      snapshot: async () => {
        if (fail) throw new Error('no JetStream');
        return { streams: [], consumers: [consumer('task-x-a', 'jetflow.task.x.a', 5), consumer('orchestrator-p0', 'jetflow.result.0.>', 9, 'JETFLOW_RESULTS')] };
      },
    },
    subjects: () => ['jetflow.task.x.a', 'jetflow.task.x.b'],
    now: () => Date.parse('2026-01-05T10:00:01.000Z'),
  });
  const r = await h.list();
  assert.equal(r.sampledAt, '2026-01-05T10:00:01.000Z');
  assert.deepEqual(
    r.workers.map((w) => [w.id, w.status]),
    [
      ['w1', 'live'],
      ['w2', 'stale'],
    ],
  );
  assert.deepEqual(r.subjects, [
    { subject: 'jetflow.task.x.a', instances: 1, slots: 4, busy: 1, pending: 5 },
    { subject: 'jetflow.task.x.b', instances: 0, slots: 0, busy: 0, pending: null },
  ]);
  fail = true;
  assert.equal((await h.list()).subjects[0]!.pending, null);
});
