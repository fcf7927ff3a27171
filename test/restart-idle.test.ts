import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { SERVICES, waitForHttp } from '@jetflow/stack';
import { jetflowPerSuite, sampleSubmission, waitForConsumers, type CallbackReceiver, type JetflowUnderTest } from '@jetflow/testing';

async function submitN(j: JetflowUnderTest, cb: CallbackReceiver, n: number, prefix: string): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const r = await j.api('/v1/flows', { method: 'POST', json: sampleSubmission(cb.url, { idempotencyKey: `${prefix}-${i}` }) });
    assert.equal(r.status, 202);
    ids.push(((await r.json()) as { flowId: string }).flowId);
  }
  return ids;
}

async function taskAttempts(j: JetflowUnderTest, flowId: string): Promise<number[]> {
  const s = (await (await j.api(`/v1/flows/${flowId}`)).json()) as { status: string; stages: Array<{ tasks: Array<{ attempts: number; status: string }> }> };
  assert.equal(s.status, 'succeeded');
  return s.stages.flatMap((st) => st.tasks.map((t) => t.attempts));
}

describe('services restarted while idle pick up where they were', () => {
  let j: JetflowUnderTest;
  let cb: CallbackReceiver;
  jetflowPerSuite((s) => ({ j, cb } = s));

  for (const how of ['SIGTERM', 'SIGKILL'] as const) {
    test(`after ${how} and restart of every service: new flows complete, nothing is processed twice`, async () => {
      const first = await submitN(j, cb, 4, `${how}-a`);
      await cb.waitForFlows(first);
      for (const s of SERVICES) await j.stack.kill(s, 0, how);
      for (const s of SERVICES) j.stack.restart(s);
      await waitForHttp(`${j.http}/readyz`);
      await waitForConsumers(j.nc);
      const second = await submitN(j, cb, 4, `${how}-b`);
      await cb.waitForFlows(second);
      await new Promise((r) => setTimeout(r, 1_500));
      for (const id of [...first, ...second]) {
        assert.equal(cb.byFlow(id).length, 1, `one callback for ${id}`);
        assert.deepEqual(await taskAttempts(j, id), Array(8).fill(1), `every task of ${id} (insights v2: 8) ran once`);
      }
      // Durable consumers kept their place: nothing left pending or redelivered.
      const jsm = await j.nc.jetstreamManager();
      for (const stream of ['JETFLOW_TASKS', 'JETFLOW_INGEST', 'JETFLOW_CALLBACKS']) {
        for (const c of await jsm.consumers.list(stream).next()) {
          assert.equal(c.num_pending, 0, `${c.name} has nothing pending`);
          assert.equal(c.num_redelivered, 0, `${c.name} redelivered nothing`);
        }
      }
    });
  }
});
