import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { startCallbackReceiver, startJetflow, sampleSubmission, steadyLoad, type CallbackReceiver, type JetflowUnderTest } from '@jetflow/testing';

describe('replicas and an unreachable callback receiver', () => {
  let j: JetflowUnderTest;
  let cb: CallbackReceiver;
  before(async () => {
    cb = await startCallbackReceiver();
    j = await startJetflow({
      replicas: { orchestrator: 3, 'dataset-generator': 2, analyst: 2, ingest: 1 },
      env: { JETFLOW_CALLBACK_BACKOFF_MS: '200', JETFLOW_CALLBACK_BACKOFF_MAX_MS: '1000', JETFLOW_CALLBACK_MAX_ATTEMPTS: '30' },
    });
  });
  after(async () => {
    await j?.stop();
    await cb?.close();
  });

  test('three orchestrators, two of each worker, one orchestrator killed: no lost flows, no double endings', async (t) => {
    const load = steadyLoad(j, () => sampleSubmission(cb.url), { rate: 20, durationMs: 8_000, prefix: 'replicas' });
    await sleep(3_000);
    await j.stack.kill('orchestrator', 1, 'SIGKILL'); // its partitions move to the others when its lease expires
    const res = await load.done;
    await cb.waitForFlows(res.accepted, 60_000);
    await sleep(2_000);
    let repeats = 0;
    for (const id of res.accepted) {
      const got = cb.byFlow(id);
      assert.ok(got.length >= 1);
      assert.equal(new Set(got.map((d) => d.raw)).size, 1, `one ending for ${id}`);
      assert.deepEqual([...new Set(got.map((d) => d.headers['jetflow-delivery-id']))], [`dlv_${id}`]);
      repeats += got.length - 1;
    }
    t.diagnostic(`accepted ${res.accepted.length}, repeated deliveries ${repeats}`);
    // The survivors come to own every partition between them: the dead replica's leases expire by the
    // bucket's TTL (6 s) and are claimed at the survivors' next renewal, so read until that has happened.
    const kv = await j.nc.jetstream().views.kv('jetflow_leases');
    const ownersNow = async () => {
      const owners: Array<string | undefined> = [];
      for (let p = 0; p < 8; p++) {
        const e = await kv.get(`p.${p}`);
        owners.push(e && e.operation === 'PUT' && e.value.length > 0 ? new TextDecoder().decode(e.value) : undefined);
      }
      return owners;
    };
    let owners = await ownersNow();
    for (const until = Date.now() + 20_000; Date.now() < until && owners.some((o) => o === undefined || o === 'orchestrator-1');) {
      await sleep(250);
      owners = await ownersNow();
    }
    owners.forEach((o, p) => assert.ok(o !== undefined, `partition ${p} has an owner (${JSON.stringify(owners)})`));
    assert.ok(!owners.includes('orchestrator-1'), `the dead replica holds nothing (${JSON.stringify(owners)})`);
    assert.ok(new Set(owners).size >= 1);
  });

  test('the callback receiver down for a while, then up: the callback arrives, with one delivery id', async () => {
    cb.failWith = 503;
    const r = await j.api('/v1/flows', { method: 'POST', json: sampleSubmission(cb.url, { idempotencyKey: 'receiver-down' }) });
    const { flowId } = (await r.json()) as { flowId: string };
    await cb.waitFor((x) => x.deliveries.filter((d) => d.body.flowId === flowId).length >= 3, 20_000, 'three refused attempts');
    const st = (await (await j.api(`/v1/flows/${flowId}`)).json()) as { callback: { status: string; attempts: number } };
    assert.equal(st.callback.status, 'retrying');
    cb.failWith = undefined;
    await cb.waitForFlows([flowId], 20_000);
    const all = cb.deliveries.filter((d) => d.body.flowId === flowId);
    assert.ok(all.length >= 4);
    assert.deepEqual([...new Set(all.map((d) => d.headers['jetflow-delivery-id']))], [`dlv_${flowId}`]);
    assert.deepEqual(
      all.map((d) => Number(d.headers['jetflow-attempt'])),
      all.map((_, i) => i + 1),
      'attempts counted up',
    );
    await sleep(1_000);
    assert.equal(cb.byFlow(flowId).length, 1, 'accepted once');
    const after = (await (await j.api(`/v1/flows/${flowId}`)).json()) as { callback: { status: string; attempts: number } };
    assert.equal(after.callback.status, 'delivered');
    assert.equal(after.callback.attempts, all.length);
  });
});
