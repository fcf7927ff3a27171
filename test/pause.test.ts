/**
 * Pausing one flow against the real stack (NATS with identities, noop workers): while paused nothing new
 * is dispatched (a task that became ready waits, through kill -9 of the orchestrator), resume (the CLI)
 * dispatches it and the flow ends with its one callback; a pause control forged on the bus (no flag
 * behind it) pauses nothing.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { create, toBinary } from '@bufbuild/protobuf';
import { headers as natsHeaders } from 'nats';
import { FlowControlSchema } from '@jetflow/proto';
import { resultSubject } from '@jetflow/messaging';
import { assertExactlyOnce, waitForConsumers, type CallbackReceiver, type JetflowUnderTest } from '@jetflow/testing';
import { flowControlSuite } from './flow-control-suite.js';

describe('pause and resume a flow', () => {
  let j: JetflowUnderTest;
  let cb: CallbackReceiver;
  const { submit, view, task, until, waiting, post, cli } = flowControlSuite((s) => ({ j, cb } = s));
  const approvalWaiting = (id: string) => waiting(id, 'approval');

  test('paused: the task that becomes ready waits, through kill -9 of the orchestrator; resume dispatches it', async () => {
    const id = await submit('approvals');
    await approvalWaiting(id);
    const p = await post(`/v1/flows/${id}/pause`, { reason: 'maintenance' });
    assert.equal(p.status, 202, await p.clone().text());
    assert.deepEqual(await p.json(), { flowId: id, status: 'pausing' });
    await until('paused', async () => ((await view(id)).paused === true ? true : undefined));
    // The signal settles the waiting task; the task it frees is not dispatched while paused.
    assert.equal((await post(`/v1/flows/${id}/signals/approved`, { ok: true })).status, 202);
    await until('approval taken', async () => (task(await view(id), 'approval')?.status === 'succeeded' ? true : undefined));
    await sleep(1_500);
    let v = await view(id);
    assert.equal(task(v, 'publish')!.status, 'pending', 'nothing dispatched while paused');
    assert.equal(v.status, 'running');

    await j.stack.kill('orchestrator', 0, 'SIGKILL');
    j.stack.restart('orchestrator', 0);
    await sleep(3_000);
    v = await view(id);
    assert.equal(v.paused, true, 'still paused after the restart');
    assert.equal(task(v, 'publish')!.status, 'pending');
    assert.equal(cb.byFlow(id).length, 0);

    assert.match(await cli('resume', 'flow', id), new RegExp(`${id} resuming`));
    await assertExactlyOnce(j, cb, [id], { allowed: ['succeeded'], timeoutMs: 30_000 });
    const body = cb.byFlow(id)[0]!.body as unknown as { results: Record<string, unknown> };
    assert.deepEqual(body.results.publish, { noop: true });
    assert.equal((await view(id)).paused, undefined);
    assert.equal((await post(`/v1/flows/${id}/pause`)).status, 409, 'a finished flow');
    assert.equal((await post(`/v1/flows/fzzzzzzzzzzzzzzzzzzzzzzzzz/pause`)).status, 404);
  });

  test('a paused definition: its new flows are accepted and start paused; resuming it (the CLI) resumes them', async () => {
    const tenantKey = await j.api('/v1/flow-definitions/approvals/pause', { method: 'POST', headers: { authorization: 'Bearer other-key-0123456789abcdef' } });
    assert.equal(tenantKey.status, 403, 'a tenant key may not pause a definition');
    assert.equal((await post('/v1/flow-definitions/nosuchflow/pause')).status, 404);
    const p = await post('/v1/flow-definitions/approvals/pause', { reason: 'model upgrade' });
    assert.equal(p.status, 200, await p.clone().text());
    assert.deepEqual(await p.json(), { flow: 'approvals', paused: true });
    const ids = [await submit('approvals'), await submit('approvals')];
    for (const id of ids) {
      await until(`${id} started paused`, async () => ((v) => (v.paused === true && v.status === 'running' ? v : undefined))(await view(id)));
      assert.equal(task(await view(id), 'approval')!.status, 'pending', 'nothing dispatched');
    }
    await sleep(1_000);
    assert.equal(task(await view(ids[0]!), 'approval')!.status, 'pending');
    // The gauge of paused things (the orchestrator's metrics port: the last one its log names).
    const port = [...readFileSync(join(j.logDir, 'orchestrator-0.log'), 'utf8').matchAll(/"metricsPort":(\d+)[^\n]*metrics listening/g)].pop()?.[1];
    assert.ok(port, 'the orchestrator logged its metrics port');
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    assert.match(metrics, /jetflow_paused\{kind="definition"[^}]*\} 1\b/);
    assert.match(metrics, /jetflow_paused\{kind="flow"[^}]*\} 2\b/);
    assert.match(await cli('resume', 'definition', 'approvals'), /definition approvals resumed \(2 flows resumed\)/);
    for (const id of ids) {
      await approvalWaiting(id);
      assert.equal((await post(`/v1/flows/${id}/signals/approved`, { id })).status, 202);
    }
    await assertExactlyOnce(j, cb, ids, { allowed: ['succeeded'], timeoutMs: 30_000 });
    // Resumed: new flows start at once again.
    const later = await submit('approvals');
    await approvalWaiting(later);
    assert.equal((await view(later)).paused, undefined);
  });

  test('flows submitted right after their definition is paused all start paused, and right after its resume all start unpaused (3 rounds of 8, the first right after a NATS restart)', async () => {
    // Right after a broker restart a KV watch takes a while to follow again; the start does not depend on one.
    await j.nats!.restart();
    await waitForConsumers(j.nc, 60_000);
    for (let round = 0; round < 3; round++) {
      const p = await post('/v1/flow-definitions/approvals/pause');
      assert.equal(p.status, 200, await p.clone().text());
      // No wait: the start reads the definition's flag, whatever a watch has delivered yet.
      const ids = await Promise.all(Array.from({ length: 8 }, () => submit('approvals')));
      for (const id of ids) {
        const v = await until(`${id} started`, async () => ((x) => (x.status === 'running' ? x : undefined))(await view(id)));
        assert.equal(v.paused, true, `round ${round}: ${id} started paused`);
        assert.equal(task(v, 'approval')!.status, 'pending', `round ${round}: nothing of ${id} dispatched`);
      }
      const r = await post('/v1/flow-definitions/approvals/resume');
      assert.deepEqual(await r.json(), { flow: 'approvals', paused: false, resumedFlows: 8 }, `round ${round}`);
      const after = await Promise.all(Array.from({ length: 8 }, () => submit('approvals')));
      for (const id of [...ids, ...after]) {
        await approvalWaiting(id);
        assert.equal((await view(id)).paused, undefined, `round ${round}: ${id} runs unpaused`);
        assert.equal((await post(`/v1/flows/${id}/signals/approved`, { round })).status, 202);
      }
      await assertExactlyOnce(j, cb, [...ids, ...after], { allowed: ['succeeded'], timeoutMs: 30_000 });
    }
  });

  test('a paused subject: its workers stop pulling it, its task waits dispatched, and runs once resumed (the CLI)', async () => {
    assert.equal((await post('/v1/subjects/not-a-subject/pause')).status, 400);
    const p = await post('/v1/subjects/jetflow.task.analyst.keywords/pause');
    assert.equal(p.status, 200, await p.clone().text());
    assert.deepEqual(await p.json(), { subject: 'jetflow.task.analyst.keywords', paused: true });
    await sleep(500); // the workers' watch brings the flag
    const id = await submit('approvals');
    await approvalWaiting(id);
    assert.equal((await post(`/v1/flows/${id}/signals/approved`, 'ok')).status, 202);
    await until('publish dispatched', async () => (task(await view(id), 'publish')?.status === 'dispatched' ? true : undefined));
    await sleep(2_000);
    assert.equal(task(await view(id), 'publish')!.status, 'dispatched', 'no worker takes it while its subject is paused');
    assert.equal(cb.byFlow(id).length, 0);
    assert.match(await cli('resume', 'subject', 'jetflow.task.analyst.keywords'), /subject jetflow.task.analyst.keywords resumed/);
    await assertExactlyOnce(j, cb, [id], { allowed: ['succeeded'], timeoutMs: 30_000 });
  });

  test('a subject paused right after a NATS restart (through the API, as soon as ingest is back): its workers take none of its tasks until resumed', async (t) => {
    const SUBJECT = 'jetflow.task.analyst.keywords';
    const ids = await Promise.all(Array.from({ length: 4 }, () => submit('approvals')));
    for (const id of ids) await approvalWaiting(id);
    await j.nats!.restart();
    const backAt = Date.now();
    // Ingest answers 503, or its first request stalls, until it has reconnected: the pause goes in at the
    // first try that is answered (a try is given up after 300 ms; a late one sets the same flag).
    for (;;) {
      assert.ok(Date.now() - backAt < 30_000, 'the pause is taken after the restart');
      const r = await j.api(`/v1/subjects/${SUBJECT}/pause`, { method: 'POST', signal: AbortSignal.timeout(300) }).catch(() => undefined);
      if (r?.status === 200) break;
      await sleep(50);
    }
    t.diagnostic(`subject paused ${Date.now() - backAt} ms after the server was back`);
    for (const id of ids) {
      for (let r = await post(`/v1/flows/${id}/signals/approved`, 'ok'); r.status !== 202; r = await post(`/v1/flows/${id}/signals/approved`, 'ok')) {
        assert.ok(Date.now() - backAt < 30_000, `signal ${id}: ${r.status}`);
        await sleep(50);
      }
    }
    for (const id of ids) await until(`${id} publish dispatched`, async () => (task(await view(id), 'publish')?.status === 'dispatched' ? true : undefined), 30_000);
    // Longer than the client library's missed-heartbeat recovery of a watch lost with the server.
    await sleep(8_000);
    for (const id of ids) {
      assert.equal(task(await view(id), 'publish')!.status, 'dispatched', `${id}: no worker takes it while its subject is paused`);
      assert.equal(cb.byFlow(id).length, 0, `${id} has not ended`);
    }
    assert.match(await cli('resume', 'subject', SUBJECT), /resumed/);
    await assertExactlyOnce(j, cb, ids, { allowed: ['succeeded'], timeoutMs: 30_000 });
  });

  test('a pause control forged on the bus (no flag set) pauses nothing', async () => {
    const id = await submit('approvals');
    await approvalWaiting(id);
    const w = await j.natsAuth!.connect('analyst', j.natsUrls);
    try {
      const h = natsHeaders();
      h.set('Jetflow-Kind', 'control');
      h.set('Jetflow-Flow-Id', id);
      h.set('Nats-Msg-Id', `forged-pause-${id}`);
      await w.jetstream().publish(resultSubject(8, id), toBinary(FlowControlSchema, create(FlowControlSchema, { flowId: id, kind: 'pause', reason: 'pause' })), { headers: h });
    } finally {
      await w.close();
    }
    await sleep(1_500);
    assert.equal((await view(id)).paused, undefined, 'the flag decides, and it is not set');
    assert.equal((await post(`/v1/flows/${id}/signals/approved`, 'go')).status, 202);
    await assertExactlyOnce(j, cb, [id], { allowed: ['succeeded'], timeoutMs: 30_000 });
  });
});
