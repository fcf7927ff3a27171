import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { connect, type NatsConnection } from 'nats';
import { Registry } from 'prom-client';
import { startNatsServer, type NatsServerHandle } from '@jetflow/testing';
import { createKvCache } from './kv-cache.js';

/** A loader that counts its calls and can be slowed down. */
function loader<T>(value: T | (() => T), delayMs = 0) {
  const fn = async () => {
    fn.calls++;
    if (delayMs) await sleep(delayMs);
    return typeof value === 'function' ? (value as () => T)() : value;
  };
  fn.calls = 0;
  return fn;
}

async function counterValue(registry: Registry, name: string, bucket: string): Promise<number> {
  const metric = registry.getSingleMetric(name);
  assert.ok(metric, `${name} is registered`);
  const { values } = await metric.get();
  return values.find((v) => v.labels.bucket === bucket)?.value ?? 0;
}

describe('KV cache against a real nats-server', () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;

  before(async () => {
    server = await startNatsServer();
    nc = await connect({ servers: [server.url] });
  });
  after(async () => {
    await nc.close();
    await server.stop();
  });

  test('miss, then hit; counted in stats and in prom-client', async () => {
    const registry = new Registry();
    const cache = createKvCache({ nc, bucket: 'c_hits', ttlMs: 60_000, registry });
    const load = loader({ name: 'acme', plan: 'pro', limits: [1, 2] });

    assert.deepEqual(await cache.getOrLoad('tenant:acme', load), { name: 'acme', plan: 'pro', limits: [1, 2] });
    assert.deepEqual(await cache.getOrLoad('tenant:acme', load), { name: 'acme', plan: 'pro', limits: [1, 2] });
    assert.deepEqual(await cache.getOrLoad('tenant:acme', load), { name: 'acme', plan: 'pro', limits: [1, 2] });
    assert.equal(load.calls, 1);
    assert.deepEqual(cache.stats(), { hits: 2, misses: 1, errors: 0, coalesced: 0 });
    assert.equal(await counterValue(registry, 'jetflow_cache_hits_total', 'c_hits'), 2);
    assert.equal(await counterValue(registry, 'jetflow_cache_misses_total', 'c_hits'), 1);
    assert.equal(await counterValue(registry, 'jetflow_cache_errors_total', 'c_hits'), 0);

    // Another replica (own instance, same bucket) is served from the KV without loading.
    const other = createKvCache({ nc, bucket: 'c_hits', ttlMs: 60_000, registry });
    const otherLoad = loader('never');
    assert.deepEqual(await other.getOrLoad('tenant:acme', otherLoad), { name: 'acme', plan: 'pro', limits: [1, 2] });
    assert.equal(otherLoad.calls, 0);
    assert.equal(await counterValue(registry, 'jetflow_cache_hits_total', 'c_hits'), 3, 'counters are shared per registry');

    // Falsy values are cached too; undefined is returned but not cached.
    const zero = loader(0);
    await cache.getOrLoad('zero', zero);
    assert.equal(await cache.getOrLoad('zero', zero), 0);
    assert.equal(zero.calls, 1);
    const undef = loader(undefined);
    await cache.getOrLoad('undef', undef);
    await cache.getOrLoad('undef', undef);
    assert.equal(undef.calls, 2);
  });

  test('creating caches twice does not double-register metrics (custom and global registry)', () => {
    const registry = new Registry();
    createKvCache({ nc, ttlMs: 1000, registry });
    createKvCache({ nc, ttlMs: 1000, registry });
    createKvCache({ nc, bucket: 'another', ttlMs: 1000, registry });
    createKvCache({ nc, ttlMs: 1000 });
    createKvCache({ nc, ttlMs: 1000 });
    assert.equal(registry.getMetricsAsArray().length, 3);
  });

  test('concurrent misses for one key call the loader once', async () => {
    const cache = createKvCache({ nc, bucket: 'c_flight', ttlMs: 60_000, registry: new Registry() });
    let n = 0;
    const load = loader(() => ++n, 100);
    const results = await Promise.all(Array.from({ length: 20 }, () => cache.getOrLoad('hot', load)));
    assert.deepEqual(results, Array(20).fill(1));
    assert.equal(load.calls, 1);
    assert.deepEqual(cache.stats(), { hits: 0, misses: 1, errors: 0, coalesced: 19 });

    // Different keys do not wait for each other.
    const a = loader('a', 50);
    const b = loader('b', 50);
    assert.deepEqual(await Promise.all([cache.getOrLoad('ka', a), cache.getOrLoad('kb', b)]), ['a', 'b']);
    assert.equal(a.calls + b.calls, 2);
  });

  test("a loader's failure reaches every waiting caller and is not cached", async () => {
    const cache = createKvCache({ nc, bucket: 'c_fail', ttlMs: 60_000, registry: new Registry() });
    let calls = 0;
    const failing = async () => {
      calls++;
      await sleep(20);
      throw new Error('source down');
    };
    const settled = await Promise.allSettled([cache.getOrLoad('k', failing), cache.getOrLoad('k', failing)]);
    assert.deepEqual(
      settled.map((s) => s.status),
      ['rejected', 'rejected'],
    );
    assert.equal(calls, 1);
    assert.equal(await cache.getOrLoad('k', async () => 'recovered'), 'recovered');
    assert.equal(cache.stats().errors, 0, 'a loader failure is not a cache error');
  });

  test('entries expire after the TTL (bucket created by the cache)', async () => {
    const cache = createKvCache({ nc, bucket: 'c_ttl', ttlMs: 1000, registry: new Registry() });
    let n = 0;
    const load = loader(() => ++n);
    assert.equal(await cache.getOrLoad('k', load), 1);
    assert.equal(await cache.getOrLoad('k', load), 1);
    await sleep(1200);
    assert.equal(await cache.getOrLoad('k', load), 2);
    assert.equal(load.calls, 2);

    // The bucket's max_age is the TTL, so the server itself drops the entry.
    const kv = await nc.jetstream().views.kv('c_ttl', { bindOnly: true });
    const status = await kv.status();
    assert.equal(status.ttl, 1000);
    const until = Date.now() + 10_000;
    while ((await kv.get('k')) !== null) {
      assert.ok(Date.now() < until, 'entry not removed by the bucket TTL');
      await sleep(100);
    }
  });

  test('the TTL holds even when the bucket already exists with a longer max_age', async () => {
    // As provisioned by the topology with its own (longer) TTL.
    await nc.jetstream().views.kv('c_long', { ttl: 300_000, history: 1 });
    const cache = createKvCache({ nc, bucket: 'c_long', ttlMs: 800, registry: new Registry() });
    let n = 0;
    const load = loader(() => ++n);
    assert.equal(await cache.getOrLoad('k', load), 1);
    assert.equal(await cache.getOrLoad('k', load), 1);
    await sleep(1000);
    assert.equal(await cache.getOrLoad('k', load), 2);
    assert.equal(await cache.getOrLoad('k', load), 2, 'the reloaded value replaced the expired one');
    assert.deepEqual(cache.stats(), { hits: 2, misses: 2, errors: 0, coalesced: 0 });
  });

  test('invalidate removes a key, and a load racing it is not cached', async () => {
    const cache = createKvCache({ nc, bucket: 'c_inval', ttlMs: 60_000, registry: new Registry() });
    assert.equal(await cache.getOrLoad('k', async () => 'v1'), 'v1');
    assert.equal(await cache.invalidate('k'), true);
    assert.equal(await cache.getOrLoad('k', async () => 'v2'), 'v2');
    assert.equal(await cache.getOrLoad('k', async () => 'v3'), 'v2');

    // A slow load started before the invalidation returns its (old) value but does not cache it.
    await cache.invalidate('k');
    const slow = cache.getOrLoad('k', loader('old', 100));
    await sleep(20);
    assert.equal(await cache.invalidate('k'), true);
    assert.equal(await slow, 'old');
    assert.equal(await cache.getOrLoad('k', async () => 'new'), 'new');
    assert.equal(await cache.getOrLoad('k', async () => 'newer'), 'new');
  });

  test('a slower replica does not overwrite what another wrote meanwhile', async () => {
    const registry = new Registry();
    const a = createKvCache({ nc, bucket: 'c_cas', ttlMs: 60_000, registry });
    const b = createKvCache({ nc, bucket: 'c_cas', ttlMs: 60_000, registry });
    const slowA = a.getOrLoad('k', loader('from-a', 150));
    await sleep(50);
    assert.equal(await b.getOrLoad('k', async () => 'from-b'), 'from-b');
    assert.equal(await slowA, 'from-a');
    const c = createKvCache({ nc, bucket: 'c_cas', ttlMs: 60_000, registry });
    assert.equal(await c.getOrLoad('k', async () => 'from-c'), 'from-b');
    assert.equal(a.stats().errors, 0, 'losing the compare-and-set is not an error');
  });

  test('odd and long keys work and do not collide', async () => {
    const cache = createKvCache({ nc, bucket: 'c_keys', ttlMs: 60_000, registry: new Registry() });
    const keys = ['tenant:acme/flow *>', 'tenant:acme/flow  >', '.x.', 'ünïcødé', 'k'.repeat(1000), `${'k'.repeat(999)}j`, 'a=20b', 'a b'];
    for (const [i, key] of keys.entries()) assert.equal(await cache.getOrLoad(key, async () => i), i);
    for (const [i, key] of keys.entries()) assert.equal(await cache.getOrLoad(key, async () => -1), i);
    assert.equal(cache.stats().hits, keys.length);
  });
});

describe('KV cache when the KV is down', () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;

  before(async () => {
    server = await startNatsServer();
    nc = await connect({ servers: [server.url], maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  });
  after(async () => {
    if (!nc.isClosed()) await nc.close();
    await server.stop();
  });

  test('an outage degrades to the loader, counted as errors, and the cache recovers', async () => {
    const registry = new Registry();
    const cache = createKvCache({ nc, bucket: 'c_outage', ttlMs: 60_000, registry, timeoutMs: 200, retryAfterMs: 300 });
    assert.equal(await cache.getOrLoad('k', async () => 'cached'), 'cached');
    assert.equal(await cache.getOrLoad('k', async () => 'x'), 'cached');

    await server.kill();
    const load = loader('from-source');
    assert.equal(await cache.getOrLoad('k', load), 'from-source');
    assert.equal(await cache.getOrLoad('k', load), 'from-source', 'the breaker skips the KV without waiting');
    assert.equal(load.calls, 2);
    assert.equal(await cache.invalidate('k'), false);
    const down = cache.stats();
    assert.ok(down.errors >= 3, `errors counted: ${JSON.stringify(down)}`);
    assert.equal(await counterValue(registry, 'jetflow_cache_errors_total', 'c_outage'), down.errors);

    await server.restart();
    // Once reconnected and past the breaker, values are cached again.
    const until = Date.now() + 20_000;
    let n = 0;
    for (;;) {
      await cache.getOrLoad('after', async () => `v${++n}`);
      const before = cache.stats().hits;
      const value = await cache.getOrLoad('after', async () => `v${++n}`);
      if (cache.stats().hits > before) {
        assert.equal(value, `v${n}`, 'served the value the previous call cached');
        break;
      }
      assert.ok(Date.now() < until, `cache did not recover: ${JSON.stringify(cache.stats())}`);
      await sleep(200);
    }
  });

  test('a closed connection also degrades to the loader', async () => {
    const conn = await connect({ servers: [server.url] });
    const cache = createKvCache({ nc: conn, bucket: 'c_closed', ttlMs: 60_000, registry: new Registry() });
    await conn.close();
    assert.equal(await cache.getOrLoad('k', async () => 42), 42);
    assert.equal(cache.stats().errors, 1);
  });
});
