/**
 * Fair admission under overload: tenant A floods (10× its share and more) while tenant B submits at a low
 * rate; B's flows must keep their latency within 2× of an idle run of B alone. The flows are CPU-cheap and
 * take a fixed 200 ms (a `slow` test task in noop mode), and the orchestrator runs at most 10 at once, so the
 * system's capacity is bounded (≤ 50 flows/s) by admission, not by this machine's CPU: what decides B's
 * latency is whether its flows wait behind A's backlog in the ingest stream (they did with one FIFO consumer).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CONSUMERS, STREAMS } from '@jetflow/messaging';
import { jetflowPerSuite, type CallbackReceiver, type JetflowUnderTest } from '@jetflow/testing';

const MAX_RUNNING = 10;
const FLOW_MS = 200;
/** Upper bound of the system's throughput: every flow holds one of MAX_RUNNING slots for at least FLOW_MS. */
const CAPACITY_BOUND = (MAX_RUNNING * 1000) / FLOW_MS;
/** A's offered rate: 10× its equal share of that bound, and then some. */
const A_RATE = 6 * CAPACITY_BOUND;
const B_RATE = 4;
const B_FLOWS = 50;
const B_KEY = 'other-key-0123456789abcdef';

const pct = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
};

describe("fair admission: one tenant's burst does not starve another", () => {
  let j: JetflowUnderTest;
  let cb: CallbackReceiver;
  jetflowPerSuite((s) => ({ j, cb } = s), {
    jetflow: {
      aws: false,
      env: { JETFLOW_FLOWS_FILE: resolve('test/fixtures/paced-flows.json'), JETFLOW_TEST_PLUGINS: '1', JETFLOW_TASK_MODE: 'noop', JETFLOW_MAX_RUNNING_FLOWS: String(MAX_RUNNING) },
      serviceEnv: { analyst: { JETFLOW_TASK_SUBJECTS: 'jetflow.task.analyst.>,jetflow.task.test.>' } },
    },
  });

  const body = () => ({ flow: 'paced', input: { chaos: { slowMs: FLOW_MS } }, callbackUrl: cb.url });

  /** B (tenant other) submits over HTTP at B_RATE; resolves with each flow's latency, submission to end (the callback's durationMs). */
  async function runB(label: string): Promise<number[]> {
    const ids: string[] = [];
    const t0 = Date.now();
    for (let i = 0; i < B_FLOWS; i++) {
      const wait = t0 + (i * 1000) / B_RATE - Date.now();
      if (wait > 0) await sleep(wait);
      const r = await fetch(`${j.http}/v1/flows`, { method: 'POST', headers: { authorization: `Bearer ${B_KEY}`, 'content-type': 'application/json' }, body: JSON.stringify(body()) });
      assert.equal(r.status, 202, `${label}: B's submission ${i}: ${await r.clone().text()}`);
      ids.push(((await r.json()) as { flowId: string }).flowId);
    }
    await cb.waitForFlows(ids, 60_000);
    return ids.map((id) => {
      const [d] = cb.byFlow(id);
      assert.equal(d!.body.status, 'succeeded');
      assert.equal(d!.body.tenant, 'other');
      return d!.body.durationMs as number;
    });
  }

  test("with tenant A flooding at 10× its share, tenant B's p50 and p90 stay within 2× of an idle run", async () => {
    const idle = await runB('idle');
    const idleP50 = pct(idle, 0.5);
    const idleP90 = pct(idle, 0.9);
    assert.ok(idleP50 >= FLOW_MS, `an idle flow takes its ${FLOW_MS} ms task at least (p50 ${idleP50} ms)`);

    // A floods through the NATS door: far more than the system can run, for as long as B submits.
    const js = j.nc.jetstream();
    let flooding = true;
    let published = 0;
    let refused = 0;
    const payload = JSON.stringify(body());
    const flood = (async () => {
      const t0 = Date.now();
      const acks: Array<Promise<unknown>> = [];
      while (flooding) {
        const due = Math.floor(((Date.now() - t0) / 1000) * A_RATE);
        for (; published < due; published++) acks.push(js.publish('jetflow.ingest.default.paced', payload).catch(() => void refused++));
        await sleep(20);
      }
      await Promise.all(acks);
    })();
    await sleep(3_000); // A's backlog builds and its flows hold every slot
    const from = Date.now();
    const loaded = await runB('flood');
    const windowS = (Date.now() - from) / 1000;
    const completedA = cb.accepted.filter((d) => d.body.tenant === 'default' && d.at >= from).length;
    const waitingA = (await (await j.nc.jetstreamManager()).consumers.info(STREAMS.ingest, CONSUMERS.ingest('default'))).num_pending;
    flooding = false;
    await flood;

    const capacity = (completedA + B_FLOWS) / windowS;
    const offeredA = published / (windowS + 3);
    const p50 = pct(loaded, 0.5);
    const p90 = pct(loaded, 0.9);
    const report = `idle p50 ${idleP50} p90 ${idleP90} ms; under A's flood p50 ${p50} p90 ${p90} ms; A offered ${offeredA.toFixed(0)}/s, system completed ${capacity.toFixed(1)}/s (A ${completedA} in ${windowS.toFixed(1)} s), ${waitingA} of A's still queued, ${refused} publishes refused`;
    console.log(report);
    assert.equal(refused, 0, report);
    assert.ok(offeredA >= 10 * (capacity / 2), `A submitted at least 10× its equal share: ${report}`);
    assert.ok(waitingA > 1_000, `the system was overloaded the whole time: A's backlog was still there (${report})`);
    assert.ok(completedA > capacity * windowS * 0.5, `A kept most of the capacity B did not use (${report})`);
    assert.ok(p50 <= 2 * idleP50, `B's p50 within 2× of idle: ${report}`);
    assert.ok(p90 <= 2 * idleP90, `B's p90 within 2× of idle: ${report}`);
  });
});
