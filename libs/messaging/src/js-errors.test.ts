import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { AckPolicy, DiscardPolicy, connect, type JetStreamManager, type NatsConnection } from 'nats';
import { codeOf } from '@jetflow/errors';
import { startNatsServer, type NatsServerHandle } from '@jetflow/testing';
import { JetStreamApiCodes as C, isCasConflict, isJsError, jsErrorCode, parseJsApiError } from './js-errors.js';
import { KvWriter } from './kv-writer.js';
import { JetStreamPublisher } from './publisher.js';
import { isTransientNatsError } from './transient.js';

const enc = new TextEncoder();

/** The rejection of a promise (fails the test if it resolves). */
async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  assert.fail('expected a rejection');
}

test('jsErrorCode reads only an integer api_error.err_code', () => {
  assert.equal(jsErrorCode({ api_error: { code: 400, err_code: 10071, description: 'wrong last sequence: 3' } }), 10071);
  for (const v of [undefined, null, 'x', 10071, {}, { api_error: null }, { api_error: { err_code: '10071' } }, { api_error: { err_code: 10071.5 } }, new Error('wrong last sequence: 3')]) {
    assert.equal(jsErrorCode(v), undefined, JSON.stringify(v));
    assert.equal(isCasConflict(v), false);
  }
  assert.ok(isJsError({ api_error: { err_code: 10058 } }, C.StreamSubjectOverlap, C.StreamNameInUse));
  assert.ok(!isJsError({ api_error: { err_code: 10058 } }, C.StreamSubjectOverlap));
});

test('parseJsApiError keeps only well-typed fields of a hostile error object', () => {
  assert.deepEqual(parseJsApiError({ code: 400, err_code: 10071, description: 'wrong last sequence: 1' }), { code: 400, err_code: 10071, description: 'wrong last sequence: 1' });
  assert.deepEqual(parseJsApiError({ code: '503', err_code: '10071', description: { x: 1 } }), { code: 0, description: '' });
  assert.equal(parseJsApiError('boom'), undefined);
  assert.equal(parseJsApiError(null), undefined);
  assert.equal(parseJsApiError({ description: 'x'.repeat(10_000) })!.description.length, 500);
});

describe('JetStream errors provoked on a real nats-server are recognised by code', () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let pub: JetStreamPublisher;
  before(async () => {
    server = await startNatsServer();
    nc = await connect({ servers: server.url });
    jsm = await nc.jetstreamManager();
    pub = new JetStreamPublisher(nc);
  });
  after(async () => {
    pub?.close();
    await nc?.close();
    await server?.stop();
  });

  test('a lost compare-and-set on KV is a conflict (10071), through KvWriter and through nats.js', async () => {
    const kv = await nc.jetstream().views.kv('cas_test');
    const w = new KvWriter(pub, 'cas_test');
    const rev = await kv.put('k', enc.encode('one'));
    const viaWriter = await rejection(w.create('k', enc.encode('two')));
    assert.equal(jsErrorCode(viaWriter), C.StreamWrongLastSequence);
    assert.ok(isCasConflict(viaWriter));
    assert.equal(codeOf(viaWriter), 'conflict', 'not typed as a retryable broker failure');
    assert.equal((viaWriter as Error).name, 'CasConflictError');
    assert.equal((viaWriter as { api_error: { code: number } }).api_error.code, 400);
    assert.ok(!isTransientNatsError(viaWriter));
    const stale = await rejection(w.update('k', enc.encode('three'), rev + 7));
    assert.ok(isCasConflict(stale));
    assert.equal(await w.update('k', enc.encode('three'), rev), rev + 1, 'the right revision still writes');

    // A second create inside the bucket's duplicate window is collapsed by JetStream (same message id
    // k2@0) and acknowledged as a duplicate: not written, so a conflict as well, never a success.
    assert.ok((await w.create('k2', enc.encode('first'))) > 0);
    const again = await rejection(w.create('k2', enc.encode('second')));
    assert.ok(isCasConflict(again), String(again));
    assert.equal((await kv.get('k2'))?.string(), 'first');

    const viaClient = await rejection(kv.create('k', enc.encode('four')));
    assert.ok(isCasConflict(viaClient));
    assert.ok(isCasConflict(await rejection(kv.update('k', enc.encode('five'), 1))));
  });

  test('a publish to a full stream (discard new) is refused at once with its code, not retried as transient', async () => {
    await jsm.streams.add({ name: 'FULL_MSGS', subjects: ['full.msgs'], discard: DiscardPolicy.New, max_msgs: 1 });
    await jsm.streams.add({ name: 'FULL_BYTES', subjects: ['full.bytes'], discard: DiscardPolicy.New, max_bytes: 100 });
    for (const subject of ['full.msgs', 'full.bytes']) {
      await pub.publish(subject, enc.encode('x'.repeat(60)));
      const t0 = Date.now();
      const err = await rejection(pub.publish(subject, enc.encode('x'.repeat(60)), { timeoutMs: 10_000 }));
      assert.ok(Date.now() - t0 < 2_000, `${subject}: refused without retrying until the timeout (${Date.now() - t0} ms)`);
      assert.equal(jsErrorCode(err), C.StreamStoreFailed, subject);
      assert.equal((err as { api_error: { code: number } }).api_error.code, 503);
      assert.ok(!isTransientNatsError(err), `${subject}: a full stream is no broker failure`);
      assert.ok(!isCasConflict(err));
    }
  });

  test('a missing stream, a missing consumer, a missing message', async () => {
    const noStream = await rejection(jsm.streams.info('NO_SUCH_STREAM'));
    assert.ok(isJsError(noStream, C.StreamNotFound));
    assert.ok(isJsError(await rejection(jsm.consumers.info('NO_SUCH_STREAM', 'c')), C.StreamNotFound));
    await jsm.streams.add({ name: 'HAS', subjects: ['has.>'] });
    const noConsumer = await rejection(jsm.consumers.info('HAS', 'no-such-consumer'));
    assert.ok(isJsError(noConsumer, C.ConsumerNotFound));
    assert.ok(!isJsError(noConsumer, C.StreamNotFound));
    assert.ok(isJsError(await rejection(jsm.streams.getMessage('HAS', { seq: 42 })), C.NoMessageFound));
    assert.ok(isJsError(await rejection(jsm.streams.getMessage('HAS', { last_by_subj: 'has.none' })), C.NoMessageFound));
    for (const n of ['1', '2', '3']) await pub.publish('has.a', enc.encode(n));
    await jsm.streams.deleteMessage('HAS', 2, false);
    assert.ok(isJsError(await rejection(jsm.streams.deleteMessage('HAS', 2, false)), C.SequenceNotFound), 'deleted twice');
  });

  test('a stream name in use with another config, subjects another stream holds, a durable on a taken workqueue filter', async () => {
    await jsm.streams.add({ name: 'DUP', subjects: ['dup.>'] });
    assert.ok(isJsError(await rejection(jsm.streams.add({ name: 'DUP', subjects: ['dup.>'], max_msgs: 5 })), C.StreamNameInUse));
    assert.ok(isJsError(await rejection(jsm.streams.add({ name: 'DUP2', subjects: ['dup.x'] })), C.StreamSubjectOverlap));
    await jsm.streams.add({ name: 'WQ', subjects: ['wq.>'], retention: 'workqueue' as never });
    await jsm.consumers.add('WQ', { durable_name: 'a', ack_policy: AckPolicy.Explicit, filter_subject: 'wq.x' });
    assert.ok(isJsError(await rejection(jsm.consumers.add('WQ', { durable_name: 'b', ack_policy: AckPolicy.Explicit, filter_subject: 'wq.x' })), C.ConsumerWQConsumerNotUnique));
  });

  test('replicas on a single server', async () => {
    assert.ok(isJsError(await rejection(jsm.streams.add({ name: 'R3', subjects: ['r3.>'], num_replicas: 3 })), C.StreamReplicasNotSupported));
  });

  test('a publish nobody stores is given up as transient, after retrying under the same message id', async () => {
    const err = await rejection(pub.publish('nobody.stores.this', enc.encode('x'), { timeoutMs: 300, msgId: 'm1' }));
    assert.match((err as Error).message, /not acknowledged after \d+ attempts/);
    assert.ok(isTransientNatsError(err));
    assert.equal(jsErrorCode(err), undefined);
  });

  test('a hostile PubAck is refused as such: no code is invented from it', async () => {
    const replies: Record<string, unknown> = {
      'fake.strings': { error: { code: '400', err_code: '10071', description: 'wrong last sequence: 1' } },
      'fake.array': [1, 2],
      'fake.null': null,
    };
    const sub = nc.subscribe('fake.*', { callback: (_e, m) => m.respond(enc.encode(JSON.stringify(replies[m.subject]))) });
    try {
      const strings = await rejection(pub.publish('fake.strings', enc.encode('x'), { timeoutMs: 1_000 }));
      assert.equal(jsErrorCode(strings), undefined);
      assert.ok(!isCasConflict(strings));
      assert.match((strings as Error).message, /JetStream rejected publish to fake\.strings/);
      // Not a PubAck object at all: a bad answer, not an acknowledgement.
      for (const s of ['fake.array', 'fake.null']) assert.match(((await rejection(pub.publish(s, enc.encode('x'), { timeoutMs: 1_000 }))) as Error).message, /bad PubAck/, s);
    } finally {
      sub.unsubscribe();
    }
  });
});
