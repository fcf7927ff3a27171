import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { STREAMS } from '@jetflow/messaging';
import { TEST_SECRET, assertExactlyOnce, sampleSubmission, jetflowPerSuite, steadyLoad, type CallbackReceiver, type JetflowUnderTest, type NatsClusterHandle } from '@jetflow/testing';

/**
 * Beyond what R3 promises to stay available through: two of three nodes down at once, so no stream has
 * a quorum for a while, and when they come back streams regain leaders one by one (results flowing while
 * the state bucket still has none). Nothing acknowledged may be lost and no flow may be given up on:
 * this once dead-lettered results as "poison" after five failed deliveries and left their flows running.
 * The second node is stopped gracefully (a drain for maintenance) so the broker itself loses nothing.
 */
describe('a three-node NATS cluster (R3) loses its quorum for 15 s under load: every accepted flow still ends exactly once', () => {
  let cluster: NatsClusterHandle;
  let j: JetflowUnderTest;
  let cb: CallbackReceiver;
  jetflowPerSuite(
    (s) => {
      ({ j, cb } = s);
      cluster = s.cluster!;
    },
    { cluster: { size: 3 }, receiver: { secret: TEST_SECRET } },
  );

  test('kill -9 the node leading JETFLOW_RESULTS and stop another; restart both', async (t) => {
    t.diagnostic(`service logs in ${j.logDir}`);
    const load = steadyLoad(j, (i) => sampleSubmission(cb.url, { deadlineMs: 60_000, metadata: { i: String(i) } }), { rate: 10, durationMs: 25_000, prefix: 'quorum', retryForMs: 45_000 });
    await sleep(4_000);
    const crashed = await cluster.streamLeader(STREAMS.results);
    const drained = cluster.nodes.find((n) => n !== crashed)!;
    t.diagnostic(`kill -9 ${crashed.name}, stop ${drained.name}`);
    await crashed.kill('SIGKILL');
    await drained.kill('SIGTERM');
    await sleep(15_000);
    await crashed.restart();
    await drained.restart();
    const res = await load.done;
    t.diagnostic(`accepted ${res.accepted.length}, gave up ${res.gaveUp}, submission retries ${res.retries}`);
    assert.ok(res.accepted.length > 150, `accepted ${res.accepted.length}`);
    assert.ok(res.retries > 0, 'submissions were refused while there was no quorum, and retried');
    const { statuses, strays, repeats } = await assertExactlyOnce(j, cb, res.accepted);
    t.diagnostic(`outcomes ${JSON.stringify(statuses)}, repeated deliveries ${repeats}, stray callbacks ${strays}`);
    assert.equal(strays, 0, 'no callback for a flow nobody submitted');
    const dlq = await (await j.nc.jetstreamManager()).streams.info(STREAMS.dlq);
    assert.equal(dlq.state.messages, 0, 'nothing dead-lettered for the broker being down');
    for (const p of j.stack.procs) assert.equal(p.proc.exitCode, null, `${p.name}#${p.index} survived`);
  });
});
