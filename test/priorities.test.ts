/**
 * Flow priorities end to end ("priority": 1..10, README "Priorities"): refused when not an integer 1..10 at
 * every door (400, INVALID_ARGUMENT, a dead letter naming it), kept in the flow's state and shown by
 * GET /v1/flows/{id}, and under a backlog (a tenant limited to 2 running flows) the high ones start first
 * while every low one still finishes.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join, resolve } from 'node:path';
import { spawn } from 'node:child_process';
import * as grpc from '@grpc/grpc-js';
import { headers as natsHeaders } from 'nats';
import { DLQ_HEADERS } from '@jetflow/messaging';
import { repoRoot } from '@jetflow/stack';
import { jetflowPerSuite, waitForConsumers, TEST_API_KEY, TEST_SECRET, type CallbackReceiver, type JetflowUnderTest } from '@jetflow/testing';
import { ingestClient } from './grpc-client.js';

const PRIO_KEY = 'prio-key-0123456789abcdef';

describe('flow priorities', () => {
  let j: JetflowUnderTest;
  let cb: CallbackReceiver;
  jetflowPerSuite((s) => ({ j, cb } = s), {
    jetflow: {
      aws: false,
      env: {
        JETFLOW_API_KEYS: `default:operator:${TEST_API_KEY},prio:${PRIO_KEY}`,
        JETFLOW_CALLBACK_SECRETS: `default:${TEST_SECRET},prio:prio-secret`,
        JETFLOW_TENANT_LIMITS: 'prio=inflight:2',
        JETFLOW_FLOWS_FILE: resolve('test/fixtures/paced-flows.json'),
        JETFLOW_TEST_PLUGINS: '1',
        JETFLOW_TASK_MODE: 'noop',
      },
      serviceEnv: { analyst: { JETFLOW_TASK_SUBJECTS: 'jetflow.task.analyst.>,jetflow.task.test.>' } },
    },
  });

  const post = (key: string, body: unknown) =>
    fetch(`${j.http}/v1/flows`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const getFlow = async (id: string, key = TEST_API_KEY) =>
    (await (await fetch(`${j.http}/v1/flows/${id}`, { headers: { authorization: `Bearer ${key}` } })).json()) as { priority?: number; status?: string };

  test('a priority that is not an integer 1..10 is refused naming it: 400 over HTTP, INVALID_ARGUMENT over gRPC, a dead letter on the NATS door', async () => {
    for (const priority of [0, 11, 2.5, '9', -1]) {
      const r = await post(TEST_API_KEY, { flow: 'paced', input: { chaos: { slowMs: 1 } }, priority });
      assert.equal(r.status, 400, `priority ${JSON.stringify(priority)}`);
      const e = (await r.json()) as { error: { code: string; message: string } };
      assert.equal(e.error.code, 'invalid_argument');
      assert.match(e.error.message, /priority/, e.error.message);
    }
    const client = ingestClient(j.grpc, TEST_API_KEY);
    try {
      await assert.rejects(client.submit({ flow: 'paced', input: { chaos: { slowMs: 1 } }, priority: 11 }), (err: grpc.ServiceError) => {
        assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
        assert.match(err.details, /priority/);
        return true;
      });
      // A valid one over gRPC is kept in the flow's state.
      const ok = (await client.submit({ flow: 'paced', input: { chaos: { slowMs: 1 } }, priority: 8, callbackUrl: cb.url })) as { flowId: string };
      let seen: { priority?: number } = {};
      for (const stop = Date.now() + 20_000; Date.now() < stop && seen.priority === undefined; await new Promise((r) => setTimeout(r, 100))) seen = await getFlow(ok.flowId);
      assert.equal(seen.priority, 8, 'GET /v1/flows/{id} shows the priority it was submitted with');
    } finally {
      client.close();
    }
    const dead = new Promise<{ reason: string; code: string }>((done) => {
      const sub = j.nc.subscribe('jetflow.dlq.>', {
        callback: (_e, m) => {
          if (m.headers?.get('Jetflow-Dlq-Original-Subject') !== 'jetflow.ingest.default.paced' && !m.subject.includes('jetflow.ingest.default.paced')) return;
          sub.unsubscribe();
          done({ reason: m.headers?.get(DLQ_HEADERS.reason) ?? '', code: m.headers?.get(DLQ_HEADERS.code) ?? '' });
        },
      });
    });
    const h = natsHeaders();
    h.set('Nats-Msg-Id', 'bad-priority-door');
    await j.nc.jetstream().publish('jetflow.ingest.default.paced', JSON.stringify({ flow: 'paced', input: { chaos: { slowMs: 1 } }, priority: 0 }), { headers: h });
    const d = await Promise.race([dead, new Promise<never>((_r, rej) => setTimeout(() => rej(new Error('no dead letter within 20 s')), 20_000).unref())]);
    assert.equal(d.code, 'invalid_argument');
    assert.match(d.reason, /priority/, d.reason);
  });

  test('the CLI: jetflow submit --priority N, and get and list show it; a bad --priority is a usage error', async () => {
    const cli = (args: string[], input?: string) =>
      new Promise<{ code: number | null; out: string; err: string }>((done) => {
        const p = spawn(process.execPath, [join(repoRoot(), 'dist', 'scripts', 'jetflow.js'), ...args], {
          env: { PATH: process.env.PATH ?? '', NO_COLOR: '1', JETFLOW_URL: j.http, JETFLOW_API_KEY: TEST_API_KEY },
          stdio: ['pipe', 'pipe', 'pipe'],
        });
        let out = '';
        let err = '';
        p.stdout.on('data', (d: Buffer) => (out += d.toString()));
        p.stderr.on('data', (d: Buffer) => (err += d.toString()));
        p.on('close', (code) => done({ code, out, err }));
        p.stdin.end(input ?? '');
      });
    const sub = JSON.stringify({ flow: 'paced', input: { chaos: { slowMs: 1 } }, priority: 2 });
    const bad = await cli(['submit', '--priority', '11'], sub);
    assert.notEqual(bad.code, 0);
    assert.match(bad.err, /--priority: expected an integer 1\.\.10/);
    const r = await cli(['submit', '--priority', '7', '--watch'], sub);
    assert.equal(r.code, 0, r.err);
    const flowId = r.out.trim();
    const g = await cli(['get', flowId]);
    assert.equal((JSON.parse(g.out) as { priority: number }).priority, 7, "--priority replaced the file's 2");
    const l = await cli(['list', '--limit', '50']);
    const row = l.out.split('\n').find((line) => line.includes(flowId));
    assert.ok(row, l.out);
    assert.match(l.out.split('\n')[0]!, /PRIO/);
    assert.match(row, new RegExp(`${flowId}\\s+paced\\s.*\\s7$`), 'PRIO, the last column');
  });

  test('a backlog behind an in-flight limit of 2: 40 flows alternating priority 9 and 1, the 9s finish earlier on average and every 1 finishes too', async () => {
    const js = j.nc.jetstream();
    const prio = new Map<string, number>();
    for (let i = 0; i < 40; i++) {
      const key = `prio-backlog-${i}`;
      const priority = i % 2 === 0 ? 9 : 1;
      prio.set(key, priority);
      const h = natsHeaders();
      h.set('Nats-Msg-Id', key);
      // The NATS door: held in the stream (and the lane's look-ahead) while the tenant is at its limit.
      await js.publish('jetflow.ingest.prio.paced', JSON.stringify({ flow: 'paced', input: { chaos: { slowMs: 150 } }, callbackUrl: cb.url, priority }), { headers: h });
    }
    const mine = () => cb.accepted.filter((d) => d.body.tenant === 'prio' && prio.has(d.body.idempotencyKey as string));
    await cb.waitFor(() => new Set(mine().map((d) => d.body.idempotencyKey)).size === 40, 120_000, 'all 40 flows');
    const order: string[] = [];
    for (const d of mine()) if (!order.includes(d.body.idempotencyKey as string)) order.push(d.body.idempotencyKey as string);
    const mean = (p: number) => {
      const ranks = order.map((k, i) => [k, i] as const).filter(([k]) => prio.get(k) === p);
      return ranks.reduce((s, [, i]) => s + i, 0) / ranks.length;
    };
    const high = mean(9);
    const low = mean(1);
    console.log(`# finish rank, mean: priority 9 ${high.toFixed(1)}, priority 1 ${low.toFixed(1)} (FIFO would give about 19 and 20); order ${order.map((k) => prio.get(k)).join(',')}`);
    assert.ok(high < low, `the 9s finish earlier on average (${high} vs ${low})`);
    assert.equal(order.filter((k) => prio.get(k) === 1).length, 20, 'every priority-1 flow finished');
    // Far from FIFO: at least 3/4 of the first 20 to finish are 9s.
    assert.ok(
      order.slice(0, 20).filter((k) => prio.get(k) === 9).length >= 15,
      `first 20: ${order
        .slice(0, 20)
        .map((k) => prio.get(k))
        .join(',')}`,
    );
  });

  test('kill -9 of the orchestrator and a NATS restart under a priority backlog: every flow finishes once, the 9s still earlier, the priority kept', async () => {
    const js = j.nc.jetstream();
    const prio = new Map<string, number>();
    for (let i = 0; i < 20; i++) {
      const key = `prio-fault-${i}`;
      const priority = i % 2 === 0 ? 9 : 1;
      prio.set(key, priority);
      const h = natsHeaders();
      h.set('Nats-Msg-Id', key);
      await js.publish('jetflow.ingest.prio.paced', JSON.stringify({ flow: 'paced', input: { chaos: { slowMs: 300 } }, callbackUrl: cb.url, priority }), { headers: h });
    }
    const mine = () => cb.accepted.filter((d) => d.body.tenant === 'prio' && prio.has(d.body.idempotencyKey as string));
    const done = () => new Set(mine().map((d) => d.body.idempotencyKey as string));
    await cb.waitFor(() => done().size >= 4, 60_000, 'the first flows');
    await j.stack.kill('orchestrator', 0, 'SIGKILL');
    await j.nats!.kill();
    await new Promise((r) => setTimeout(r, 1_000));
    await j.nats!.restart();
    j.stack.restart('orchestrator', 0);
    await waitForConsumers(j.nc, 60_000);
    await cb.waitFor(() => done().size === 20, 120_000, 'all 20 flows after the faults');
    const order: string[] = [];
    for (const d of mine()) if (!order.includes(d.body.idempotencyKey as string)) order.push(d.body.idempotencyKey as string);
    const mean = (p: number) => order.reduce((s, k, i) => s + (prio.get(k) === p ? i : 0), 0) / order.filter((k) => prio.get(k) === p).length;
    console.log(`# through the faults: mean finish rank of the 9s ${mean(9).toFixed(1)}, of the 1s ${mean(1).toFixed(1)}; order ${order.map((k) => prio.get(k)).join(',')}`);
    assert.ok(mean(9) < mean(1), `the 9s finish earlier on average (${mean(9)} vs ${mean(1)})`);
    // Each flow's state kept its priority (KV, through the NATS restart).
    const byKey = new Map(mine().map((d) => [d.body.idempotencyKey as string, d.body.flowId]));
    for (const key of ['prio-fault-0', 'prio-fault-1']) assert.equal((await getFlow(byKey.get(key)!, PRIO_KEY)).priority, prio.get(key), key);
  });
});
