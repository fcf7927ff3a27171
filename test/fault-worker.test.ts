/**
 * The worker runtime through the whole stack (chaos plugins, JETFLOW_TEST_PLUGINS=1, flows from
 * test/fixtures/worker-flows.json): retry delays follow the definition's backoff multiplier; time
 * limits count running time, not the wait for a worker thread; a cancel stops a running task.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fromBinary } from '@bufbuild/protobuf';
import { FlowEventSchema, TaskStatus } from '@jetflow/proto';
import { decodeTaskResult } from '@jetflow/messaging';
import { jetflowPerSuite, type CallbackReceiver, type Delivery, type JetflowUnderTest } from '@jetflow/testing';

type View = { status: string; stages: Array<{ name: string; tasks: Array<{ name: string; status: string; attempts: number; dispatchedAt: string | null }> }> };
type Results = Record<string, Record<string, unknown> & { status?: string }>;
/** A callback of these flows: every callback's fields and the tasks' results. */
type Body = Delivery['body'] & { results: Results; errors: unknown[] };

describe('worker runtime end to end: backoff multiplier, limits that count running time, cancel that stops the work', () => {
  let j: JetflowUnderTest;
  let cb: CallbackReceiver;
  const events: Array<{ flowId: string; type: string; task: string; attempt: number; atMs: number }> = [];
  const results: Array<ReturnType<typeof decodeTaskResult> & { at: number }> = [];
  jetflowPerSuite(
    (s) => {
      ({ j, cb } = s);
      const ev = j.nc.subscribe('jetflow.event.>');
      void (async () => {
        for await (const m of ev) {
          const e = fromBinary(FlowEventSchema, m.data);
          events.push({ flowId: e.flowId, type: e.type, task: e.task, attempt: e.attempt, atMs: Number(e.atMs) });
        }
      })();
      const rs = j.nc.subscribe('jetflow.result.>');
      void (async () => {
        for await (const m of rs) if (m.headers?.get('Jetflow-Kind') === 'result') results.push({ ...decodeTaskResult(m.data), at: Date.now() });
      })();
    },
    {
      jetflow: {
        env: { JETFLOW_FLOWS_FILE: resolve('test/fixtures/worker-flows.json'), JETFLOW_TEST_PLUGINS: '1' },
        // Two pool threads, and the default slots (one per thread).
        serviceEnv: { analyst: { JETFLOW_TASK_SUBJECTS: 'jetflow.task.analyst.>,jetflow.task.test.>', JETFLOW_WORKER_THREADS: '2' } },
      },
    },
  );
  const submit = async (flow: string, input: Record<string, unknown>) => {
    const r = await j.api('/v1/flows', { method: 'POST', json: { flow, input, callbackUrl: cb.url } });
    assert.equal(r.status, 202, await r.clone().text());
    return ((await r.json()) as { flowId: string }).flowId;
  };
  const view = async (id: string) => (await (await j.api(`/v1/flows/${id}`)).json()) as View;
  const until = async (what: string, pred: () => boolean | Promise<boolean>, timeoutMs = 15_000) => {
    const end = Date.now() + timeoutMs;
    while (!(await pred())) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await sleep(50);
    }
  };
  let firstThreads = new Set<number>();

  test('retries of an always-failing task with backoff x5 are spaced initial x 5^(n-1), within the jitter band', async (t) => {
    const id = await submit('backoff5', {});
    await cb.waitForFlows([id], 40_000);
    const body = cb.byFlow(id)[0]!.body as Body;
    assert.equal(body.results.fails!.status, 'failed');
    const retrying = events.filter((e) => e.flowId === id && e.type === 'task.retrying').sort((a, b) => a.attempt - b.attempt);
    assert.deepEqual(
      retrying.map((e) => e.attempt),
      [1, 2, 3],
    );
    const final = results.find((r) => r.flowId === id && r.task === 'fails' && r.status === TaskStatus.FAILED);
    assert.ok(final, 'the failed result of the last attempt');
    assert.equal(final.attempts, 4);
    // From the failure of attempt n to the start of attempt n+1 (both on the worker's clock).
    const gaps = [retrying[1]!.atMs - retrying[0]!.atMs, retrying[2]!.atMs - retrying[1]!.atMs, Number(final.startedAtMs) - retrying[2]!.atMs];
    // initialMs 200, x5: delays uniform in [100, 200], [500, 1000], [2500, 5000]. Doubling would give at
    // most 400 and 800 ms for the last two, far under their floors; the ceilings allow a loaded machine.
    const bases = [200, 1_000, 5_000];
    t.diagnostic(`gaps between attempts: ${gaps.join(', ')} ms`);
    gaps.forEach((g, i) => {
      assert.ok(g >= bases[i]! / 2 - 25, `gap ${i + 1}: ${g} ms, under ${bases[i]! / 2} (gaps ${gaps.join(', ')})`);
      assert.ok(g <= bases[i]! + 1_500, `gap ${i + 1}: ${g} ms, far over ${bases[i]} (gaps ${gaps.join(', ')})`);
    });
  });

  test('four CPU tasks at 70 % of their soft limit on two pool threads: none times out, none is retried', async () => {
    const id = await submit('threads', { chaos: { busyMs: 2_100 } });
    await cb.waitForFlows([id], 40_000);
    const body = cb.byFlow(id)[0]!.body as Body;
    assert.equal(body.status, 'succeeded', JSON.stringify(body.errors));
    for (const t of ['busy1', 'busy2', 'busy3', 'busy4']) {
      assert.equal(body.results[t]!.attempt, 1, `${t} ran once`);
      assert.equal(body.results[t]!.busyMs, 2_100);
    }
    assert.deepEqual(
      events.filter((e) => e.flowId === id && e.type === 'task.retrying'),
      [],
      'no retries',
    );
    firstThreads = new Set(['busy1', 'busy2', 'busy3', 'busy4'].map((t) => body.results[t]!.threadId as number));
    assert.equal(firstThreads.size, 2, 'both threads worked');
    const v = await view(id);
    for (const t of v.stages[0]!.tasks) assert.equal(t.attempts, 1, `${t.name}: one delivery`);
  });

  test('cancel: the running tasks (one in the event loop, one spinning in a pool thread) are stopped within ~1 s, one cancelled callback, no success applied', async (t) => {
    const id = await submit('cancelme', { chaos: { slowMs: 10_000, busyMs: 10_000, ignoreSignal: true } });
    await until('both tasks dispatched', async () => (await view(id)).stages?.[0]?.tasks.every((t) => t.status === 'dispatched') === true);
    await sleep(1_000); // both are running now
    const t0 = Date.now();
    const c = await j.api(`/v1/flows/${id}/cancel`, { method: 'POST', json: { reason: 'test' } });
    assert.equal(c.status, 202);
    await cb.waitForFlows([id], 10_000);
    await until('task.cancelled of both tasks', () => events.filter((e) => e.flowId === id && e.type === 'task.cancelled').length >= 2, 5_000);
    for (const e of events.filter((x) => x.flowId === id && x.type === 'task.cancelled')) {
      t.diagnostic(`${e.task} stopped ${e.atMs - t0} ms after the cancel request`);
      // The cancel watch fires the signal at once, the hard signal (thread termination) after a 500 ms grace.
      assert.ok(e.atMs - t0 < 1_500, `${e.task} stopped ${e.atMs - t0} ms after the cancel`);
    }
    const mine = () => results.filter((r) => r.flowId === id);
    assert.deepEqual(
      mine()
        .map((r) => [r.task, r.status])
        .sort(),
      [
        ['sleeper', TaskStatus.CANCELLED],
        ['spinner', TaskStatus.CANCELLED],
      ],
    );

    // A fresh thread replaced the terminated one: a flow needing both threads runs on a new thread id.
    const next = await submit('threads', { chaos: { busyMs: 1_000 } });
    await cb.waitForFlows([next], 30_000);
    const nb = cb.byFlow(next)[0]!.body as Body;
    assert.equal(nb.status, 'succeeded');
    const nextThreads = ['busy1', 'busy2', 'busy3', 'busy4'].map((t) => nb.results[t]!.threadId as number);
    assert.ok(
      nextThreads.some((t) => !firstThreads.has(t)),
      `threads before ${[...firstThreads].join()}, after ${nextThreads.join()}`,
    );

    // Past the time the work would have taken: still no success, one callback, the later stage never ran.
    await sleep(Math.max(0, t0 + 10_500 - Date.now()));
    assert.deepEqual(
      mine().filter((r) => r.status === TaskStatus.SUCCEEDED),
      [],
    );
    assert.equal(cb.byFlow(id).length, 1);
    assert.equal(cb.byFlow(id)[0]!.body.status, 'cancelled');
    const v = await view(id);
    assert.equal(v.status, 'cancelled');
    assert.equal(v.stages[1]!.tasks[0]!.dispatchedAt, null, 'the second stage was never dispatched');
    // The orchestrator drops the late cancelled results of the ended flow quietly.
    const loud = readFileSync(join(j.logDir, 'orchestrator-0.log'), 'utf8')
      .split('\n')
      .filter((l) => l.includes(id))
      .filter((l) => {
        try {
          return (JSON.parse(l) as { level: number }).level >= 40;
        } catch {
          return false;
        }
      });
    assert.deepEqual(loud, []);
  });

  test("cancel whose control has not arrived (only the flag is set): the workers' CANCELLED results end the flow cancelled, never partial, and nothing after them runs", async () => {
    const id = await submit('cancelme', { chaos: { slowMs: 10_000, busyMs: 10_000, ignoreSignal: true } });
    await until('both tasks dispatched', async () => (await view(id)).stages?.[0]?.tasks.every((t) => t.status === 'dispatched') === true);
    await sleep(1_000);
    // What ingest does first on a cancel (the flag the workers watch); its control message is left out, as
    // if it were still on its way or ingest had died between the two steps.
    const flags = await j.nc.jetstream().views.kv('jetflow_cancel');
    await flags.put(id, new TextEncoder().encode('flag only'));
    await cb.waitForFlows([id], 10_000);
    const got = cb.byFlow(id);
    assert.equal(got.length, 1);
    assert.equal(got[0]!.body.status, 'cancelled');
    const v = await view(id);
    assert.equal(v.status, 'cancelled');
    assert.deepEqual(
      v.stages[0]!.tasks.map((t) => t.status),
      ['cancelled', 'cancelled'],
    );
    assert.equal(v.stages[1]!.tasks[0]!.dispatchedAt, null, 'the second stage was never dispatched');
    assert.match(((await (await j.api(`/v1/flows/${id}`)).json()) as { endReason: string }).endReason, /flag only/);
  });
});
