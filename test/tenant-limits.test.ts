/**
 * Per-tenant limits end to end (JETFLOW_TENANT_LIMITS): submissions per second at both ingest doors, and
 * flows in flight across every door — the NATS door's surplus waits in the stream, the others get 429.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import { fromBinary } from '@bufbuild/protobuf';
import { headers as natsHeaders } from 'nats';
import { FlowEventSchema } from '@jetflow/proto';
import { CONSUMERS, STREAMS } from '@jetflow/messaging';
import { jetflowPerSuite, TEST_API_KEY, TEST_SECRET, type CallbackReceiver, type JetflowUnderTest } from '@jetflow/testing';
import { ingestClient } from './grpc-client.js';

/** A tenant's running flows, followed through their lifecycle events, and the most seen at once. */
function watchRunning(j: JetflowUnderTest, tenant: string) {
  const w = { running: new Set<string>(), most: 0, stop: () => sub.unsubscribe() };
  const sub = j.nc.subscribe(`jetflow.event.${tenant}.>`, {
    callback: (_e, m) => {
      const ev = fromBinary(FlowEventSchema, m.data);
      if (ev.type === 'flow.started') w.running.add(ev.flowId);
      if (ev.type === 'flow.completed') w.running.delete(ev.flowId);
      w.most = Math.max(w.most, w.running.size);
    },
  });
  return w;
}

/** NATS-door submissions of `paced` flows (JSON, as the tenant would publish them), with their Nats-Msg-Ids. */
async function publishPaced(j: JetflowUnderTest, tenant: string, n: number, slowMs: number, callbackUrl: string): Promise<string[]> {
  const js = j.nc.jetstream();
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const h = natsHeaders();
    const id = `${tenant}-door-${i}`;
    h.set('Nats-Msg-Id', id);
    const ack = await js.publish(`jetflow.ingest.${tenant}.paced`, JSON.stringify({ flow: 'paced', input: { chaos: { slowMs } }, callbackUrl }), { headers: h });
    assert.equal(ack.duplicate, false);
    ids.push(id);
  }
  return ids;
}

const LIMITED_KEY = 'limited-key-0123456789abcdef';
const HELD_KEY = 'held-key-0123456789abcdef';

describe('per-tenant limits', () => {
  let j: JetflowUnderTest;
  let cb: CallbackReceiver;
  jetflowPerSuite((s) => ({ j, cb } = s), {
    jetflow: {
      aws: false,
      env: {
        JETFLOW_API_KEYS: `default:operator:${TEST_API_KEY},limited:${LIMITED_KEY},held:${HELD_KEY}`,
        JETFLOW_CALLBACK_SECRETS: `default:${TEST_SECRET},limited:limited-secret,held:held-secret`,
        JETFLOW_TENANT_LIMITS: 'limited=rps:1,burst:3;held=inflight:2',
        JETFLOW_FLOWS_FILE: resolve('test/fixtures/paced-flows.json'),
        JETFLOW_TEST_PLUGINS: '1',
        JETFLOW_TASK_MODE: 'noop',
      },
      serviceEnv: { analyst: { JETFLOW_TASK_SUBJECTS: 'jetflow.task.analyst.>,jetflow.task.test.>' } },
    },
  });

  const paced = (slowMs: number) => ({ flow: 'paced', input: { chaos: { slowMs } }, callbackUrl: cb.url });
  const post = (key: string, body: unknown) =>
    fetch(`${j.http}/v1/flows`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });

  test('past its submissions per second a tenant gets 429 with Retry-After over HTTP and RESOURCE_EXHAUSTED with retry-after over gRPC; other tenants go on', async () => {
    for (let i = 0; i < 3; i++) assert.equal((await post(LIMITED_KEY, paced(10))).status, 202, `burst of 3: submission ${i}`);
    const r = await post(LIMITED_KEY, paced(10));
    assert.equal(r.status, 429);
    assert.ok(Number(r.headers.get('retry-after')) >= 1, `Retry-After: ${r.headers.get('retry-after')}`);
    const e = (await r.json()) as { error: { code: string; message: string } };
    assert.equal(e.error.code, 'quota_exceeded');
    assert.match(e.error.message, /tenant "limited" is past its limit of 1 submissions per second/);

    const client = ingestClient(j.grpc, LIMITED_KEY);
    try {
      await assert.rejects(client.submit({ flow: 'paced', input: { chaos: { slowMs: 10 } }, callbackUrl: cb.url }), (err: grpc.ServiceError) => {
        assert.equal(err.code, grpc.status.RESOURCE_EXHAUSTED);
        assert.equal(err.metadata.get('jetflow-error-code')[0], 'quota_exceeded');
        assert.ok(Number(err.metadata.get('retry-after')[0]) >= 1, 'retry-after in the trailers');
        return true;
      });
    } finally {
      client.close();
    }
    for (let i = 0; i < 10; i++) assert.equal((await post(TEST_API_KEY, paced(10))).status, 202, 'another tenant is not limited');
    await sleep(1_100);
    assert.equal((await post(LIMITED_KEY, paced(10))).status, 202, 'a token came back after a second');
  });

  test("with its in-flight limit running, a tenant's NATS-door submissions wait in the stream (none lost, never more at once) and HTTP ones get 429 until flows end", async () => {
    const w = watchRunning(j, 'held');
    const ids = await publishPaced(j, 'held', 6, 1_500, cb.url);
    // Two run; the other four wait unstarted: in the stream, or held by the orchestrator's lane for its
    // priority pick (JETFLOW_PRIORITY_LOOKAHEAD), unacked either way.
    const jsm = await j.nc.jetstreamManager();
    const until = Date.now() + 10_000;
    let pending = 0;
    while (Date.now() < until && !(w.running.size === 2 && pending === 4)) {
      const ci = await jsm.consumers.info(STREAMS.ingest, CONSUMERS.ingest('held'));
      pending = ci.num_pending + ci.num_ack_pending;
      await sleep(50);
    }
    assert.equal(w.running.size, 2, 'its limit of 2 running');
    assert.equal(pending, 4, 'the rest wait, unstarted and unacked');

    // The HTTP door answers 429 once the orchestrators' report reaches ingest (twice a second).
    let refused: Response | undefined;
    for (const stop = Date.now() + 5_000; Date.now() < stop && !refused; await sleep(100)) {
      const r = await post(HELD_KEY, paced(10));
      if (r.status === 429) refused = r;
      else assert.equal(r.status, 202);
    }
    assert.ok(refused, 'an HTTP submission past the in-flight limit is refused');
    assert.equal(refused.headers.get('retry-after'), '1');
    const e = (await refused.json()) as { error: { code: string; message: string } };
    assert.equal(e.error.code, 'quota_exceeded');
    assert.match(e.error.message, /tenant "held" has \d+ flows in flight/);

    // Every NATS-door flow ran, two at a time at most.
    await cb.waitFor((r) => r.accepted.filter((d) => d.body.tenant === 'held' && ids.includes(d.body.idempotencyKey as string)).length === 6, 40_000, "held's six NATS-door flows");
    w.stop();
    assert.equal(w.most, 2, 'never more than its limit running at once');
    for (const id of ids) assert.equal(cb.accepted.filter((d) => d.body.idempotencyKey === id).length, 1, `${id}: one callback`);
    // Past them, the HTTP door accepts again.
    let accepted = false;
    for (const stop = Date.now() + 10_000; Date.now() < stop && !accepted; await sleep(200)) accepted = (await post(HELD_KEY, paced(10))).status === 202;
    assert.ok(accepted, 'accepted again once flows ended');
  });

  test('a tenant nobody configured gets its consumers when its first submission waits; a subject with no valid tenant is drained and dead-lettered', async () => {
    const [id] = await publishPaced(j, 'newcomer', 1, 10, cb.url);
    await cb.waitFor((r) => r.accepted.some((d) => d.body.idempotencyKey === id && d.body.tenant === 'newcomer'), 30_000, "newcomer's flow");
    const jsm = await j.nc.jetstreamManager();
    assert.equal((await jsm.consumers.info(STREAMS.ingest, CONSUMERS.ingest('newcomer'))).config.filter_subject, 'jetflow.ingest.newcomer.>');
    await j.nc.jetstream().publish('jetflow.ingest.NotATenant.paced', JSON.stringify({ flow: 'paced', input: {} }));
    const until = Date.now() + 30_000;
    let left = 1;
    while (Date.now() < until && left > 0) {
      left = (await jsm.streams.info(STREAMS.ingest, { subjects_filter: 'jetflow.ingest.NotATenant.>' })).state.messages;
      await sleep(200);
    }
    assert.equal(left, 0, 'the subject no tenant consumer covers was drained');
    const dead = await jsm.streams.getMessage(STREAMS.dlq, { last_by_subj: 'jetflow.dlq.ingest.jetflow.ingest.NotATenant.paced' });
    assert.ok(dead.header.get('Jetflow-Dlq-Reason'), 'dead-lettered with a reason');
  });
});

describe('per-tenant limits across two orchestrator replicas', () => {
  let j: JetflowUnderTest;
  let cb: CallbackReceiver;
  jetflowPerSuite((s) => ({ j, cb } = s), {
    jetflow: {
      aws: false,
      replicas: { orchestrator: 2 },
      env: {
        JETFLOW_TENANT_LIMITS: 'default=inflight:3',
        JETFLOW_FLOWS_FILE: resolve('test/fixtures/paced-flows.json'),
        JETFLOW_TEST_PLUGINS: '1',
        JETFLOW_TASK_MODE: 'noop',
      },
      serviceEnv: { analyst: { JETFLOW_TASK_SUBJECTS: 'jetflow.task.analyst.>,jetflow.task.test.>' } },
    },
  });

  test('a burst both replicas pull at once never runs more than the limit, and flows ending on the other replica free their starter at once', async () => {
    await sleep(1_500); // the replicas have heard of each other
    const w = watchRunning(j, 'default');
    const t0 = Date.now();
    const ids = await publishPaced(j, 'default', 12, 600, cb.url);
    await cb.waitFor((r) => ids.every((id) => r.accepted.some((d) => d.body.idempotencyKey === id)), 60_000, 'all twelve flows');
    const took = Date.now() - t0;
    w.stop();
    assert.ok(w.most <= 3, `at most 3 running at once across both replicas (saw ${w.most})`);
    assert.ok(w.most >= 2, `the limit was used (saw ${w.most})`);
    // 12 flows of 0.6 s, 3 at a time: ~2.4 s. A flow that ended on the replica that did not start it would
    // keep its starter's part taken until its deadline (120 s) if the end were not announced.
    assert.ok(took < 20_000, `done in ${took} ms`);
    for (const id of ids) assert.equal(cb.accepted.filter((d) => d.body.idempotencyKey === id).length, 1, `${id}: one callback`);
  });
});
