/**
 * Priority bands at the workers (libs/messaging bands.ts) against a real nats-server: a backlog on one task
 * subject with mixed priorities and a worker with one slot starts the high-priority tasks first (weighted
 * turns 6:3:1), and every low one still runs. WeightedTurns, the pure part, is checked first.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect, headers as natsHeaders, type NatsConnection } from 'nats';
import {
  CONSUMERS,
  PRIORITY_BANDS,
  STREAMS,
  WeightedTurns,
  bandOf,
  bandSubject,
  baseTaskSubject,
  encodeTask,
  encodeTaskShared,
  provisionTopology,
  startTaskWorker,
} from '@jetflow/messaging';
import { createLogger } from '@jetflow/logging';
import { startNatsServer, type NatsServerHandle } from '@jetflow/testing';

const SUBJECT = 'jetflow.task.test.bands';
const log = createLogger('priority-bands-test', 'error');

describe('weighted turns (pure)', () => {
  const run = (among: number[], turns: number) => {
    const t = new WeightedTurns([6, 3, 1]);
    const got: number[] = [];
    for (let i = 0; i < turns; i++) {
      const b = t.order(among)[0]!;
      t.took(b, among);
      got.push(b);
    }
    return got;
  };
  it('every band busy: 6 high, 3 normal, 1 low in every 10 turns, interleaved', () => {
    const got = run([0, 1, 2], 20);
    for (const start of [0, 10]) {
      const round = got.slice(start, start + 10);
      assert.deepEqual(
        [0, 1, 2].map((b) => round.filter((x) => x === b).length),
        [6, 3, 1],
        round.join(','),
      );
    }
    assert.equal(got[0], 0, 'high first');
  });
  it('only high and low busy: low still gets one turn in 7', () => {
    const got = run([0, 2], 14);
    assert.equal(got.filter((x) => x === 2).length, 2, got.join(','));
  });
  it('bands and subjects: 8..10 high, 1..3 low, the rest (and 0) normal; consumers named apart from any subject', () => {
    assert.deepEqual([0, 1, 3, 4, 5, 7, 8, 10, 11].map(bandOf), ['normal', 'low', 'low', 'normal', 'normal', 'normal', 'high', 'high', 'normal']);
    assert.equal(bandSubject(SUBJECT, 'normal'), SUBJECT);
    assert.equal(bandSubject(SUBJECT, 'high'), `${SUBJECT}.high`);
    assert.equal(baseTaskSubject(`${SUBJECT}.low`), SUBJECT);
    assert.equal(baseTaskSubject(SUBJECT), SUBJECT);
    assert.deepEqual(CONSUMERS.taskAll(SUBJECT), ['taskhigh-test-bands', 'task-test-bands', 'tasklow-test-bands']);
  });
});

describe('priority bands in the worker runtime (real nats-server)', () => {
  let nats: NatsServerHandle;
  let nc: NatsConnection;
  before(async () => {
    nats = await startNatsServer();
    nc = await connect({ servers: nats.url });
    await provisionTopology(nc, { partitions: 1, taskSubjects: [SUBJECT] });
  });
  after(async () => {
    await nc?.close();
    await nats?.stop();
  });

  const publish = async (flowId: string, priority: number) => {
    const body = encodeTask(encodeTaskShared({ flowId, tenant: 'default', flow: 'test', flowVersion: 1, stage: 0, deps: [], deadlineAtMs: Date.now() + 120_000 }), {
      task: 'work',
      subject: SUBJECT,
      softLimitMs: 5_000,
      hardLimitMs: 10_000,
      maxAttempts: 1,
      backoffInitialMs: 100,
      backoffMaxMs: 100,
      dispatchedAtMs: Date.now(),
      priority,
    });
    const h = natsHeaders();
    h.set('Nats-Msg-Id', `${flowId}:work`);
    // As the orchestrator does: the band's subject.
    await nc.jetstream().publish(bandSubject(SUBJECT, bandOf(priority)), body, { headers: h });
  };

  it('a backlog of low, normal and high tasks on one subject, one slot: high ones start first, normal next, and every low one still runs', async () => {
    // Published low first: arrival order alone would run every low one first.
    const prio = new Map<string, number>();
    for (const [p, n] of [
      [1, 12],
      [5, 12],
      [9, 12],
    ] as const)
      for (let i = 0; i < n; i++) {
        const id = `fband${p}x${i}`;
        prio.set(id, p);
        await publish(id, p);
      }
    const jsm = await nc.jetstreamManager();
    for (const b of PRIORITY_BANDS) assert.equal((await jsm.consumers.info(STREAMS.tasks, CONSUMERS.taskBand(SUBJECT, b))).num_pending, 12, `band ${b} holds its 12`);
    const started: string[] = [];
    let all!: () => void;
    const finished = new Promise<void>((r) => (all = r));
    const w = await startTaskWorker({
      nc,
      subjects: [SUBJECT],
      concurrency: 1,
      partitions: 1,
      log,
      workerId: 'bands-1',
      handler: async (task) => {
        assert.equal(task.priority, prio.get(task.flowId), 'the Task carries its priority');
        started.push(task.flowId);
        if (started.length === prio.size) all();
        await new Promise((r) => setTimeout(r, 5));
        return { output: { ok: true } };
      },
    });
    try {
      await Promise.race([finished, new Promise((_r, rej) => setTimeout(() => rej(new Error(`only ${started.length} of ${prio.size} ran`)), 60_000).unref())]);
    } finally {
      await w.stop(2_000);
    }
    const order = started.map((id) => prio.get(id)!);
    const meanOf = (p: number) => order.reduce((s, x, i) => s + (x === p ? i : 0), 0) / order.filter((x) => x === p).length;
    console.log(`# start order: ${order.join(',')}; mean position 9: ${meanOf(9).toFixed(1)}, 5: ${meanOf(5).toFixed(1)}, 1: ${meanOf(1).toFixed(1)}`);
    assert.equal(new Set(started).size, 36, 'each task ran once');
    assert.ok(meanOf(9) < meanOf(5) && meanOf(5) < meanOf(1), 'high before normal before low, on average');
    // Weighted turns: of the first 10 starts, most are high; a low one starts before the high band is empty.
    assert.ok(order.slice(0, 10).filter((x) => x === 9).length >= 5, `first 10: ${order.slice(0, 10).join(',')}`);
    assert.ok(order.indexOf(1) < order.lastIndexOf(9), 'low is not starved until high is empty');
    for (const b of PRIORITY_BANDS) assert.equal((await jsm.consumers.info(STREAMS.tasks, CONSUMERS.taskBand(SUBJECT, b))).num_pending, 0, `band ${b} drained`);
  });
});
