import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { waitForHttp, type ServiceName } from '@jetflow/stack';
import { assertExactlyOnce, jetflowPerSuite, sampleSubmission, steadyLoad, type CallbackReceiver, type JetflowUnderTest } from '@jetflow/testing';

describe('kill -9 of every service and a broker restart under steady load: every accepted flow ends exactly once', () => {
  let j: JetflowUnderTest;
  let cb: CallbackReceiver;
  jetflowPerSuite((s) => ({ j, cb } = s));

  const bounce = async (s: ServiceName, downMs = 300) => {
    await j.stack.kill(s, 0, 'SIGKILL');
    await sleep(downMs);
    j.stack.restart(s);
  };

  test('kill -9 the orchestrator three times at different points, and each worker and ingest once', async (t) => {
    const load = steadyLoad(j, () => sampleSubmission(cb.url), { rate: 20, durationMs: 14_000, prefix: 'kill' });
    await sleep(1_500);
    await bounce('orchestrator', 100); // early: flows mid stage 1
    await sleep(2_000);
    await bounce('dataset-generator');
    await sleep(1_200);
    await bounce('orchestrator', 1_000); // longer outage: results pile up on the partitions
    await sleep(1_500);
    await bounce('analyst');
    await sleep(1_000);
    await bounce('ingest');
    await waitForHttp(`${j.http}/readyz`);
    await sleep(700);
    await bounce('orchestrator', 0); // immediate restart: takes its leases straight back
    const res = await load.done;
    assert.ok(res.accepted.length > 150, `accepted ${res.accepted.length}`);
    const { statuses, strays, repeats } = await assertExactlyOnce(j, cb, res.accepted);
    t.diagnostic(`accepted ${res.accepted.length}, ${JSON.stringify(statuses)}, repeated deliveries ${repeats}`);
    assert.equal(strays, 0, 'no callback for a flow nobody submitted');
    assert.ok((statuses.succeeded ?? 0) > 0);
  });

  test('restart nats-server mid-load: no accepted flow is lost', async () => {
    const before = cb.accepted.length;
    const load = steadyLoad(j, () => sampleSubmission(cb.url), { rate: 20, durationMs: 8_000, prefix: 'nats' });
    await sleep(3_000);
    await j.nats!.kill();
    await sleep(1_000);
    await j.nats!.restart();
    const res = await load.done;
    assert.ok(res.accepted.length > 80, `accepted ${res.accepted.length}`);
    assert.ok(res.retries > 0, 'some submissions were refused while the broker was down and retried');
    await assertExactlyOnce(j, cb, res.accepted);
    assert.ok(cb.accepted.length >= before + res.accepted.length);
  });
});
