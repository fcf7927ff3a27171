import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { resolve } from 'node:path';
import { create, toBinary, fromBinary } from '@bufbuild/protobuf';
import { headers as natsHeaders } from 'nats';
import { TaskResultSchema, TaskStatus, FlowEventSchema } from '@jetflow/proto';
import { resultSubject } from '@jetflow/messaging';
import { startCallbackReceiver, startJetflow, sampleSubmission, waitForConsumers, type CallbackReceiver, type JetflowUnderTest } from '@jetflow/testing';
import { waitForHttp } from '@jetflow/stack';

type View = {
  status: string;
  endReason: string | null;
  deadlineAt: string;
  finishedAt: string;
  stages: Array<{ name: string; tasks: Array<{ name: string; status: string; attempts: number; dispatchedAt: string | null; error: { code: string } | null }> }>;
};

async function dlqEntries(j: JetflowUnderTest) {
  const jsm = await j.nc.jetstreamManager();
  const info = await jsm.streams.info('JETFLOW_DLQ');
  const out: Array<{ subject: string; headers: Record<string, string> }> = [];
  if (!info.state.messages) return out;
  for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
    const m = await jsm.streams.getMessage('JETFLOW_DLQ', { seq }).catch(() => null);
    if (!m) continue;
    const h: Record<string, string> = {};
    for (const [k] of m.header) h[k] = m.header.get(k);
    out.push({ subject: m.subject, headers: h });
  }
  return out;
}

describe('fault handling of tasks, deadlines, failure policies and cancellation', () => {
  let j: JetflowUnderTest;
  let cb: CallbackReceiver;
  const submit = async (flow: string, input: Record<string, unknown>, extra: Record<string, unknown> = {}) => {
    const r = await j.api('/v1/flows', { method: 'POST', json: { flow, input, callbackUrl: cb.url, ...extra } });
    assert.equal(r.status, 202, await r.clone().text());
    return ((await r.json()) as { flowId: string }).flowId;
  };
  const view = async (id: string) => (await (await j.api(`/v1/flows/${id}`)).json()) as View;
  const task = (v: View, name: string) => v.stages.flatMap((s) => s.tasks).find((t) => t.name === name)!;

  before(async () => {
    cb = await startCallbackReceiver();
    j = await startJetflow({
      env: { JETFLOW_FLOWS_FILE: resolve('test/fixtures/chaos-flows.json'), JETFLOW_TEST_PLUGINS: '1' },
      serviceEnv: { analyst: { JETFLOW_TASK_SUBJECTS: 'jetflow.task.analyst.>,jetflow.task.test.>', JETFLOW_SHUTDOWN_GRACE_MS: '1000' } },
    });
  });
  after(async () => {
    await j?.stop();
    await cb?.close();
  });

  test('a task that always throws, one that hangs past its hard limit, a slow one that heartbeats, a flaky one: each ends as documented', async () => {
    const id = await submit('chaos', { chaos: { slowMs: 7_000, failTimes: 2 } });
    await cb.waitForFlows([id], 40_000);
    const [d] = cb.byFlow(id);
    assert.equal(d!.body.status, 'partial', 'failures under a continue policy make the flow partial');
    const results = d!.body.results as Record<string, Record<string, unknown>>;
    assert.deepEqual(results.ok!.deps, ['prep']);
    assert.equal(results.slow!.slept, 7_000, 'the slow task finished');
    assert.equal(results.slow!.attempt, 1, 'heartbeats kept it from being redelivered past the 5 s ack wait');
    assert.equal(results.flaky!.succeededOnAttempt, 3, 'retried with backoff until it succeeded');
    assert.equal((results.fails as { status: string }).status, 'failed');
    assert.equal((results.hangs as { status: string }).status, 'failed');
    const errors = d!.body.errors as Array<{ task: string; code: string }>;
    assert.deepEqual(errors.map((e) => e.task).sort(), ['fails', 'hangs']);
    assert.equal(errors.find((e) => e.task === 'hangs')!.code, 'timeout');
    const v = await view(id);
    assert.equal(task(v, 'fails').attempts, 3, 'max attempts of fails');
    assert.equal(task(v, 'hangs').attempts, 2, 'max attempts of hangs');
    // Both went to the dead-letter subject with reason, attempts and the original headers.
    const dlq = (await dlqEntries(j)).filter((e) => e.headers['Jetflow-Flow-Id'] === id);
    const fails = dlq.find((e) => e.subject === 'jetflow.dlq.task.jetflow.task.test.fail');
    const hangs = dlq.find((e) => e.subject === 'jetflow.dlq.task.jetflow.task.test.hang');
    assert.ok(fails && hangs, JSON.stringify(dlq));
    assert.equal(fails.headers['Jetflow-Dlq-Attempts'], '3');
    assert.match(fails.headers['Jetflow-Dlq-Reason']!, /always fails/);
    assert.equal(hangs.headers['Jetflow-Dlq-Code'], 'timeout');
    assert.equal(hangs.headers['Jetflow-Kind'], 'task', 'original headers kept');
    assert.equal(cb.byFlow(id).length, 1);
  });

  test('a poison message goes straight to the dead letters and the consumer keeps serving', async () => {
    const h = natsHeaders();
    h.set('Nats-Msg-Id', 'poison-1');
    await j.nc.jetstream().publish('jetflow.task.test.echo', new Uint8Array([0xff, 0xfe, 0x01, 0x02, 0x03]), { headers: h });
    const id = await submit('failfast', {}, {});
    await cb.waitForFlows([id], 20_000);
    const dlq = await dlqEntries(j);
    const poison = dlq.find((e) => e.subject === 'jetflow.dlq.task.jetflow.task.test.echo' && e.headers['Jetflow-Dlq-Code'] === 'decode_error');
    assert.ok(poison, 'poison dead-lettered');
    assert.equal(poison.headers['Jetflow-Dlq-Attempts'], '1', 'not retried');
    const v = await view(id);
    assert.equal(task(v, 'fine').status, 'succeeded', 'echo consumer served the next task');
  });

  test('fail_flow policy: a failed task fails the flow and no later stage runs', async () => {
    const id = await submit('failfast', {});
    await cb.waitForFlows([id], 20_000);
    const [d] = cb.byFlow(id);
    assert.equal(d!.body.status, 'failed');
    const v = await view(id);
    assert.equal(task(v, 'doomed').status, 'failed');
    assert.equal(task(v, 'after').status, 'skipped');
    assert.equal(task(v, 'after').dispatchedAt, null, 'the later stage was never dispatched');
  });

  test('a slow analyst and a 2 s deadline: the flow ends partial at the deadline with the other results', async () => {
    const id = await submit('slowflow', { chaos: { slowMs: 6_000, failTimes: 0 } }, { deadlineMs: 2_000 });
    await cb.waitForFlows([id], 20_000);
    const [d] = cb.byFlow(id);
    assert.equal(d!.body.status, 'partial');
    const results = d!.body.results as Record<string, Record<string, unknown>>;
    assert.equal(results.quick!.succeededOnAttempt, 1, 'the quick analyst result is in the report');
    assert.equal((results.laggard as { status: string }).status, 'timed_out');
    const v = await view(id);
    assert.equal(v.endReason, 'deadline');
    assert.ok(Date.parse(v.finishedAt) >= Date.parse(v.deadlineAt), 'ended at (not before) the deadline');
    await new Promise((r) => setTimeout(r, 5_000));
    assert.equal(cb.byFlow(id).length, 1, 'the late result changed nothing');
  });

  test('cancellation mid-flow: no task of a later stage runs; one cancelled callback; workers skip cancelled work', async () => {
    const id = await submit('cancellable', { chaos: { slowMs: 3_000 } });
    await new Promise((r) => setTimeout(r, 700));
    const c = await j.api(`/v1/flows/${id}/cancel`, { method: 'POST', json: { reason: 'operator said so' } });
    assert.equal(c.status, 202);
    await cb.waitForFlows([id], 20_000);
    await new Promise((r) => setTimeout(r, 3_500));
    assert.equal(cb.byFlow(id).length, 1);
    assert.equal(cb.byFlow(id)[0]!.body.status, 'cancelled');
    const v = await view(id);
    assert.equal(v.status, 'cancelled');
    for (const t of ['later', 'later2']) {
      assert.equal(task(v, t).status, 'cancelled');
      assert.equal(task(v, t).dispatchedAt, null, `${t} never dispatched`);
    }
    const again = await j.api(`/v1/flows/${id}/cancel`, { method: 'POST', json: {} });
    assert.equal(again.status, 409, 'cancelling an ended flow is a conflict');

    // Workers check the durable cancel flag before starting: with the analyst down, submit and cancel,
    // then bring it back — it must skip the queued task instead of running it.
    await j.stack.kill('analyst', 0, 'SIGTERM');
    const id2 = await submit('cancellable', { chaos: { slowMs: 3_000 } });
    const events = j.nc.subscribe(`jetflow.event.default.${id2}`);
    const seen: string[] = [];
    void (async () => {
      for await (const m of events) seen.push(fromBinary(FlowEventSchema, m.data).type);
    })();
    await new Promise((r) => setTimeout(r, 300));
    assert.equal((await j.api(`/v1/flows/${id2}/cancel`, { method: 'POST', json: {} })).status, 202);
    await cb.waitForFlows([id2], 10_000);
    j.stack.restart('analyst');
    await waitForConsumers(j.nc);
    const until = Date.now() + 10_000;
    while (!seen.includes('task.skipped') && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    events.unsubscribe();
    assert.ok(seen.includes('task.skipped'), `worker skipped the cancelled task: ${seen.join(',')}`);
    assert.equal(cb.byFlow(id2)[0]!.body.status, 'cancelled');
  });

  test('SIGTERM: a worker stops fetching, hands back what it cannot finish within the grace period, and exits 0', async () => {
    // The analyst runs with a 1 s grace period (serviceEnv below); the slow task needs 4 s.
    const id = await submit('cancellable', { chaos: { slowMs: 4_000, failTimes: 0 } });
    const until = Date.now() + 10_000;
    while (Date.now() < until) {
      // Right after the 202 the flow may not be started yet (no state, or no tasks in its view).
      const v = (await view(id)) as Partial<View>;
      if (v.stages?.flatMap((s) => s.tasks).find((t) => t.name === 'long')?.status === 'dispatched') break;
      await new Promise((r) => setTimeout(r, 50));
    }
    await new Promise((r) => setTimeout(r, 800)); // the task is running now
    const t0 = Date.now();
    const code = await j.stack.kill('analyst', 0, 'SIGTERM');
    assert.equal(code, 0, 'exit code 0');
    assert.ok(Date.now() - t0 < 4_000, 'did not wait for the task beyond the grace period');
    j.stack.restart('analyst');
    await waitForConsumers(j.nc);
    await cb.waitForFlows([id], 30_000);
    const v = await view(id);
    assert.equal(task(v, 'long').status, 'succeeded', 'the handed-back task ran again elsewhere');
    assert.equal(task(v, 'long').attempts, 2, 'second delivery');
    assert.equal(cb.byFlow(id)[0]!.body.status, 'succeeded');
  });

  test('redelivered and duplicate results are never counted twice', async () => {
    const r = await j.api('/v1/flows', { method: 'POST', json: sampleSubmission(cb.url, { idempotencyKey: 'dup-results' }) });
    const { flowId } = (await r.json()) as { flowId: string };
    await cb.waitForFlows([flowId]);
    const before = await view(flowId);
    // Replay a result for a finished task under a fresh message id (so stream dedupe cannot hide it).
    const dup = create(TaskResultSchema, { flowId, task: 'sentiment', stage: 1, status: TaskStatus.FAILED, errorCode: 'boom', errorMessage: 'late duplicate', attempts: 9 });
    const h = natsHeaders();
    h.set('Jetflow-Kind', 'result');
    h.set('Jetflow-Flow-Id', flowId);
    h.set('Nats-Msg-Id', `replay-${Date.now()}`);
    await j.nc.jetstream().publish(resultSubject(8, flowId), toBinary(TaskResultSchema, dup), { headers: h });
    await new Promise((res) => setTimeout(res, 1_000));
    const afterView = await view(flowId);
    assert.deepEqual(afterView.stages, before.stages, 'state unchanged');
    assert.equal(cb.byFlow(flowId).length, 1, 'no second callback');
    void waitForHttp;
  });
});
