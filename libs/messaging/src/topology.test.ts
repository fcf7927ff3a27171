import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { connect, type NatsConnection } from 'nats';
import { startNatsCluster, startNatsServer, type NatsClusterHandle } from '@jetflow/testing';
import { BUCKETS, STREAMS, provisionTopology } from './topology.js';

const topology = { partitions: 2, taskSubjects: ['jetflow.task.dataset.text'] };
const allStreams = () => [...Object.values(STREAMS), ...Object.values(BUCKETS).map((b) => `KV_${b}`)];

describe('provisioning on a three-node cluster', () => {
  let cluster: NatsClusterHandle;
  let nc: NatsConnection;
  before(async () => {
    cluster = await startNatsCluster({ size: 3 });
    nc = await connect({ servers: cluster.urls });
  });
  after(async () => {
    await nc?.close();
    await cluster?.stop();
  });

  test('JETFLOW_REPLICAS changes the replica count of existing streams and buckets in place, keeping their messages', async () => {
    await provisionTopology(nc, { ...topology, replicas: 1 });
    const jsm = await nc.jetstreamManager();
    for (const s of allStreams()) assert.equal((await jsm.streams.info(s)).config.num_replicas, 1, s);
    const js = nc.jetstream();
    await js.publish('jetflow.task.dataset.text', new TextEncoder().encode('queued'), { msgID: 'm1' });
    const kv = await js.views.kv(BUCKETS.flows);
    await kv.put('f1', new TextEncoder().encode('state'));

    const changed: string[] = [];
    await provisionTopology(nc, { ...topology, replicas: 3, log: { info: (o: unknown) => void changed.push((o as { stream: string }).stream), warn: () => undefined } });
    for (const s of allStreams()) {
      const info = await jsm.streams.info(s);
      assert.equal(info.config.num_replicas, 3, s);
    }
    assert.deepEqual(changed.sort(), allStreams().sort(), 'each change is logged once, naming the stream');
    assert.equal((await jsm.streams.info(STREAMS.tasks)).state.messages, 1);
    assert.equal(new TextDecoder().decode((await kv.get('f1'))!.value), 'state');
    // The consumer follows its stream onto three servers (its leader may still be being elected).
    const peers = async () => {
      const c = (await jsm.consumers.info(STREAMS.tasks, 'task-dataset-text')).cluster;
      return new Set([c?.leader, ...(c?.replicas ?? []).map((r) => r.name)].filter(Boolean)).size;
    };
    for (let i = 0; i < 50 && (await peers()) !== 3; i++) await sleep(100);
    assert.equal(await peers(), 3, 'the consumer follows its stream');

    // Provisioning again changes nothing.
    changed.length = 0;
    await provisionTopology(nc, { ...topology, replicas: 3, log: { info: (o: unknown) => void changed.push((o as { stream: string }).stream), warn: () => undefined } });
    assert.deepEqual(changed, []);
  });

  test('streamLeader names the node that leads a stream', async () => {
    const n = await cluster.streamLeader(STREAMS.results);
    assert.match(n.name, /^n[123]$/);
    assert.ok(n.running);
  });
});

test('replicas above 1 on a single server fail at start, naming JETFLOW_REPLICAS', async () => {
  const server = await startNatsServer();
  const nc = await connect({ servers: [server.url] });
  try {
    await assert.rejects(provisionTopology(nc, { ...topology, replicas: 3 }), /JETFLOW_REPLICAS needs a JetStream cluster/);
  } finally {
    await nc.close();
    await server.stop();
  }
});
