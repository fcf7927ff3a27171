import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { create, toBinary } from '@bufbuild/protobuf';
import { headers as natsHeaders } from 'nats';
import { TaskResultSchema, TaskStatus } from '@jetflow/proto';
import { BUCKETS, STREAMS, resultSubject } from '@jetflow/messaging';
import { definitionHash, storedDefinition, type FlowDef } from '@jetflow/flows';
import { SERVICES, waitForHttp } from '@jetflow/stack';
import { assertExactlyOnce, jetflowPerSuite, waitForConsumers, type CallbackReceiver, type JetflowUnderTest } from '@jetflow/testing';

/**
 * A definition change never loses a flow: a flow finishes on the definition it started with after the
 * definitions file changed and the services restarted; a flow whose definition is gone, or that is no
 * longer defined, ends `failed` with exactly one callback and a dead letter. A result that does not
 * answer a dispatch of the flow (a task it does not have, undecodable bytes) is dead-lettered and
 * changes nothing: anyone who may publish results could have sent it.
 */
const limits = (softLimitMs: number, hardLimitMs: number, maxAttempts = 3) => ({ softLimitMs, hardLimitMs, maxAttempts, backoff: { initialMs: 100, maxMs: 400, multiplier: 2 } });
const SHIFT_V1: FlowDef = {
  name: 'shift',
  version: 1,
  deadlineMs: 90_000,
  stages: [
    { name: 'prepare', onFailure: 'fail_flow', tasks: [{ name: 'slow-prep', subject: 'jetflow.task.test.slow', ...limits(20_000, 30_000) }] },
    {
      name: 'report',
      onFailure: 'continue',
      tasks: [
        { name: 'echo-a', subject: 'jetflow.task.test.echo', ...limits(1_000, 2_000) },
        { name: 'echo-b', subject: 'jetflow.task.test.echo', ...limits(1_000, 2_000) },
      ],
    },
  ],
};
// The edit: both stages and every task renamed or removed, the version bumped.
const SHIFT_V2: FlowDef = {
  name: 'shift',
  version: 2,
  deadlineMs: 90_000,
  stages: [
    {
      name: 'only',
      onFailure: 'continue',
      tasks: [
        { name: 'renamed', subject: 'jetflow.task.test.echo', ...limits(1_000, 2_000) },
        { name: 'lazy', subject: 'jetflow.task.test.slow', ...limits(20_000, 30_000) },
      ],
    },
  ],
};
const SHIFT_V3: FlowDef = { ...SHIFT_V2, version: 3, stages: [{ ...SHIFT_V2.stages![0]!, name: 'third' }] };
const RETIRING: FlowDef = {
  name: 'retiring',
  version: 1,
  deadlineMs: 20_000,
  stages: [{ name: 'one', onFailure: 'continue', tasks: [{ name: 'hello', subject: 'jetflow.task.test.echo', ...limits(1_000, 2_000) }] }],
};

const dir = mkdtempSync(join(tmpdir(), 'jetflow-defs-'));
const flowsFile = join(dir, 'flows.json');
const writeFlows = (...defs: FlowDef[]) => writeFileSync(flowsFile, JSON.stringify(defs, null, 1));
writeFlows(SHIFT_V1, RETIRING);

type View = {
  status: string;
  version: number;
  endReason: string | null;
  errors: Array<{ task: string; code: string; message: string }>;
  stages: Array<{ name: string; tasks: Array<{ name: string; status: string }> }>;
};

async function dlqFor(j: JetflowUnderTest, flowId: string) {
  const jsm = await j.nc.jetstreamManager();
  const info = await jsm.streams.info(STREAMS.dlq);
  const out: Array<{ subject: string; headers: Record<string, string> }> = [];
  for (let seq = info.state.first_seq; info.state.messages && seq <= info.state.last_seq; seq++) {
    const m = await jsm.streams.getMessage(STREAMS.dlq, { seq }).catch(() => null);
    if (!m || m.header?.get('Jetflow-Flow-Id') !== flowId) continue;
    const h: Record<string, string> = {};
    for (const [k] of m.header) h[k] = m.header.get(k);
    out.push({ subject: m.subject, headers: h });
  }
  return out;
}

describe('a definition change never loses a flow', () => {
  let j: JetflowUnderTest;
  let cb: CallbackReceiver;
  jetflowPerSuite((s) => ({ j, cb } = s), {
    jetflow: {
      env: { JETFLOW_FLOWS_FILE: flowsFile, JETFLOW_TEST_PLUGINS: '1' },
      serviceEnv: { analyst: { JETFLOW_TASK_SUBJECTS: 'jetflow.task.analyst.>,jetflow.task.test.>' } },
    },
  });
  const submit = async (flow: string, input: Record<string, unknown>) => {
    const r = await j.api('/v1/flows', { method: 'POST', json: { flow, input, callbackUrl: cb.url } });
    assert.equal(r.status, 202, await r.clone().text());
    return ((await r.json()) as { flowId: string }).flowId;
  };
  const view = async (id: string) => (await (await j.api(`/v1/flows/${id}`)).json()) as View;
  const waitTask = async (id: string, task: string, status: string) => {
    const until = Date.now() + 20_000;
    for (;;) {
      const t = (await view(id)).stages.flatMap((s) => s.tasks).find((x) => x.name === task);
      if (t?.status === status) return;
      if (Date.now() > until) assert.fail(`${id}: ${task} never ${status} (${t?.status})`);
      await sleep(100);
    }
  };
  const restart = async (names: readonly (typeof SERVICES)[number][]) => {
    for (const n of names) j.stack.restart(n);
    await waitForHttp(`${j.http}/readyz`, 60_000);
    await waitForConsumers(j.nc, 60_000);
  };
  const publishResult = async (flowId: string, body: Uint8Array, id: string) => {
    const h = natsHeaders();
    h.set('Jetflow-Kind', 'result');
    h.set('Jetflow-Flow-Id', flowId);
    h.set('Nats-Msg-Id', id);
    await j.nc.jetstream().publish(resultSubject(8, flowId), body, { headers: h });
  };

  test('a flow started on v1 ends on v1 after the file is rewritten (v2, other stages and tasks) and every service restarted', async () => {
    const old = await submit('shift', { chaos: { slowMs: 3_000 } });
    await waitTask(old, 'slow-prep', 'dispatched');
    await sleep(1_000); // the slow task is running
    for (const n of SERVICES) await j.stack.kill(n, 0, 'SIGKILL');
    writeFlows(SHIFT_V2, RETIRING);
    await restart(SERVICES);

    await assertExactlyOnce(j, cb, [old], { timeoutMs: 90_000, allowed: ['succeeded'] });
    const [d] = cb.byFlow(old);
    assert.deepEqual(Object.keys(d!.body.results as object), ['echo-a', 'echo-b'], "v1's last stage reported, not v2's");
    assert.deepEqual(Object.keys(d!.body.datasets as object), ['slow-prep']);
    assert.deepEqual((d!.body.results as Record<string, { deps: string[] }>)['echo-a']!.deps, ['slow-prep']);
    const v = await view(old);
    assert.equal(v.version, 1);
    assert.deepEqual(
      v.stages.map((s) => s.name),
      ['stage-0', 'stage-1'],
      'GET no longer has v1 loaded: stages from the state',
    );
    assert.deepEqual(
      v.stages.flatMap((s) => s.tasks.map((t) => `${t.name}=${t.status}`)),
      ['slow-prep=succeeded', 'echo-a=succeeded', 'echo-b=succeeded'],
    );
    assert.deepEqual(await dlqFor(j, old), [], 'nothing dead-lettered');

    // New flows run on v2; both versions sit in the definitions store.
    const fresh = await submit('shift', { chaos: { slowMs: 10 } });
    await assertExactlyOnce(j, cb, [fresh], { allowed: ['succeeded'] });
    assert.deepEqual(Object.keys(cb.byFlow(fresh)[0]!.body.results as object), ['renamed', 'lazy']);
    assert.equal((await view(fresh)).version, 2);
    const store = await j.nc.jetstream().views.kv(BUCKETS.definitions);
    for (const def of [SHIFT_V1, SHIFT_V2]) {
      const e = await store.get(storedDefinition(def).key);
      assert.ok(e && e.operation === 'PUT', `${storedDefinition(def).key} stored`);
      assert.equal(definitionHash(JSON.parse(e.string()) as FlowDef), definitionHash(def));
    }
  });

  test('a result for a task the flow does not have is dead-lettered with the reason and changes nothing: the flow ends with its real results', async () => {
    const id = await submit('shift', { chaos: { slowMs: 3_000 } });
    await waitTask(id, 'lazy', 'dispatched');
    const ghost = create(TaskResultSchema, { flowId: id, task: 'ghost', stage: 0, status: TaskStatus.SUCCEEDED, attempts: 1, outputJson: new TextEncoder().encode('{}') });
    await publishResult(id, toBinary(TaskResultSchema, ghost), `ghost-${id}`);
    const until = Date.now() + 10_000;
    let dlq = await dlqFor(j, id);
    while (!dlq.length && Date.now() < until) {
      await sleep(100);
      dlq = await dlqFor(j, id);
    }
    assert.equal(dlq.length, 1, JSON.stringify(dlq));
    assert.equal(dlq[0]!.subject, `jetflow.dlq.result.${resultSubject(8, id)}`);
    assert.equal(dlq[0]!.headers['Jetflow-Dlq-Code'], 'unknown_task');
    assert.match(dlq[0]!.headers['Jetflow-Dlq-Reason']!, /task "ghost", which flow shift v2 does not have/);
    assert.equal((await view(id)).status, 'running', 'the flow goes on');
    await assertExactlyOnce(j, cb, [id], { allowed: ['succeeded'], timeoutMs: 30_000 });
    assert.deepEqual(Object.keys(cb.byFlow(id)[0]!.body.results as object), ['renamed', 'lazy']);
    assert.deepEqual(cb.byFlow(id)[0]!.body.errors, []);
  });

  test('an undecodable result is dead-lettered at once and changes nothing', async () => {
    const id = await submit('shift', { chaos: { slowMs: 3_000 } });
    await waitTask(id, 'lazy', 'dispatched');
    await publishResult(id, new Uint8Array([0xff, 0xfe, 0x01, 0x02, 0x03]), `garbage-${id}`);
    const until = Date.now() + 10_000;
    let dlq = await dlqFor(j, id);
    while (!dlq.length && Date.now() < until) {
      await sleep(100);
      dlq = await dlqFor(j, id);
    }
    assert.deepEqual(
      dlq.map((e) => [e.headers['Jetflow-Dlq-Code'], e.headers['Jetflow-Dlq-Attempts']]),
      [['invalid_message', '1']],
      'not retried five times first',
    );
    assert.match(dlq[0]!.headers['Jetflow-Dlq-Reason']!, /TaskResult cannot be decoded/);
    await assertExactlyOnce(j, cb, [id], { allowed: ['succeeded'], timeoutMs: 30_000 });
  });

  test('a flow whose definition is gone from the store and the file, and a queued flow no longer defined, each end failed with one callback', async () => {
    const running = await submit('shift', { chaos: { slowMs: 6_000 } });
    await waitTask(running, 'lazy', 'dispatched');
    await j.stack.kill('orchestrator', 0, 'SIGKILL');
    // Accepted by ingest (which still knows it) while no orchestrator runs: queued in the ingest stream.
    const queued = await submit('retiring', {});
    writeFlows(SHIFT_V3);
    const store = await j.nc.jetstream().views.kv(BUCKETS.definitions);
    await store.purge(storedDefinition(SHIFT_V2).key);
    await restart(['orchestrator']);

    await assertExactlyOnce(j, cb, [running, queued], { allowed: ['failed'], timeoutMs: 60_000 });
    const r = cb.byFlow(running)[0]!.body;
    const rErrors = r.errors as View['errors'];
    assert.ok(
      rErrors.some((e) => e.code === 'definition_unavailable' && /shift v2 \([0-9a-f]{16}\), which is neither loaded nor in the definitions store/.test(e.message)),
      JSON.stringify(rErrors),
    );
    const dlq = await dlqFor(j, running);
    assert.ok(dlq.length >= 1 && dlq.every((e) => e.headers['Jetflow-Dlq-Code'] === 'definition_unavailable'), JSON.stringify(dlq));
    const q = cb.byFlow(queued)[0]!.body;
    assert.deepEqual(
      (q.errors as View['errors']).map((e) => e.code),
      ['unknown_flow'],
    );
    assert.match((q.errors as View['errors'])[0]!.message, /flow "retiring" is not defined on this orchestrator/);
    assert.deepEqual([q.results, q.datasets], [{}, {}]);
    await sleep(7_000); // the slow task's own result comes and goes
    assert.equal(cb.byFlow(running).length, 1);
  });
});
