/**
 * The KV side of limits by key (libs/messaging task-limiter.ts) against a real nats-server: slots of a
 * limit larger than one probe round are all reachable and never one more; a lease nobody renews frees
 * at its TTL, and its late holder can neither renew nor delete the new holder's; key values and subjects
 * are independent; rate-limited starts are reserved 1000/perSecond ms apart.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type NatsConnection } from 'nats';
import { BUCKETS, provisionTopology, MAX_PROBES, TaskLimiter, limitKeyHash } from '@jetflow/messaging';
import { startNatsServer, type NatsServerHandle } from '@jetflow/testing';

const S = 'jetflow.task.custom.limiter';
const who = { flowId: 'f1', task: 't' };

describe('task limiter on KV jetflow_limits', () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;
  before(async () => {
    server = await startNatsServer();
    nc = await connect({ servers: server.url });
    await provisionTopology(nc, { partitions: 1, taskSubjects: [] });
  });
  after(async () => {
    await nc?.close();
    await server?.stop();
  });

  test(`a limit above ${MAX_PROBES} slots: every slot is reached over a few tries, never one more`, async () => {
    const limiter = new TaskLimiter({ nc, workerId: 'w1' });
    const limit = MAX_PROBES + 8;
    const held = new Set<string>();
    for (let i = 0; i < 200 && held.size < limit; i++) {
      const l = await limiter.tryAcquire(S, 'tenant=big', limit, who);
      if (l) held.add(l.key);
    }
    assert.equal(held.size, limit, 'all slots taken');
    for (let i = 0; i < 5; i++) assert.equal(await limiter.tryAcquire(S, 'tenant=big', limit, who), undefined, 'no slot beyond the limit');
    const prefix = `custom.limiter.c.${limitKeyHash('tenant=big')}.`;
    assert.ok([...held].every((k) => k.startsWith(prefix) && Number(k.slice(prefix.length)) < limit));
    // Another key value and another subject have slots of their own.
    assert.ok(await limiter.tryAcquire(S, 'tenant=other', 1, who));
    assert.ok(await limiter.tryAcquire('jetflow.task.custom.elsewhere', 'tenant=big', 1, who));
    await assert.rejects(limiter.tryAcquire('not.a.task', 'x', 1, who), /not a task subject/);
  });

  test('a lease nobody renews frees at its TTL; its late holder cannot renew it nor delete the new one', async () => {
    const a = new TaskLimiter({ nc, workerId: 'a', leaseMs: 600 });
    const b = new TaskLimiter({ nc, workerId: 'b', leaseMs: 600 });
    const la = await a.tryAcquire(S, 'tenant=ttl', 1, who);
    assert.ok(la);
    assert.equal(await b.tryAcquire(S, 'tenant=ttl', 1, who), undefined, 'held');
    assert.equal(await la.renew(), true, 'its holder renews it');
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await b.tryAcquire(S, 'tenant=ttl', 1, who), undefined, 'renewed: still held');
    await new Promise((r) => setTimeout(r, 900));
    const lb = await b.tryAcquire(S, 'tenant=ttl', 1, who);
    assert.ok(lb, 'expired: taken over');
    assert.equal(await la.renew(), false, 'the old holder lost it');
    await la.release();
    assert.equal(await a.tryAcquire(S, 'tenant=ttl', 1, who), undefined, "the old holder's release left the new lease alone");
    await lb.release();
    const again = await a.tryAcquire(S, 'tenant=ttl', 1, who);
    assert.ok(again, 'released: free at once');
    const kv = await nc.jetstream().views.kv(BUCKETS.limits, { bindOnly: true });
    const e = await kv.get(again.key);
    assert.equal((JSON.parse(e!.string()) as { worker: string }).worker, 'a');
  });

  test('rate: each start reserves the next one 1000/perSecond ms later', async () => {
    const limiter = new TaskLimiter({ nc, workerId: 'r' });
    // Each start is known to lie between (call start + wait) and (call end + wait).
    const starts: Array<[number, number]> = [];
    for (let i = 0; i < 8; i++) {
      const before = Date.now();
      const wait = await limiter.reserveStart(S, 'tenant=rate', 4);
      starts.push([before + wait, Date.now() + wait]);
      if (i === 0) assert.equal(wait, 0, 'the first starts now');
    }
    for (let i = 1; i < starts.length; i++) {
      const [lo, hi] = starts[i]!;
      const [plo, phi] = starts[i - 1]!;
      assert.ok(hi - plo >= 250 && lo - phi <= 250, `start ${i} is 250 ms after the one before (${lo - phi}..${hi - plo})`);
    }
    // Another key value is not behind them.
    assert.equal(await limiter.reserveStart(S, 'tenant=rate2', 4), 0);
  });
});
