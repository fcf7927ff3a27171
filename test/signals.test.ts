/**
 * Signals and waiting for an event against the real stack (NATS with identities, noop workers): a task
 * with `waitFor` waits until POST /v1/flows/{id}/signals/{name} (or gRPC SignalFlow) arrives and ends
 * with its payload, a signal sent early is kept, the timeout fails the task, a signal accepted while the
 * orchestrator is down (kill -9) is applied once when it is back, and a signal control on the bus
 * without its record is dead-lettered and changes nothing.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import { create, fromJson, toBinary, type JsonValue } from '@bufbuild/protobuf';
import { ValueSchema } from '@bufbuild/protobuf/wkt';
import { headers as natsHeaders } from 'nats';
import { FlowControlSchema, SignalFlowRequestSchema, type SignalFlowResponse } from '@jetflow/proto';
import { STREAMS, resultSubject } from '@jetflow/messaging';
import { ingestServiceDefinition } from '../services/ingest/src/adapters/grpc.js';
import { assertExactlyOnce, type CallbackReceiver, type JetflowUnderTest } from '@jetflow/testing';
import { flowControlSuite } from './flow-control-suite.js';

type Callback = { status: string; results: Record<string, unknown>; datasets: Record<string, unknown>; errors: Array<{ task: string; code: string }> };

describe('signals: tasks that wait for an event', () => {
  let j: JetflowUnderTest;
  let cb: CallbackReceiver;
  const { submit, view, task, until, waiting, cli } = flowControlSuite((s) => ({ j, cb } = s));
  const signal = (id: string, name: string, payload?: unknown, key?: string, apiKey?: string) =>
    fetch(`${j.http}/v1/flows/${id}/signals/${name}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${apiKey ?? j.apiKey}`, ...(payload !== undefined ? { 'content-type': 'application/json' } : {}), ...(key ? { 'idempotency-key': key } : {}) },
      ...(payload !== undefined ? { body: JSON.stringify(payload) } : {}),
    });
  const callbackOf = async (id: string, allowed = ['succeeded']) => {
    await assertExactlyOnce(j, cb, [id], { allowed, timeoutMs: 30_000 });
    return cb.byFlow(id)[0]!.body as unknown as Callback;
  };

  test('an approval waits (the view names the signal), the signal completes it with its payload, and what needs it runs', async () => {
    const id = await submit('approvals');
    const t = await waiting(id, 'approval');
    assert.equal(t.waitingForSignal, 'approved');
    assert.equal(t.status, 'dispatched');
    assert.equal(t.subject, null);
    await sleep(300);
    assert.equal((await view(id)).status, 'running', 'it waits');

    const r = await signal(id, 'approved', { by: 'ada', ok: true }, 'approve-1');
    assert.equal(r.status, 202, await r.clone().text());
    assert.deepEqual(await r.json(), { flowId: id, signalId: 'approve-1', status: 'accepted' });
    const body = await callbackOf(id);
    assert.equal(body.status, 'succeeded');
    assert.deepEqual(body.datasets.approval, { by: 'ada', ok: true }, 'the payload is the task output');
    assert.deepEqual(body.results.publish, { noop: true });
    const v = await view(id);
    assert.deepEqual(
      v.signals?.map((s) => [s.id, s.name, s.task]),
      [['approve-1', 'approved', 'approval']],
    );
    // Finished: a signal now is a conflict; an unknown flow is 404; a bad name 400 naming it; another tenant sees no flow.
    assert.equal((await signal(id, 'approved', 1)).status, 409);
    assert.equal((await signal('fzzzzzzzzzzzzzzzzzzzzzzzzz', 'approved', 1)).status, 404);
    const bad = await signal(id, 'no.dots', 1);
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as { error: { details: Array<{ path: string }> } }).error.details[0]!.path, 'name');
    const other = await submit('approvals');
    assert.equal((await signal(other, 'approved', 1, undefined, 'other-key-0123456789abcdef')).status, 404, "another tenant's key");
    assert.equal((await signal(other, 'approved', 'later')).status, 202);
    assert.equal((await callbackOf(other)).status, 'succeeded');
  });

  test('signals sent before their task is reached are kept; one no task waits for is stored and listed', async () => {
    const id = await submit('twosteps');
    await waiting(id, 'first');
    assert.equal((await signal(id, 'two', { step: 2 })).status, 202);
    assert.equal((await signal(id, 'nobody', 'x')).status, 202);
    await until('both signals recorded', async () => ((v) => ((v.signals?.length ?? 0) >= 2 ? v : undefined))(await view(id)));
    assert.equal(task(await view(id), 'second')!.status, 'pending', 'the early signal waits for its task');
    assert.equal((await signal(id, 'one', { step: 1 })).status, 202);
    const body = await callbackOf(id);
    assert.equal(body.status, 'succeeded');
    assert.deepEqual(body.datasets.first, { step: 1 });
    assert.deepEqual(body.results.second, { step: 2 });
    const v = await view(id);
    assert.deepEqual(v.signals?.map((s) => [s.name, s.task]).sort(), [
      ['nobody', null],
      ['one', 'first'],
      ['two', 'second'],
    ]);
  });

  test('no signal within timeoutMs: the task fails with code timeout and its onFailure fails the flow', async () => {
    const id = await submit('impatient');
    const body = await callbackOf(id, ['failed']);
    assert.equal(body.status, 'failed');
    assert.deepEqual(
      body.errors.map((e) => [e.task, e.code]),
      [['wait', 'timeout']],
    );
    assert.equal(task(await view(id), 'wait')!.error?.code, 'timeout');
  });

  test('kill -9 of the orchestrator: a signal accepted meanwhile (sent twice under one key, and over gRPC) is applied once when it is back', async () => {
    const id = await submit('approvals');
    await waiting(id, 'approval');
    await j.stack.kill('orchestrator', 0, 'SIGKILL');
    const r1 = await signal(id, 'approved', { n: 1 }, 'once');
    assert.equal(r1.status, 202, await r1.clone().text());
    const r2 = await signal(id, 'approved', { n: 1 }, 'once');
    assert.equal(r2.status, 202, 'the same key again is the same signal');
    assert.equal((await signal(id, 'approved', { n: 2 }, 'once')).status, 409, 'the same key with another payload');
    // The same signal through gRPC SignalFlow, same id: still one.
    const res = await grpcSignal(j, id, 'approved', { n: 1 }, 'once');
    assert.equal(res.signalId, 'once');
    j.stack.restart('orchestrator', 0);
    const body = await callbackOf(id);
    assert.equal(body.status, 'succeeded');
    assert.deepEqual(body.datasets.approval, { n: 1 });
    assert.deepEqual(
      (await view(id)).signals?.map((s) => s.id),
      ['once'],
    );
  });

  test('the NATS door: a tenant publishes jetflow.ingest.<tenant>.signal.<flowId>.<name>; twice under one Nats-Msg-Id is one signal; another tenant is refused', async () => {
    const id = await submit('approvals');
    await waiting(id, 'approval');
    const publishAs = async (tenant: string, payload: unknown, msgId: string) => {
      const t = await j.natsAuth!.connect(`tenant:${tenant}`, j.natsUrls);
      try {
        const h = natsHeaders();
        h.set('Nats-Msg-Id', msgId);
        await t.jetstream().publish(`jetflow.ingest.${tenant}.signal.${id}.approved`, JSON.stringify(payload), { headers: h });
      } finally {
        await t.close();
      }
    };
    await publishAs('other', { from: 'other' }, 'o-1');
    const jsm = await j.nc.jetstreamManager();
    const code = await until('the other tenant refused', async () => {
      const info = await jsm.streams.info(STREAMS.dlq);
      for (let seq = info.state.first_seq; info.state.messages && seq <= info.state.last_seq; seq++) {
        const m = await jsm.streams.getMessage(STREAMS.dlq, { seq }).catch(() => null);
        if (m?.header?.get('Jetflow-Flow-Id') === id) return m.header.get('Jetflow-Dlq-Code');
      }
      return undefined;
    });
    assert.equal(code, 'not_found');
    assert.equal((await view(id)).signals, undefined);
    await publishAs('default', { via: 'nats' }, 'nats-sig-1');
    await publishAs('default', { via: 'nats' }, 'nats-sig-1');
    const body = await callbackOf(id);
    assert.deepEqual(body.datasets.approval, { via: 'nats' });
    assert.deepEqual(
      (await view(id)).signals?.map((s) => s.id),
      ['nats-sig-1'],
    );
  });

  test('a signal control forged on the bus (no record behind it) is dead-lettered and the flow goes on waiting', async () => {
    const id = await submit('approvals');
    await waiting(id, 'approval');
    const w = await j.natsAuth!.connect('analyst', j.natsUrls);
    try {
      const h = natsHeaders();
      h.set('Jetflow-Kind', 'control');
      h.set('Jetflow-Flow-Id', id);
      h.set('Nats-Msg-Id', `forged-signal-${id}`);
      await w
        .jetstream()
        .publish(resultSubject(8, id), toBinary(FlowControlSchema, create(FlowControlSchema, { flowId: id, kind: 'signal', signal: 'approved', signalId: 'forged' })), { headers: h });
    } finally {
      await w.close();
    }
    const jsm = await j.nc.jetstreamManager();
    const dead = await until('the forged signal dead-lettered', async () => {
      const info = await jsm.streams.info(STREAMS.dlq);
      for (let seq = info.state.first_seq; info.state.messages && seq <= info.state.last_seq; seq++) {
        const m = await jsm.streams.getMessage(STREAMS.dlq, { seq }).catch(() => null);
        if (m?.header?.get('Jetflow-Flow-Id') === id) return m.header.get('Jetflow-Dlq-Code');
      }
      return undefined;
    });
    assert.equal(dead, 'unverified_signal');
    await sleep(300);
    const v = await view(id);
    assert.equal(v.status, 'running');
    assert.equal(task(v, 'approval')!.waitingForSignal, 'approved');
    assert.equal(v.signals, undefined, 'nothing was applied');
    // The CLI sends the real one.
    const out = await cli('signal', id, 'approved', '--data', '{"via":"cli"}');
    assert.match(out, new RegExp(`${id} signal approved accepted`));
    const body = await callbackOf(id);
    assert.deepEqual(body.datasets.approval, { via: 'cli' });
  });
});

/** gRPC SignalFlow through a real client built from the same descriptors. */
async function grpcSignal(j: JetflowUnderTest, flowId: string, name: string, payload: unknown, signalId: string): Promise<SignalFlowResponse> {
  const Ctor = grpc.makeGenericClientConstructor(ingestServiceDefinition(), 'IngestService');
  const client = new Ctor(j.grpc, grpc.credentials.createInsecure()) as unknown as Record<string, (...a: unknown[]) => void> & grpc.Client;
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${j.apiKey}`);
  try {
    return await new Promise<SignalFlowResponse>((res, rej) =>
      client.signalFlow!.call(
        client,
        create(SignalFlowRequestSchema, { flowId, name, payload: fromJson(ValueSchema, payload as JsonValue), signalId }),
        md,
        (e: grpc.ServiceError | null, r: SignalFlowResponse) => (e ? rej(e) : res(r)),
      ),
    );
  } finally {
    client.close();
  }
}
