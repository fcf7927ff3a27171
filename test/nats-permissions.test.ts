/**
 * The generated NATS identities against a real nats-server running the generated configuration: who
 * may connect, what each role can do with the library code the services use, and that the hostile
 * attempts a tenant or a worker could make are refused by the server with a permissions violation.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { create, toBinary } from '@bufbuild/protobuf';
import { connect, type NatsConnection } from 'nats';
import { TaskSchema } from '@jetflow/proto';
import { loadFlowRegistry, taskSubjects } from '@jetflow/flows';
import { createLogger } from '@jetflow/logging';
import { AckPolicy } from 'nats';
import {
  ADMISSION_SUBJECTS,
  BUCKETS,
  CONSUMERS,
  JetStreamPublisher,
  LEGACY_INGEST_CONSUMER,
  STREAMS,
  announceWorker,
  decodeLoad,
  provisionTopology,
  startTaskWorker,
  watchWorkerRegistry,
  TaskLimiter,
} from '@jetflow/messaging';
import { tenantLimits } from '@jetflow/config';
import { FairAdmission } from '../services/orchestrator/src/admission.js';
import { IngestLanes } from '../services/orchestrator/src/ingest-lanes.js';
import { startNatsServer, testNatsAuth, type NatsServerHandle, type TestNatsAuth } from '@jetflow/testing';
import type { Role } from '@jetflow/security';

const PARTITIONS = 2;
/** A publish the server refuses: nats.js fails a request to a subject its user may not publish to. */
async function refusedPublish(nc: NatsConnection, subject: string, opts: { reply?: boolean } = {}): Promise<void> {
  if (opts.reply === false) {
    const err = nextPermissionError(nc);
    nc.publish(subject, new Uint8Array([1]));
    assert.deepEqual(await err, { operation: 'publish', subject }, `publish to ${subject} refused`);
    return;
  }
  await assert.rejects(nc.request(subject, new Uint8Array([1]), { timeout: 3_000 }), (e: Error & { code?: string }) => {
    assert.equal(e.code, 'PERMISSIONS_VIOLATION', `publish to ${subject}: ${e.message}`);
    return true;
  });
}

/** The next permissions violation the server reports on this connection. */
async function nextPermissionError(nc: NatsConnection): Promise<{ operation: string; subject: string }> {
  for await (const s of nc.status()) {
    const ctx = (s as { permissionContext?: { operation: string; subject: string } }).permissionContext;
    if (ctx) return { operation: ctx.operation, subject: ctx.subject };
  }
  throw new Error('connection closed');
}

/** A subscription the server refuses: its callback gets the violation and it closes. */
async function refusedSubscribe(nc: NatsConnection, subject: string): Promise<void> {
  const err = await new Promise<Error & { code?: string }>((resolve) => {
    nc.subscribe(subject, { callback: (e) => e && resolve(e) });
    void nc.flush();
    setTimeout(() => resolve(Object.assign(new Error(`subscription to ${subject} was not refused`), { code: 'NONE' })), 3_000).unref();
  });
  assert.equal(err.code, 'PERMISSIONS_VIOLATION', `subscribe to ${subject}: ${err.message}`);
}

describe('NATS identities on a nats-server with the generated configuration', () => {
  let server: NatsServerHandle;
  let auth: TestNatsAuth;
  let admin: NatsConnection;
  const conns: NatsConnection[] = [];
  const as = async (who: Role) => {
    const nc = await auth.connect(who, [server.url]);
    conns.push(nc);
    return nc;
  };

  before(async () => {
    auth = testNatsAuth(
      { JETFLOW_API_KEYS: 'acme:acme-key-0123456789abcdef,globex:globex-key-0123456789abcdef', JETFLOW_PARTITIONS: String(PARTITIONS) },
      {},
      { workers: { ext: ['jetflow.task.analyst.keywords'] } },
    );
    server = await startNatsServer({ config: auth.config, connect: auth.options('admin') });
    admin = await auth.connect('admin', [server.url]);
  });
  after(async () => {
    await Promise.all(conns.map((c) => c.close().catch(() => undefined)));
    await admin?.close();
    await server?.stop();
  });

  test('anonymous connections, unknown users and wrong passwords are refused', async () => {
    await assert.rejects(connect({ servers: server.url, reconnect: false, timeout: 2_000 }), (e: Error & { code?: string }) => e.code === 'AUTHORIZATION_VIOLATION');
    await assert.rejects(
      connect({ servers: server.url, reconnect: false, timeout: 2_000, user: 'nobody', pass: 'x'.repeat(40) }),
      (e: Error & { code?: string }) => e.code === 'AUTHORIZATION_VIOLATION',
    );
    const s = auth.security.secretFor('ingest');
    await assert.rejects(
      connect({ servers: server.url, reconnect: false, timeout: 2_000, user: s.user, pass: `${s.password}x` }),
      (e: Error & { code?: string }) => e.code === 'AUTHORIZATION_VIOLATION',
    );
  });

  test('every service role provisions the whole topology at start with its own permissions', async () => {
    // The task subjects of the built-in flows, as the services (and the derivation) read them.
    const subjects = taskSubjects(loadFlowRegistry({}).defs);
    for (const role of ['orchestrator', 'ingest', 'dataset-generator', 'analyst'] as const) {
      const nc = await as(role);
      const violation = nextPermissionError(nc);
      await provisionTopology(nc, { partitions: PARTITIONS, taskSubjects: subjects, provisionTimeoutMs: 10_000 });
      const none = await Promise.race([violation, new Promise((r) => setTimeout(() => r('none'), 200))]);
      assert.equal(none, 'none', `${role} provisioned without a refused operation`);
    }
    const jsm = await admin.jetstreamManager();
    for (const s of Object.values(STREAMS)) assert.ok((await jsm.streams.info(s)).config.name === s);
  });

  test("a tenant submits on its own subject and gets the PubAck; another tenant's subject is refused", async () => {
    const acme = await as('tenant:acme');
    const ack = await acme.jetstream().publish('jetflow.ingest.acme.insights', new TextEncoder().encode('{}'), { msgID: 'perm-acme-1' });
    assert.equal(ack.stream, STREAMS.ingest);
    assert.equal(ack.duplicate, false);
    await assert.rejects(
      acme.jetstream().publish('jetflow.ingest.globex.insights', new TextEncoder().encode('{}'), { timeout: 3_000 }),
      (e: Error & { code?: string }) => e.code === 'PERMISSIONS_VIOLATION',
    );
    const last = await (await admin.jetstreamManager()).streams.getMessage(STREAMS.ingest, { last_by_subj: 'jetflow.ingest.>' });
    assert.equal(last.subject, 'jetflow.ingest.acme.insights', "globex's subject got nothing");
  });

  test('a tenant may not forge results, tasks, cancels or callbacks, nor touch the JetStream API', async () => {
    const acme = await as('tenant:acme');
    for (const s of [
      'jetflow.result.0.fvictim',
      'jetflow.task.analyst.sentiment',
      `$KV.${BUCKETS.cancel}.fvictim`,
      `$KV.${BUCKETS.flows}.fvictim`,
      'jetflow.callback.acme',
      'jetflow.event.globex.fvictim',
      'jetflow.dlq.task.x',
    ]) {
      await refusedPublish(acme, s);
    }
    for (const api of [`STREAM.DELETE.${STREAMS.ingest}`, `STREAM.PURGE.${STREAMS.tasks}`, 'STREAM.CREATE.EVIL', `CONSUMER.CREATE.${STREAMS.results}`, 'INFO'])
      await refusedPublish(acme, `$JS.API.${api}`);
    const jsm = await admin.jetstreamManager();
    assert.equal((await jsm.streams.info(STREAMS.results)).state.messages, 0, 'no forged result stored');
    assert.equal((await jsm.streams.info(`KV_${BUCKETS.cancel}`)).state.messages, 0, 'no forged cancel flag');
    assert.equal((await jsm.streams.info(STREAMS.ingest)).config.name, STREAMS.ingest, 'the ingest stream is still there');
  });

  test("a tenant may not read events, tasks, other tenants' subjects or anyone's replies", async () => {
    const acme = await as('tenant:acme');
    for (const s of ['jetflow.event.>', 'jetflow.event.acme.>', 'jetflow.task.>', 'jetflow.ingest.globex.>', 'jetflow.result.>', '$KV.>', '>']) await refusedSubscribe(acme, s);
  });

  test('a tenant cannot aim the PubAck of its submission at a stream: the reply is rewritten across accounts', async () => {
    const acme = await as('tenant:acme');
    const before = (await (await admin.jetstreamManager()).streams.info(STREAMS.ingest)).state.messages;
    acme.publish('jetflow.ingest.acme.insights', new TextEncoder().encode('{}'), { reply: `$KV.${BUCKETS.cancel}.fvictim` });
    acme.publish('jetflow.ingest.acme.insights', new TextEncoder().encode('{}'), { reply: 'jetflow.result.0.fvictim' });
    await acme.flush();
    const jsm = await admin.jetstreamManager();
    const until = Date.now() + 5_000;
    while ((await jsm.streams.info(STREAMS.ingest)).state.messages < before + 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    assert.equal((await jsm.streams.info(STREAMS.ingest)).state.messages, before + 2, 'both submissions stored');
    await new Promise((r) => setTimeout(r, 300));
    assert.equal((await jsm.streams.info(`KV_${BUCKETS.cancel}`)).state.messages, 0, 'the PubAck did not become a cancel flag');
    assert.equal((await jsm.streams.info(STREAMS.results)).state.messages, 0, 'nor a result');
  });

  test('the orchestrator retires the single ingest consumer of earlier versions, pulls one per tenant and reports its counts, which ingest reads', async () => {
    const jsm = await admin.jetstreamManager();
    await jsm.consumers.add(STREAMS.ingest, { durable_name: LEGACY_INGEST_CONSUMER, ack_policy: AckPolicy.Explicit });
    const orch = await as('orchestrator');
    const ingest = await as('ingest');
    const violation = Promise.race([nextPermissionError(orch), nextPermissionError(ingest)]);
    const reports = ingest.subscribe(ADMISSION_SUBJECTS.load);
    const pulled: string[] = [];
    const admission = new FairAdmission({ maxRunning: 10, concurrency: 10, limits: tenantLimits({}) });
    // The message stays in the stream for the operator's test below: handed back, not acked.
    const lanes = new IngestLanes({
      nc: orch,
      admission,
      instanceId: 'perm-orchestrator',
      tenants: ['acme'],
      log: createLogger('orchestrator', 'silent'),
      tickMs: 100,
      handle: async (m) => {
        pulled.push(m.subject);
        m.nak(60_000);
      },
    });
    await lanes.start();
    let queued = 0;
    for await (const r of reports) {
      const l = decodeLoad(r.data);
      queued = l.queued.get('acme') ?? 0;
      if (l.instance === 'perm-orchestrator' && queued > 0 && pulled.length) break;
    }
    await lanes.stop();
    assert.deepEqual([...new Set(pulled)], ['jetflow.ingest.acme.insights']);
    assert.ok(queued >= 1, 'the report counts what waits for acme');
    await assert.rejects(jsm.consumers.info(STREAMS.ingest, LEGACY_INGEST_CONSUMER), /consumer not found/);
    assert.equal((await jsm.consumers.info(STREAMS.ingest, CONSUMERS.ingest('acme'))).config.filter_subject, 'jetflow.ingest.acme.>');
    assert.equal((await jsm.consumers.info(STREAMS.ingest, CONSUMERS.submit('acme'))).config.filter_subject, 'jetflow.submit.acme.>');
    const none = await Promise.race([violation, new Promise((r) => setTimeout(() => r('none'), 200))]);
    assert.equal(none, 'none', 'admission needed nothing the orchestrator and ingest roles lack');
  });

  test('an outside worker pulls only the tasks it serves, with the worker runtime, and publishes their results', async () => {
    const ext = await as('worker:ext');
    const orch = await as('orchestrator');
    const pub = new JetStreamPublisher(orch);
    const task = (name: string, subject: string) =>
      toBinary(TaskSchema, create(TaskSchema, { flowId: 'fperm1', tenant: 'acme', flow: 'perm', task: name, subject, softLimitMs: 2_000, hardLimitMs: 4_000, maxAttempts: 1 }));
    await pub.publish('jetflow.task.analyst.keywords', task('keywords', 'jetflow.task.analyst.keywords'), { msgId: 'fperm1:1:keywords' });
    const seen: string[] = [];
    const violation = nextPermissionError(ext);
    const worker = await startTaskWorker({
      nc: ext,
      subjects: ['jetflow.task.analyst.keywords'],
      concurrency: 2,
      partitions: PARTITIONS,
      workerId: 'ext-1',
      log: createLogger('ext', 'silent'),
      handler: async (t) => (seen.push(t.task), { output: { ok: true } }),
    });
    const jsm = await admin.jetstreamManager();
    const until = Date.now() + 15_000;
    while ((await jsm.streams.info(STREAMS.results)).state.messages < 1 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    await worker.stop(1_000);
    pub.close();
    assert.deepEqual(seen, ['keywords']);
    const r = await jsm.streams.getMessage(STREAMS.results, { last_by_subj: 'jetflow.result.>' });
    assert.match(r.subject, /^jetflow\.result\.\d\.fperm1$/);
    assert.equal((await jsm.consumers.info(STREAMS.tasks, CONSUMERS.task('jetflow.task.analyst.keywords'))).num_ack_pending, 0, 'acked');
    const none = await Promise.race([violation, new Promise((r) => setTimeout(() => r('none'), 200))]);
    assert.equal(none, 'none', 'the runtime needed nothing its role lacks');
  });

  test('workers may not submit, dispatch tasks, pull what they do not serve, write flow state or delete streams', async () => {
    for (const role of ['worker:ext', 'analyst', 'dataset-generator'] as const) {
      const w = await as(role);
      for (const s of ['jetflow.ingest.acme.insights', 'jetflow.task.analyst.sentiment', 'jetflow.callback.acme', `$KV.${BUCKETS.flows}.fvictim`, `$KV.${BUCKETS.cancel}.fvictim`])
        await refusedPublish(w, s);
      for (const api of [
        `STREAM.DELETE.${STREAMS.tasks}`,
        `STREAM.PURGE.${STREAMS.results}`,
        `CONSUMER.DELETE.${STREAMS.tasks}.${CONSUMERS.task('jetflow.task.dataset.text')}`,
        `CONSUMER.MSG.NEXT.${STREAMS.ingest}.${CONSUMERS.ingest('acme')}`,
      ]) {
        await refusedPublish(w, `$JS.API.${api}`);
      }
    }
    const ext = await as('worker:ext');
    await refusedPublish(ext, `$JS.API.CONSUMER.MSG.NEXT.${STREAMS.tasks}.${CONSUMERS.task('jetflow.task.analyst.sentiment')}`);
    await refusedPublish(ext, `$JS.API.STREAM.UPDATE.${STREAMS.tasks}`);
    await refusedSubscribe(ext, 'jetflow.task.>');
    const jsm = await admin.jetstreamManager();
    for (const s of Object.values(STREAMS)) assert.equal((await jsm.streams.info(s)).config.name, s, `${s} still there`);
  });

  test("each worker announces itself in the registry under its own name only; ingest reads it; nobody overwrites another's entry", async () => {
    const ext = await as('worker:ext');
    const analyst = await as('analyst');
    const ingest = await as('ingest');
    const violation = Promise.race([nextPermissionError(ext), nextPermissionError(analyst), nextPermissionError(ingest)]);
    const log = createLogger('perm', 'silent');
    const view = await watchWorkerRegistry(ingest, log);
    const common = { service: 'test', version: '0', concurrency: 2, busy: () => 0, intervalMs: 1_000, log };
    const mine = announceWorker({ nc: ext, name: 'ext', id: 'ext-1', subjects: ['jetflow.task.analyst.keywords'], ...common });
    const theirs = announceWorker({ nc: analyst, name: 'analyst', id: 'analyst-1', subjects: ['jetflow.task.analyst.sentiment'], ...common });
    const until = Date.now() + 10_000;
    while (view.instances().length < 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(
      view.instances().map((i) => [i.name, i.id, i.subjects, i.status]),
      [
        ['analyst', 'analyst-1', ['jetflow.task.analyst.sentiment'], 'live'],
        ['ext', 'ext-1', ['jetflow.task.analyst.keywords'], 'live'],
      ],
    );
    const none = await Promise.race([violation, new Promise((r) => setTimeout(() => r('none'), 200))]);
    assert.equal(none, 'none', 'announcing and watching needed nothing the roles lack');
    // Neither an outside worker nor a built-in one may write (or delete) another worker's key.
    const forged = JSON.stringify({ name: 'analyst', id: 'forged', subjects: ['jetflow.task.analyst.sentiment'] });
    for (const [w, key] of [
      [ext, 'analyst.analyst-1'],
      [ext, 'analyst.forged'],
      [analyst, 'ext.ext-1'],
      [ext, 'extra.x'],
    ] as const) {
      const kv = await w.jetstream().views.kv(BUCKETS.workers, { bindOnly: true });
      await assert.rejects(kv.put(key, forged), (e: Error & { code?: string }) => e.code === 'PERMISSIONS_VIOLATION', `${key} refused`);
    }
    await refusedPublish(ext, `$KV.${BUCKETS.workers}.analyst.analyst-1`);
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(
      view.instances().map((i) => i.id),
      ['analyst-1', 'ext-1'],
      'the entries are unchanged',
    );
    await mine.stop();
    const gone = Date.now() + 5_000;
    while (view.instances().length > 1 && Date.now() < gone) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(
      view.instances().map((i) => i.id),
      ['analyst-1'],
      'stop() removed its own entry',
    );
    await theirs.stop();
    view.stop();
  });

  test('a worker takes and frees concurrency slots and rate starts of the subjects it serves, under no other subject', async () => {
    const ext = await as('worker:ext');
    const analyst = await as('analyst');
    const violation = Promise.race([nextPermissionError(ext), nextPermissionError(analyst)]);
    for (const [nc, subject] of [
      [ext, 'jetflow.task.analyst.keywords'],
      [analyst, 'jetflow.task.analyst.sentiment'],
    ] as const) {
      const limiter = new TaskLimiter({ nc, workerId: 'perm' });
      const a = await limiter.tryAcquire(subject, 'tenant=acme', 1, { flowId: 'fperm2', task: 't' });
      assert.ok(a, `${subject}: a slot`);
      assert.equal(await limiter.tryAcquire(subject, 'tenant=acme', 1, { flowId: 'fperm3', task: 't' }), undefined, 'the only slot is taken');
      assert.equal(await a.renew(), true);
      await a.release();
      const b = await limiter.tryAcquire(subject, 'tenant=acme', 1, { flowId: 'fperm3', task: 't' });
      assert.ok(b, 'free again once released');
      await b.release();
      assert.equal(await limiter.reserveStart(subject, 'tenant=acme', 10), 0);
      assert.ok((await limiter.reserveStart(subject, 'tenant=acme', 10)) > 0, 'the next start waits');
    }
    const none = await Promise.race([violation, new Promise((r) => setTimeout(() => r('none'), 200))]);
    assert.equal(none, 'none', 'limits needed nothing the roles lack');
    // Nobody writes the limits of a subject it does not serve.
    for (const [w, key] of [
      [ext, 'analyst.sentiment.c.0123456789abcdef.0'],
      [ext, 'dataset.text.r.0123456789abcdef'],
      [analyst, 'dataset.text.c.0123456789abcdef.0'],
    ] as const) {
      const kv = await w.jetstream().views.kv(BUCKETS.limits, { bindOnly: true });
      await assert.rejects(kv.put(key, new Uint8Array([1])), (e: Error & { code?: string }) => e.code === 'PERMISSIONS_VIOLATION', `${key} refused`);
    }
  });

  test("no identity reads another's replies: inbox subscriptions outside its own prefix are refused", async () => {
    const orch = await as('orchestrator');
    await refusedSubscribe(orch, '_INBOX.ingest.>');
    await refusedSubscribe(orch, '_INBOX.>');
    const ext = await as('worker:ext');
    await refusedSubscribe(ext, '_INBOX.orchestrator.>');
    // Its own inboxes work: a KV get answered there.
    const ingest = await as('ingest');
    const kv = await ingest.jetstream().views.kv(BUCKETS.flows, { bindOnly: true });
    assert.equal(await kv.get('fnothing'), null);
  });

  test('the operator reads streams and consumers but cannot delete a durable consumer or purge', async () => {
    const op = await as('operator');
    const jsm = await op.jetstreamManager();
    assert.equal((await jsm.streams.info(STREAMS.ingest)).config.name, STREAMS.ingest);
    assert.ok((await jsm.consumers.info(STREAMS.ingest, CONSUMERS.ingest('acme'))).name === CONSUMERS.ingest('acme'));
    const m = await jsm.streams.getMessage(STREAMS.ingest, { seq: 1 });
    assert.equal(m.subject, 'jetflow.ingest.acme.insights');
    await refusedPublish(op, `$JS.API.CONSUMER.DELETE.${STREAMS.ingest}.${CONSUMERS.ingest('acme')}`);
    await refusedPublish(op, `$JS.API.STREAM.PURGE.${STREAMS.dlq}`);
    await refusedPublish(op, `$KV.${BUCKETS.cancel}.fvictim`, { reply: false });
  });
});
