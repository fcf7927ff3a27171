import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { FairAdmission, pickNext, type FairAdmissionOptions } from './admission.js';

/** A message that records what admission did with it. */
class Msg {
  workings = 0;
  naks = 0;
  constructor(readonly id: string) {}
  working() {
    this.workings++;
  }
  nak() {
    this.naks++;
  }
}

/**
 * An admission whose starts finish only when the test says so: `finish(id)` ends the start of that
 * message; with `run: true` a finished start counts as a running flow of the lane's tenant until `end(id)`.
 */
function setup(o: Partial<FairAdmissionOptions> & { inflight?: Record<string, number>; weight?: Record<string, number> } = {}) {
  let now = 1_000_000;
  const limits = { of: (t: string) => ({ inflight: o.inflight?.[t] ?? Infinity, weight: o.weight?.[t] ?? 1 }) };
  const a = new FairAdmission({ maxRunning: 2, concurrency: 100, limits, now: () => now, ...o });
  const order: string[] = [];
  const pending = new Map<string, () => void>();
  const offered = new Map<string, Promise<void>>();
  const offer = (tenant: string, id: string, deadlineAt = now + 10_000) => {
    a.lane(tenant, tenant);
    const m = new Msg(id);
    offered.set(
      id,
      a.offer(tenant, m, async () => {
        order.push(id);
        await new Promise<void>((r) => pending.set(id, r));
        a.started(id, tenant, deadlineAt);
      }),
    );
    return m;
  };
  const finish = async (id: string) => {
    const r = pending.get(id);
    assert.ok(r, `${id} was started`);
    pending.delete(id);
    r();
    await offered.get(id);
  };
  return { a, order, offer, finish, pending, tick: (ms: number) => (now += ms), at: () => now };
}

describe('fair admission', () => {
  test('a tenant with a backlog does not hold back another: the quiet tenant starts at the next free slot', async () => {
    const s = setup({ maxRunning: 2 });
    for (let i = 0; i < 10; i++) s.offer('a', `a${i}`);
    assert.deepEqual(s.order, ['a0', 'a1'], 'two slots, both taken by a');
    s.offer('b', 'b0');
    await s.finish('a0');
    s.a.ended('a0');
    assert.deepEqual(s.order, ['a0', 'a1', 'b0'], "b's flow got the slot that freed, ahead of a's backlog");
    await s.finish('a1');
    s.a.ended('a1');
    assert.equal(s.order.at(-1), 'a2');
  });

  test('tenants with a backlog share the starts by weight', async () => {
    const s = setup({ maxRunning: 1, weight: { a: 2, b: 1 } });
    for (let i = 0; i < 30; i++) {
      s.offer('a', `a${i}`);
      s.offer('b', `b${i}`);
    }
    for (let i = 0; i < 30; i++) {
      const id = s.order.at(-1)!;
      await s.finish(id);
      s.a.ended(id);
    }
    const first = s.order.slice(0, 30);
    const as = first.filter((x) => x.startsWith('a')).length;
    assert.ok(as >= 19 && as <= 21, `weight 2 against 1: ${as} of 30 starts went to a (${first.join(' ')})`);
  });

  test('a tenant with its in-flight limit running is not started nor fetched further; others go on', async () => {
    const s = setup({ maxRunning: 10, inflight: { a: 2 }, priorityLookahead: 0 });
    for (let i = 0; i < 4; i++) s.offer('a', `a${i}`);
    s.offer('b', 'b0');
    assert.deepEqual(s.order, ['a0', 'a1', 'b0']);
    await s.finish('a0');
    await s.finish('a1');
    assert.equal(s.a.running('a'), 2);
    assert.equal(s.a.fetchable('a'), 0, 'at its limit: its submissions stay in the stream');
    assert.ok(s.a.fetchable('b') > 0);
    s.a.ended('a0');
    assert.deepEqual(s.order, ['a0', 'a1', 'b0', 'a2'], 'one ended, one more starts');
  });

  test('flows running on other replicas count against the limit, until their reports stop', () => {
    const s = setup({ maxRunning: 10, inflight: { a: 3 }, priorityLookahead: 0 });
    s.a.peerLoad('other', new Map([['a', 2]]));
    s.a.lane('a', 'a');
    assert.equal(s.a.fetchable('a'), 1);
    for (let i = 0; i < 3; i++) s.offer('a', `a${i}`);
    assert.deepEqual(s.order, ['a0']);
    s.tick(3_500);
    s.a.sweep();
    assert.deepEqual(s.order, ['a0', 'a1', 'a2'], 'a silent replica stops counting');
  });

  test('the replica limit holds; ended() tells which flows were started elsewhere', async () => {
    const s = setup({ maxRunning: 1 });
    s.offer('a', 'a0');
    s.offer('a', 'a1');
    await s.finish('a0');
    assert.deepEqual(s.order, ['a0']);
    assert.equal(s.a.ended('someone-elses'), false);
    assert.equal(s.a.ended('a0'), true);
    assert.equal(s.a.ended('a0'), false, 'once');
    assert.deepEqual(s.order, ['a0', 'a1']);
  });

  test('a flow that ended unseen stops counting after its deadline and the grace', async () => {
    const s = setup({ maxRunning: 1, graceMs: 5_000 });
    s.offer('a', 'a0', s.at() + 1_000);
    s.offer('a', 'a1');
    await s.finish('a0');
    s.tick(5_900);
    s.a.sweep();
    assert.deepEqual(s.order, ['a0']);
    s.tick(200);
    s.a.sweep();
    assert.deepEqual(s.order, ['a0', 'a1']);
  });

  test('a lane holds a bounded look-ahead: at most `lookahead`, fewer when the replica is full', async () => {
    const s = setup({ maxRunning: 100, lookahead: 16 });
    s.a.lane('a', 'a');
    assert.equal(s.a.fetchable('a'), 16);
    const full = setup({ maxRunning: 1, lookahead: 16, priorityLookahead: 0 });
    full.offer('a', 'a0');
    await full.finish('a0');
    assert.equal(full.a.fetchable('a'), 4, 'replica full: every lane still holds a few, so turns have a choice');
    full.offer('a', 'a1');
    assert.equal(full.a.fetchable('a'), 3);
  });

  test('held messages are kept alive while they wait, and handed back at shutdown', async () => {
    const s = setup({ maxRunning: 1 });
    s.offer('a', 'a0');
    const m1 = s.offer('a', 'a1');
    s.tick(2_100);
    s.a.sweep();
    assert.equal(m1.workings, 1);
    s.a.stop();
    assert.equal(m1.naks, 1);
    assert.equal(s.a.fetchable('a'), 0);
    const late = new Msg('late');
    await s.a.offer('a', late, () => Promise.reject(new Error('must not run')));
    assert.equal(late.naks, 1, 'a message that arrives after stop goes straight back');
  });
});

describe('fair admission with several replicas', () => {
  test("each replica keeps to its part of a tenant's limit (split by instance id), so a burst pulled by all of them at once stays within it", () => {
    const parts = (inflight: number, instances: string[]) =>
      instances.map((self) => {
        const a = new FairAdmission({ maxRunning: 100, concurrency: 100, instance: self, priorityLookahead: 0, limits: { of: () => ({ inflight, weight: 1 }) } });
        for (const other of instances) if (other !== self) a.peerLoad(other, new Map());
        a.lane('t', 't');
        return a.fetchable('t');
      });
    assert.deepEqual(parts(2, ['o1', 'o2']), [1, 1]);
    assert.deepEqual(parts(5, ['o2', 'o1', 'o3']), [2, 2, 1], 'the remainder goes to the first instance ids (o1, o2)');
    assert.deepEqual(parts(1, ['o1', 'o2']), [1, 0]);
    const alone = parts(7, ['o1']);
    assert.deepEqual(alone, [7]);
  });

  test('its part frees when a replica goes silent, and the running counts of the others still bound it', async () => {
    let now = 0;
    const a = new FairAdmission({ maxRunning: 100, concurrency: 100, instance: 'o1', priorityLookahead: 0, now: () => now, limits: { of: () => ({ inflight: 4, weight: 1 }) } });
    a.lane('t', 't');
    a.peerLoad('o2', new Map([['t', 1]]));
    assert.equal(a.fetchable('t'), 2, 'half of 4');
    a.peerLoad('o2', new Map([['t', 3]]));
    assert.equal(a.fetchable('t'), 1, 'the whole limit less what o2 runs');
    now += 3_500;
    a.sweep();
    assert.equal(a.fetchable('t'), 4, 'o2 silent: the whole limit');
  });
});

describe('priorities at admission', () => {
  test('pickNext: the highest priority first, the oldest of equals, and waiting raises one level per agingMs', () => {
    const q = [
      { priority: 1, at: 0 },
      { priority: 9, at: 500 },
      { priority: 9, at: 100 },
      { priority: 5, at: 50 },
    ];
    assert.equal(pickNext(q, 1_000, 10_000), 2, 'a 9, the older one');
    assert.equal(pickNext([{ priority: 1, at: 0 }], 0, 10_000), 0);
    assert.equal(pickNext([], 0, 10_000), -1);
    // At t = 80 s the priority-1 one that waited since 0 counts 1 + 8 = 9: a tie with a fresh 9, and older.
    const aged = [
      { priority: 9, at: 79_000 },
      { priority: 1, at: 0 },
    ];
    assert.equal(pickNext(aged, 79_999, 10_000), 0, 'not yet: 1 + 7 < 9');
    assert.equal(pickNext(aged, 80_000, 10_000), 1, 'aged to 9 and older than the 9');
    assert.equal(
      pickNext(
        [
          { priority: 10, at: 1_000 },
          { priority: 5, at: 0 },
        ],
        50_000,
        10_000,
      ),
      0,
      '10 + 4 against 5 + 5: the 10',
    );
  });

  test('a full replica starts the held high-priority submissions first, and a low one still starts once it has aged', async () => {
    const s = setup({ maxRunning: 1, agingMs: 10_000 });
    s.a.lane('a', 'a');
    assert.equal(s.a.fetchable('a'), 16, 'the priority look-ahead: a lane holds 16 even with one slot');
    const offerP = (id: string, priority: number) => {
      const m = new Msg(id);
      const p = s.a.offer(
        'a',
        m,
        async () => {
          s.order.push(id);
          await new Promise<void>((r) => s.pending.set(id, r));
          s.a.started(id, 'a', s.at() + 600_000);
        },
        { priority, at: s.at() },
      );
      return p;
    };
    const done: Array<Promise<void>> = [];
    done.push(offerP('first', 5));
    for (let i = 0; i < 6; i++) done.push(offerP(`p${i % 2 ? 1 : 9}-${i}`, i % 2 ? 1 : 9));
    const step = async () => {
      const id = s.order.at(-1)!;
      const r = s.pending.get(id)!;
      s.pending.delete(id);
      r();
      await Promise.resolve();
      await new Promise((res) => setImmediate(res));
      s.a.ended(id);
    };
    for (let i = 0; i < 4; i++) await step();
    assert.deepEqual(s.order, ['first', 'p9-0', 'p9-2', 'p9-4', 'p1-1'], 'the 9s before the 1s');
    // More 9s arrive, but the remaining 1s have waited 80 s: they are no longer passed over.
    s.tick(80_000);
    done.push(offerP('late9', 9));
    await step();
    assert.equal(s.order.at(-1), 'p1-3', 'an aged 1 (1 + 8 = 9, and older) before a fresh 9');
    await step();
    await step();
    await step();
    assert.deepEqual(s.order.slice(5), ['p1-3', 'p1-5', 'late9']);
    await Promise.all(done);
  });

  test('a tenant at its in-flight limit: its lane holds the look-ahead but starts none past the limit', async () => {
    const s = setup({ maxRunning: 100, inflight: { a: 2 } });
    for (let i = 0; i < 10; i++) s.offer('a', `a${i}`);
    assert.deepEqual(s.order, ['a0', 'a1']);
    await s.finish('a0');
    await s.finish('a1');
    assert.equal(s.a.fetchable('a'), 16 - 8, 'holds up to 16 though none may start');
    assert.deepEqual(s.order, ['a0', 'a1'], 'none started past the limit');
    s.a.ended('a0');
    assert.deepEqual(s.order, ['a0', 'a1', 'a2']);
  });
});
