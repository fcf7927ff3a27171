/**
 * Jetflow end to end on a nats-server that refuses anonymous connections and runs the generated
 * identities: every service connects as its role, tenants submit through the NATS door with their own
 * identity, and the whole flow (dispatch, results, retries, dead letters, cancel, callbacks, the ops
 * API) works with exactly the permissions each role is given.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { connect, headers as natsHeaders } from 'nats';
import { deriveFlowId } from '@jetflow/flows';
import { jetflowPerSuite, sampleSubmission, TEST_SECRET, type CallbackReceiver, type JetflowUnderTest } from '@jetflow/testing';

describe('Jetflow with NATS identities and permissions', () => {
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

  const submit = async (body: Record<string, unknown>) => {
    const r = await j.api('/v1/flows', { method: 'POST', json: body });
    assert.equal(r.status, 202, await r.clone().text());
    return ((await r.json()) as { flowId: string }).flowId;
  };
  const view = async (id: string) => (await (await j.api(`/v1/flows/${id}`)).json()) as { status: string; stages: Array<{ tasks: Array<{ name: string; status: string }> }> };
  const settle = () => new Promise((r) => setTimeout(r, 500));

  test('anonymous connections are refused; the services run as their roles', async () => {
    assert.ok(j.natsAuth, 'started with identities');
    await assert.rejects(connect({ servers: j.natsUrls, reconnect: false, timeout: 2_000 }), (e: Error & { code?: string }) => e.code === 'AUTHORIZATION_VIOLATION');
    const ready = await fetch(`${j.http}/readyz`);
    assert.equal(ready.status, 200);
  });

  test("HTTP submission and the NATS door as the tenant's own identity: one signed callback each, all tasks succeeded", async () => {
    const httpId = await submit(sampleSubmission(cb.url, { idempotencyKey: 'auth-http-1' }));
    const tenant = await j.natsAuth!.connect('tenant:default', j.natsUrls);
    try {
      const h = natsHeaders();
      h.set('Nats-Msg-Id', 'auth-nats-1');
      const ack = await tenant.jetstream().publish('jetflow.ingest.default.insights', JSON.stringify(sampleSubmission(cb.url)), { headers: h });
      assert.equal(ack.stream, 'JETFLOW_INGEST');
      const natsId = deriveFlowId('default', 'auth-nats-1');
      await cb.waitForFlows([httpId, natsId], 60_000);
      await settle();
      for (const id of [httpId, natsId]) {
        const got = cb.byFlow(id);
        assert.equal(got.length, 1, `exactly one callback for ${id}`);
        assert.equal(got[0]!.signatureValid, true);
        assert.equal(got[0]!.body.status, 'succeeded');
        assert.equal(got[0]!.body.tenant, 'default');
        const v = await view(id);
        assert.equal(v.status, 'succeeded');
        assert.ok(v.stages.flatMap((s) => s.tasks).every((t) => t.status === 'succeeded'));
      }
      // The same identity cannot submit as another tenant, nor set a flow's cancel flag behind the API.
      await assert.rejects(
        tenant.jetstream().publish('jetflow.ingest.other.insights', JSON.stringify(sampleSubmission(cb.url)), { timeout: 3_000 }),
        (e: Error & { code?: string }) => e.code === 'PERMISSIONS_VIOLATION',
      );
      await assert.rejects(tenant.request(`$KV.jetflow_cancel.${natsId}`, new Uint8Array([1]), { timeout: 3_000 }), (e: Error & { code?: string }) => e.code === 'PERMISSIONS_VIOLATION');
    } finally {
      await tenant.close();
    }
  });

  test('a failing task is retried, dead-lettered by the worker and listed and redriven through the ops API', async () => {
    const id = await submit({ flow: 'failfast', input: {}, callbackUrl: cb.url });
    await cb.waitForFlows([id], 30_000);
    assert.equal(cb.byFlow(id)[0]!.body.status, 'failed');
    const list = (await (await j.api('/v1/deadletters?source=task')).json()) as { deadLetters: Array<{ seq: number; flowId: string | null; originalSubject: string }> };
    const mine = list.deadLetters.find((d) => d.flowId === id);
    assert.ok(mine, `the task's dead letter is listed: ${JSON.stringify(list)}`);
    assert.equal(mine.originalSubject, 'jetflow.task.test.fail');
    const r = await j.api(`/v1/deadletters/${mine.seq}/redrive`, { method: 'POST' });
    assert.equal(r.status, 200, await r.clone().text());
    assert.equal((await j.api(`/v1/deadletters/${mine.seq}`)).status, 404, 'redriven: removed from the dead letters');
  });

  test('cancel through the API reaches the orchestrator and the workers', async () => {
    const id = await submit({ flow: 'cancellable', input: { chaos: { slowMs: 3_000 } }, callbackUrl: cb.url });
    await new Promise((r) => setTimeout(r, 700));
    const c = await j.api(`/v1/flows/${id}/cancel`, { method: 'POST', json: { reason: 'auth test' } });
    assert.equal(c.status, 202, await c.clone().text());
    await cb.waitForFlows([id], 30_000);
    await settle();
    assert.equal(cb.byFlow(id).length, 1);
    assert.equal(cb.byFlow(id)[0]!.body.status, 'cancelled');
    assert.equal((await view(id)).status, 'cancelled');
  });

  test('the ops API reads flows, consumers and live events with the ingest role', async () => {
    const flows = (await (await j.api('/v1/flows?limit=50')).json()) as { flows: Array<{ flowId: string }> };
    assert.ok(flows.flows.length >= 3, `flows listed: ${flows.flows.length}`);
    const consumers = (await (await j.api('/v1/consumers')).json()) as { consumers: Array<{ name: string }> };
    for (const name of ['orchestrator-ingest-default', 'callback-sender', 'orchestrator-p0', 'task-dataset-text', 'task-test-echo'])
      assert.ok(
        consumers.consumers.some((c) => c.name === name),
        `${name} listed`,
      );
    const id = flows.flows[0]!.flowId;
    const ev = await fetch(`${j.http}/v1/flows/${id}/events?access_token=${j.apiKey}`);
    assert.equal(ev.status, 200);
    assert.match(await ev.text(), /"status":"(succeeded|failed|cancelled)"/);
  });

  test('no service was refused an operation: no permissions violation in any log', async () => {
    const logs = readdirSync(j.logDir).filter((f) => f.endsWith('.log'));
    assert.equal(logs.length, 4, logs.join(', '));
    for (const f of logs) {
      const text = readFileSync(join(j.logDir, f), 'utf8');
      const refused = text.split('\n').filter((l) => /permissions violation|authorization violation/i.test(l));
      assert.deepEqual(refused, [], `${f}: ${refused.join('\n')}`);
    }
  });
});
