/**
 * Nothing from outside is trusted (docs/SECURITY.md), on a stack with NATS identities: a worker's
 * credentials cannot finish someone else's flow (results carry the token of their dispatch; cancels and
 * deadlines are checked against the flow's own state), a tenant cannot hand the orchestrator a
 * pre-validated FlowRequest or take another tenant's flow id, ids that would break a subject or a KV key
 * are dead-lettered at once, and a Nats-Msg-Id reused with another body is refused, not swallowed.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { create, toBinary } from '@bufbuild/protobuf';
import { headers as natsHeaders, type NatsConnection } from 'nats';
import { FlowControlSchema, FlowRequestSchema, TaskResultSchema, TaskStatus } from '@jetflow/proto';
import { INGEST_CONTENT_TYPE, STREAMS, resultSubject } from '@jetflow/messaging';
import { deriveFlowId } from '@jetflow/flows';
import { assertExactlyOnce, jetflowPerSuite, TEST_SECRET, type CallbackReceiver, type JetflowUnderTest } from '@jetflow/testing';

const enc = new TextEncoder();
const OTHER_KEY = 'other-key-0123456789abcdef';
type DeadLetter = { seq: number; subject: string; code: string; reason: string; attempts: string; flowId: string };
type View = { status: string; stages: Array<{ tasks: Array<{ name: string; status: string }> }> };

describe('nothing from outside is trusted', () => {
  let j: JetflowUnderTest;
  let cb: CallbackReceiver;
  jetflowPerSuite((s) => ({ j, cb } = s), {
    receiver: { secret: TEST_SECRET },
    jetflow: {
      auth: true,
      env: { JETFLOW_FLOWS_FILE: resolve('test/fixtures/chaos-flows.json'), JETFLOW_TEST_PLUGINS: '1' },
      serviceEnv: { analyst: { JETFLOW_TASK_SUBJECTS: 'jetflow.task.analyst.>,jetflow.task.test.>' } },
    },
  });

  const submit = async (body: Record<string, unknown>, key = j.apiKey) => {
    const r = await fetch(`${j.http}/v1/flows`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    assert.equal(r.status, 202, await r.clone().text());
    return ((await r.json()) as { flowId: string }).flowId;
  };
  const view = async (id: string, key = j.apiKey) => (await (await fetch(`${j.http}/v1/flows/${id}`, { headers: { authorization: `Bearer ${key}` } })).json()) as View;
  const waitTask = async (id: string, task: string, status: string) => {
    const until = Date.now() + 20_000;
    for (;;) {
      const t = (await view(id)).stages?.flatMap((s) => s.tasks).find((x) => x.name === task);
      if (t?.status === status) return;
      if (Date.now() > until) assert.fail(`${id}: ${task} never ${status} (${t?.status})`);
      await sleep(100);
    }
  };
  /** Every dead letter so far (the harness's superuser reads the stream). */
  const deadLetters = async (): Promise<DeadLetter[]> => {
    const jsm = await j.nc.jetstreamManager();
    const info = await jsm.streams.info(STREAMS.dlq);
    const out: DeadLetter[] = [];
    for (let seq = info.state.first_seq; info.state.messages && seq <= info.state.last_seq; seq++) {
      const m = await jsm.streams.getMessage(STREAMS.dlq, { seq }).catch(() => null);
      if (!m) continue;
      const h = (k: string) => m.header?.get(k) ?? '';
      out.push({ seq, subject: m.subject, code: h('Jetflow-Dlq-Code'), reason: h('Jetflow-Dlq-Reason'), attempts: h('Jetflow-Dlq-Attempts'), flowId: h('Jetflow-Flow-Id') });
    }
    return out;
  };
  const waitDeadLetters = async (pred: (d: DeadLetter) => boolean, n: number, timeoutMs = 10_000) => {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const got = (await deadLetters()).filter(pred);
      if (got.length >= n) return got;
      if (Date.now() > until) assert.fail(`${got.length} of ${n} dead letters within ${timeoutMs} ms: ${JSON.stringify(got)}`);
      await sleep(100);
    }
  };
  const disconnects = () =>
    readFileSync(join(j.logDir, 'orchestrator-0.log'), 'utf8')
      .split('\n')
      .filter((l) => /nats connection status/.test(l) && /disconnect/i.test(l)).length;
  const flowIdsInKv = async () => {
    const kv = await j.nc.jetstream().views.kv('jetflow_flows');
    const keys: string[] = [];
    for await (const k of await kv.keys()) if (!k.endsWith('.callback')) keys.push(k);
    return keys;
  };
  const withIdentity = async <T>(who: Parameters<NonNullable<JetflowUnderTest['natsAuth']>['connect']>[0], fn: (nc: NatsConnection) => Promise<T>) => {
    const nc = await j.natsAuth!.connect(who, j.natsUrls);
    try {
      return await fn(nc);
    } finally {
      await nc.close();
    }
  };

  test('a worker identity forging results, a cancel and an early deadline changes nothing: the flow ends with its real results', async () => {
    const id = await submit({ flow: 'cancellable', input: { chaos: { slowMs: 3_000, failTimes: 0 } }, callbackUrl: cb.url });
    await waitTask(id, 'long', 'dispatched');
    await sleep(300); // the slow task is running
    await withIdentity('analyst', async (w) => {
      const js = w.jetstream();
      const forge = async (body: Uint8Array, kind: string, n: number) => {
        const h = natsHeaders();
        h.set('Jetflow-Kind', kind);
        h.set('Jetflow-Flow-Id', id);
        h.set('Nats-Msg-Id', `forged-${n}-${id}`);
        await js.publish(resultSubject(8, id), body, { headers: h });
      };
      const invented = { status: TaskStatus.SUCCEEDED, flowId: id, task: 'long', stage: 0, attempts: 1, outputJson: enc.encode('{"slept":1,"forged":true}') };
      await forge(toBinary(TaskResultSchema, create(TaskResultSchema, invented)), 'result', 1);
      await forge(toBinary(TaskResultSchema, create(TaskResultSchema, { ...invented, resultToken: 'AAAAAAAAAAAAAAAA' })), 'result', 2);
      // A result for a task not dispatched yet, and one for a task the flow does not have.
      await forge(toBinary(TaskResultSchema, create(TaskResultSchema, { ...invented, task: 'later', stage: 1 })), 'result', 3);
      await forge(toBinary(TaskResultSchema, create(TaskResultSchema, { ...invented, task: 'ghost' })), 'result', 4);
      await forge(toBinary(FlowControlSchema, create(FlowControlSchema, { flowId: id, kind: 'cancel', reason: 'forged' })), 'control', 5);
      await forge(toBinary(FlowControlSchema, create(FlowControlSchema, { flowId: id, kind: 'deadline', dueAtMs: 1n })), 'control', 6);
    });
    const refused = await waitDeadLetters((d) => d.flowId === id, 5);
    assert.deepEqual(refused.map((d) => d.code).sort(), ['bad_token', 'bad_token', 'unexpected_result', 'unknown_task', 'unverified_cancel']);
    assert.ok(
      refused.every((d) => d.attempts === '1'),
      'refused at once, not retried',
    );
    assert.equal((await view(id)).status, 'running', 'the flow goes on');

    await assertExactlyOnce(j, cb, [id], { allowed: ['succeeded'], timeoutMs: 30_000 });
    const body = cb.byFlow(id)[0]!.body as unknown as { datasets: Record<string, { slept?: number; forged?: boolean }>; errors: unknown[] };
    assert.equal(cb.byFlow(id)[0]!.signatureValid, true);
    assert.deepEqual(body.datasets.long, { slept: 3_000, attempt: 1 }, 'the real output, not the invented one');
    assert.deepEqual(body.errors, []);
    assert.equal((await deadLetters()).filter((d) => d.flowId === id).length, 5, 'the forged deadline waited for the real one and died with the flow');
  });

  test('the internal content type on the public door is refused, and no tenant may publish where ingest does', async () => {
    const victimKey = 'victim-order-1';
    const victimId = deriveFlowId('other', victimKey);
    const forged = create(FlowRequestSchema, {
      flowId: victimId,
      tenant: 'other',
      flow: 'cancellable',
      inputJson: enc.encode('{}'),
      callbackUrl: cb.url,
      idempotencyKey: victimKey,
      submittedAtMs: BigInt(Date.now()),
    });
    const attacker = deriveFlowId('default', 'preempt-1');
    await withIdentity('tenant:default', async (t) => {
      const h = natsHeaders();
      h.set('Content-Type', INGEST_CONTENT_TYPE);
      h.set('Nats-Msg-Id', 'preempt-1');
      await t.jetstream().publish('jetflow.ingest.default.cancellable', toBinary(FlowRequestSchema, forged), { headers: h });
      // The subject the ingest service publishes pre-validated submissions to is not the tenant's.
      await assert.rejects(
        t.jetstream().publish(`jetflow.submit.other.${victimId}`, toBinary(FlowRequestSchema, forged), { headers: h, timeout: 3_000 }),
        (e: Error & { code?: string }) => e.code === 'PERMISSIONS_VIOLATION',
      );
    });
    const [d] = await waitDeadLetters((x) => x.code === 'forbidden_content_type', 1);
    assert.equal(d!.subject, 'jetflow.dlq.ingest.jetflow.ingest.default.cancellable');
    assert.equal(d!.flowId, attacker);
    assert.match(d!.reason, /application\/x-jetflow-flow-request is not accepted on jetflow\.ingest/);
    const keys = await flowIdsInKv();
    assert.ok(!keys.includes(victimId) && !keys.includes(attacker), 'no flow from it');

    // The victim tenant's own submission with that key gets its own flow and its callback.
    const mine = await submit({ flow: 'cancellable', input: { chaos: { slowMs: 10, failTimes: 0 } }, callbackUrl: cb.url, idempotencyKey: victimKey }, OTHER_KEY);
    assert.equal(mine, victimId);
    await cb.waitForFlows([mine], 30_000);
    assert.equal(cb.byFlow(mine)[0]!.body.tenant, 'other');
    assert.equal(cb.byFlow(mine)[0]!.body.status, 'succeeded');
  });

  test("a tenant's NATS-door Nats-Msg-Id is its own: another tenant's POST with the same key gets its own flow and callback", async () => {
    const key = 'shared-key-7';
    await withIdentity('tenant:default', async (t) => {
      const h = natsHeaders();
      h.set('Nats-Msg-Id', key);
      // The body names another tenant's key and flow in every way it could: none of it counts.
      await t
        .jetstream()
        .publish(
          'jetflow.ingest.default.cancellable',
          JSON.stringify({ flow: 'cancellable', input: { chaos: { slowMs: 10, failTimes: 0 } }, callbackUrl: cb.url, metadata: { door: 'nats' } }),
          { headers: h },
        );
    });
    const natsId = deriveFlowId('default', key);
    await cb.waitForFlows([natsId], 30_000);
    assert.equal(cb.byFlow(natsId)[0]!.body.tenant, 'default');
    const theirs = await submit({ flow: 'cancellable', input: { chaos: { slowMs: 10, failTimes: 0 } }, callbackUrl: cb.url, idempotencyKey: key, metadata: { door: 'http' } }, OTHER_KEY);
    assert.equal(theirs, deriveFlowId('other', key));
    assert.notEqual(theirs, natsId);
    await cb.waitForFlows([theirs], 30_000);
    await assertExactlyOnce(j, cb, [natsId], { allowed: ['succeeded'], timeoutMs: 30_000 });
    assert.equal(cb.byFlow(theirs).length, 1, 'one callback for the other tenant');
    assert.deepEqual([cb.byFlow(theirs)[0]!.body.tenant, cb.byFlow(theirs)[0]!.body.status, cb.byFlow(theirs)[0]!.body.metadata], ['other', 'succeeded', { door: 'http' }]);
    assert.equal((await view(theirs, OTHER_KEY)).status, 'succeeded');
    assert.deepEqual(cb.byFlow(natsId)[0]!.body.metadata, { door: 'nats' });
  });

  test('the five wedge ids are dead-lettered at once, the orchestrator stays connected, and unrelated flows keep their pace', async () => {
    const wedge = ['', 'a b', 'x*', 'y>', 'z'.repeat(5_000)];
    // What is no idempotency key (an empty Nats-Msg-Id is no key at all: that message would be valid).
    const badKeys = ['a b', 'x* y', 'y> z', 'z'.repeat(5_000), 'ünï'];
    const before = await flowIdsInKv();
    const dlqBefore = (await deadLetters()).reduce((n, d) => Math.max(n, d.seq), 0);
    const disconnectsBefore = disconnects();
    const sent: string[] = [];
    // As a tenant, on the public door (refused for its content type); as a compromised ingest, on
    // jetflow.submit (the superuser stands in: FlowRequests whose ids disagree with their subject or
    // break the rule); and as plain NATS-door JSON whose Nats-Msg-Id is no idempotency key.
    await withIdentity('tenant:default', async (t) => {
      for (const [i, flowId] of wedge.entries()) {
        const h = natsHeaders();
        h.set('Content-Type', INGEST_CONTENT_TYPE);
        h.set('Nats-Msg-Id', `wedge-door-${i}`);
        await t
          .jetstream()
          .publish(
            'jetflow.ingest.default.cancellable',
            toBinary(FlowRequestSchema, create(FlowRequestSchema, { flowId, tenant: 'default', flow: 'cancellable', inputJson: enc.encode('{}') })),
            { headers: h },
          );
        sent.push(`door ${i}`);
      }
    });
    const js = j.nc.jetstream();
    for (const [i, flowId] of wedge.entries()) {
      const h = natsHeaders();
      h.set('Content-Type', INGEST_CONTENT_TYPE);
      await js.publish(
        `jetflow.submit.default.fwedge${i}`,
        toBinary(FlowRequestSchema, create(FlowRequestSchema, { flowId, tenant: 'default', flow: 'cancellable', inputJson: enc.encode('{}') })),
        { headers: h },
      );
      // Its own subject's id, but a tenant and a flow name that are no tokens of a subject.
      await js.publish(
        `jetflow.submit.default.fwedgeb${i}`,
        toBinary(FlowRequestSchema, create(FlowRequestSchema, { flowId: `fwedgeb${i}`, tenant: 'default', flow: flowId || 'Bad Flow', inputJson: enc.encode('{}') })),
        { headers: h },
      );
      const hk = natsHeaders();
      hk.set('Nats-Msg-Id', badKeys[i]!);
      await js.publish('jetflow.ingest.default.cancellable', JSON.stringify({ input: {} }), { headers: hk });
      sent.push(`submit ${i}`, `flow ${i}`, `key ${i}`);
    }
    const t0 = Date.now();
    const unrelated = await submit({ flow: 'cancellable', input: { chaos: { slowMs: 10, failTimes: 0 } }, callbackUrl: cb.url });
    await cb.waitForFlows([unrelated], 30_000);
    const unrelatedMs = Date.now() - t0;

    const refused = await waitDeadLetters((d) => d.seq > dlqBefore && d.subject.startsWith('jetflow.dlq.ingest.'), sent.length);
    assert.equal(refused.length, sent.length, JSON.stringify(refused.map((d) => [d.subject.slice(0, 60), d.code, d.reason.slice(0, 80)])));
    assert.ok(
      refused.every((d) => d.attempts === '1'),
      'each dead-lettered at its first delivery, never redelivered',
    );
    assert.ok(
      refused.every((d) => d.reason.length > 10 && d.reason.length <= 1_000),
      'every one says why, briefly',
    );
    assert.deepEqual(refused.map((d) => d.code).sort(), [...Array<string>(5).fill('forbidden_content_type'), ...Array<string>(15).fill('invalid_argument')]);
    for (const why of [
      /flow id "a b", its subject default and fwedge1/,
      /flow name "x\*" is not valid/,
      /Nats-Msg-Id "y> z" is not an idempotency key/,
      /Nats-Msg-Id "z{40}"… \(5000 characters\)/,
    ])
      assert.ok(
        refused.some((d) => why.test(d.reason)),
        `a reason names the bad id: ${why}`,
      );
    const jsm = await j.nc.jetstreamManager();
    const consumers = await jsm.consumers.list(STREAMS.ingest).next();
    for (const c of consumers) assert.deepEqual([c.name, c.num_pending, c.num_ack_pending], [c.name, 0, 0], 'nothing left to redeliver');
    assert.equal(disconnects(), disconnectsBefore, 'the orchestrator never lost its connection');
    assert.deepEqual(
      (await flowIdsInKv()).filter((k) => !before.includes(k)),
      [unrelated],
      'no flow from any of them',
    );
    assert.ok(unrelatedMs < 10_000, `an unrelated flow took ${unrelatedMs} ms`);
  });

  test('the same Nats-Msg-Id with another body is a dead letter and an event, never a silent duplicate; the same body again is one flow', async () => {
    const key = 'nats-reuse-1';
    const id = deriveFlowId('default', key);
    const events: Array<{ subject: string; data: string }> = [];
    const sub = j.nc.subscribe(`jetflow.event.default.${id}`);
    void (async () => {
      for await (const m of sub) events.push({ subject: m.subject, data: new TextDecoder().decode(m.data) });
    })();
    const body = { flow: 'cancellable', input: { chaos: { slowMs: 1_500, failTimes: 0 } }, callbackUrl: cb.url, metadata: { version: 'first' } };
    const acks = await withIdentity('tenant:default', async (t) => {
      const publish = async (b: unknown) => {
        const h = natsHeaders();
        h.set('Nats-Msg-Id', key);
        return t.jetstream().publish('jetflow.ingest.default.cancellable', JSON.stringify(b), { headers: h });
      };
      const first = await publish(body);
      // A publisher retrying after a lost PubAck: the same body, later than the stream's short window.
      await sleep(300);
      const retry = await publish(body);
      await waitTask(id, 'long', 'dispatched');
      // Within the ingest stream's 100 ms window JetStream would swallow it (a PubAck with duplicate: true).
      await sleep(300);
      const other = await publish({ ...body, metadata: { version: 'second' } });
      return [first, retry, other];
    });
    assert.deepEqual(
      acks.map((a) => [a.stream, a.duplicate]),
      Array(3).fill([STREAMS.ingest, false]),
      'the orchestrator saw all three',
    );
    const [conflict] = await waitDeadLetters((d) => d.code === 'idempotency_conflict' && d.flowId === id, 1);
    assert.match(conflict!.reason, /idempotency key "nats-reuse-1" \(Nats-Msg-Id\) was already used with a different body/);
    // Through HTTP the same key and body is the same flow; another body is 409, as for HTTP keys.
    const same = await fetch(`${j.http}/v1/flows`, {
      method: 'POST',
      headers: { authorization: `Bearer ${j.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ ...body, idempotencyKey: key }),
    });
    assert.equal(same.status, 202, await same.clone().text());
    assert.equal(((await same.json()) as { flowId: string }).flowId, id);
    const changed = await fetch(`${j.http}/v1/flows`, {
      method: 'POST',
      headers: { authorization: `Bearer ${j.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ ...body, idempotencyKey: key, metadata: { version: 'third' } }),
    });
    assert.equal(changed.status, 409);

    await assertExactlyOnce(j, cb, [id], { allowed: ['succeeded'], timeoutMs: 30_000 });
    assert.equal(cb.byFlow(id).length, 1);
    assert.deepEqual(cb.byFlow(id)[0]!.body.metadata, { version: 'first' });
    sub.unsubscribe();
    assert.ok(
      events.some((e) => /flow\.rejected/.test(e.data) && /idempotency_conflict/.test(e.data)),
      `a flow.rejected event says so: ${JSON.stringify(events.map((e) => e.data.slice(0, 80)))}`,
    );
    assert.equal((await deadLetters()).filter((d) => d.flowId === id).length, 1, 'the retry with the same body was no conflict');
  });
});
