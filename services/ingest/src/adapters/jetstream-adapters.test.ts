import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { DiscardPolicy, RetentionPolicy, connect, headers as natsHeaders, type NatsConnection } from 'nats';
import type { Submission } from '@jetflow/flows';
import { BUCKETS, DLQ_HEADERS, JetStreamPublisher, STREAMS, SUBJECTS, provisionTopology } from '@jetflow/messaging';
import { startNatsServer, type NatsServerHandle } from '@jetflow/testing';
import { JetStreamConsumerSource } from './consumer-source.js';
import { JetStreamDeadLetterStore } from './dlq-store.js';
import { JetStreamGateway } from './gateway.js';

const enc = new TextEncoder();
const submission = { flow: 'insights', input: { n: 1 } } as unknown as Submission;

describe('ingest adapters read JetStream refusals by their codes (real nats-server)', () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;
  let pub: JetStreamPublisher;
  before(async () => {
    server = await startNatsServer();
    nc = await connect({ servers: server.url });
    pub = new JetStreamPublisher(nc);
  });
  after(async () => {
    pub?.close();
    await nc?.close();
    await server?.stop();
  });

  test('the consumer listing skips streams that do not exist yet', async () => {
    const jsm = await nc.jetstreamManager();
    await jsm.streams.add({ name: STREAMS.callbacks, subjects: [`${SUBJECTS.callback}.>`] });
    const snap = await new JetStreamConsumerSource(nc).snapshot();
    assert.deepEqual(
      snap.streams.map((s) => s.name),
      [STREAMS.callbacks],
    );
    await jsm.streams.delete(STREAMS.callbacks);
  });

  test('a full ingest stream answers overloaded at once; a taken idempotency key returns its record', async () => {
    const jsm = await nc.jetstreamManager();
    // The ingest stream at its limit (discard new), as after a long outage of the orchestrator.
    await jsm.streams.add({
      name: STREAMS.ingest,
      subjects: [`${SUBJECTS.ingest}.>`, `${SUBJECTS.submit}.>`],
      retention: RetentionPolicy.Workqueue,
      discard: DiscardPolicy.New,
      max_msgs: 1,
    });
    const js = nc.jetstream();
    const [flows, idempotency, cancel] = await Promise.all([js.views.kv(BUCKETS.flows), js.views.kv(BUCKETS.idempotency), js.views.kv(BUCKETS.cancel)]);
    const gw = new JetStreamGateway(nc, pub, { flows, idempotency, cancel }, 2, 5_000);
    await gw.publishSubmission('default', 'f1', submission, 'm1');
    const t0 = Date.now();
    await assert.rejects(gw.publishSubmission('default', 'f2', submission, 'm2'), (err: { code?: string; retryAfterMs?: number }) => {
      assert.equal(err.code, 'overloaded');
      assert.equal(err.retryAfterMs, 5_000);
      return true;
    });
    assert.ok(Date.now() - t0 < 2_000, `answered without waiting out the 5 s publish timeout (${Date.now() - t0} ms)`);

    const rec = { flowId: 'f1', hash: 'h1' };
    assert.equal(await gw.claimIdempotency('default', 'key-1', rec), null, 'first claim');
    assert.deepEqual(await gw.claimIdempotency('default', 'key-1', { flowId: 'f1', hash: 'h2' }), rec, 'second claim: the first record');
    await jsm.streams.delete(STREAMS.ingest);
  });

  test('the dead-letter store: a missing or already deleted dead letter is no error', async () => {
    await provisionTopology(nc, { partitions: 2, taskSubjects: ['jetflow.task.dataset.text'] });
    const dlq = new JetStreamDeadLetterStore(nc, pub);
    assert.equal(await dlq.get(12345), null, 'no such sequence');
    const h = natsHeaders();
    h.set(DLQ_HEADERS.originalSubject, 'jetflow.task.dataset.text');
    h.set(DLQ_HEADERS.source, 'task');
    for (let i = 0; i < 3; i++) await pub.publish(`${SUBJECTS.dlq}.task.jetflow.task.dataset.text`, enc.encode(`t${i}`), { headers: h });
    const d = (await dlq.get(2))!;
    assert.equal(d.originalSubject, 'jetflow.task.dataset.text');
    // Two redrives of the same dead letter at once: the later one finds it deleted already.
    const jsm = await nc.jetstreamManager();
    await jsm.streams.deleteMessage(STREAMS.dlq, 2, false);
    const r = await dlq.redrive(d, 'redrive-2');
    assert.equal(r.stream, STREAMS.tasks);
    assert.equal(await dlq.get(2), null, 'deleted');
  });
});
