import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, type KV, type NatsConnection } from 'nats';
import { DefinitionStore, FlowRegistry, INSIGHTS, LiveDefinitions, definitionHash, definitionKey, followDefinitions, indexKey, type FlowDef } from '@jetflow/flows';
import { BUCKETS, provisionTopology } from '@jetflow/messaging';
import { startNatsServer, type NatsServerHandle } from '@jetflow/testing';

/**
 * The definitions store on a real nats-server: concurrent registrations of one version (one wins), the
 * seeding rules (a file's older version never replaces a registered newer one; a changed stored version
 * stops the start, naming it), and what the watch adopts: registered names, never a name only a file
 * once seeded, never an index or entry that does not check out (the bus is not trusted).
 */
const v = (name: string, version: number, deadlineMs = 10_000): FlowDef => ({ ...INSIGHTS, name, version, deadlineMs });
const enc = (x: unknown) => new TextEncoder().encode(JSON.stringify(x));

describe('definitions store', () => {
  let nats: NatsServerHandle;
  let nc: NatsConnection;
  let kv: KV;
  before(async () => {
    nats = await startNatsServer();
    nc = await connect({ servers: nats.url });
    await provisionTopology(nc, { partitions: 1, taskSubjects: [] });
    kv = await nc.jetstream().views.kv(BUCKETS.definitions, { bindOnly: true });
  });
  after(async () => {
    await nc?.close();
    await nats?.stop();
  });

  test('ten concurrent registrations of one version with different content: exactly one is created, the others are conflicts', async () => {
    const store = new DefinitionStore(kv);
    const plans = await Promise.all(Array.from({ length: 10 }, (_, i) => new DefinitionStore(kv).register(v('race', 1, 10_000 + i), 'api')));
    assert.deepEqual(plans.map((p) => p.outcome).sort(), [...Array<string>(9).fill('conflict'), 'created']);
    const winner = plans.findIndex((p) => p.outcome === 'created');
    const index = await store.index('race');
    assert.deepEqual(
      index?.versions.map((x) => [x.version, x.hash]),
      [[1, definitionHash(v('race', 1, 10_000 + winner))]],
    );
    assert.equal(definitionHash((await store.version('race', 1))!.def), definitionHash(v('race', 1, 10_000 + winner)));
  });

  test("seeding: the file's versions are added, a newer registered version stays the newest, a changed stored version stops the start naming it", async () => {
    const store = new DefinitionStore(kv);
    assert.equal((await store.register(v('seed', 2), 'api')).outcome, 'created');
    const registry = new FlowRegistry([v('seed', 1)]);
    const { live } = await followDefinitions(kv, registry);
    live.stop();
    assert.equal(registry.get('seed')?.version, 2, 'the registered v2 wins over the file v1');
    assert.deepEqual(
      (await store.index('seed'))?.versions.map((x) => [x.version, x.source]),
      [
        [2, 'api'],
        [1, 'file'],
      ],
    );
    await assert.rejects(
      followDefinitions(kv, new FlowRegistry([v('seed', 1, 20_000)])),
      /JETFLOW_FLOWS_FILE: flow definition seed v1: seed v1 is stored already with other content \(stored hash [0-9a-f]{16}, this one [0-9a-f]{16}\)/,
    );
  });

  test('the watch adopts newer registered versions, not names only a file seeded, and ignores entries that do not check out', async () => {
    const store = new DefinitionStore(kv);
    await store.register(v('fileonly', 1), 'file');
    const registry = new FlowRegistry([]);
    const changes: string[] = [];
    const live = new LiveDefinitions(registry, store, { onChange: (d) => changes.push(`${d.name} v${d.version}`) });
    await live.start();
    try {
      assert.equal(registry.get('fileonly'), undefined, 'a name only a file seeded is not resurrected');
      assert.equal(registry.get('seed')?.version, 2, 'registered names are followed at start');

      await store.register(v('seed', 3), 'api');
      for (let i = 0; i < 100 && registry.get('seed')?.version !== 3; i++) await sleep(20);
      assert.equal(registry.get('seed')?.version, 3);

      // Hostile writes: an index naming v9 whose entry holds other content, garbage, another name's index.
      await kv.put(definitionKey('seed', 9, definitionHash(v('seed', 9))), enc(v('seed', 9, 30_000)));
      const idx = await store.index('seed');
      await kv.put(indexKey('seed'), enc({ ...idx, versions: [{ version: 9, hash: definitionHash(v('seed', 9)), storedAt: new Date().toISOString(), source: 'api' }, ...idx!.versions] }));
      await kv.put(indexKey('other'), new TextEncoder().encode('not json'));
      await kv.put(indexKey('third'), enc({ name: 'seed', versions: [] }));
      await store.register(v('later', 1), 'api');
      for (let i = 0; i < 100 && !registry.get('later'); i++) await sleep(20);
      assert.equal(registry.get('later')?.version, 1, 'the watch goes on');
      assert.equal(registry.get('seed')?.version, 3, 'an entry whose content does not match its hash is never used');
      assert.deepEqual(changes, ['race v1', 'seed v2', 'seed v3', 'later v1'], 'every registered name at start, then each newer version once');
      assert.ok(!(await store.list()).some((i) => i.name === 'other' || i.name === 'third'), 'corrupt indexes are left out of the list');
    } finally {
      live.stop();
    }
  });
});
