import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { BUCKETS, STREAMS } from '@jetflow/messaging';
import { TEST_SECRET, assertExactlyOnce, sampleSubmission, jetflowPerSuite, steadyLoad, type CallbackReceiver, type JetflowUnderTest, type NatsClusterHandle } from '@jetflow/testing';

describe('a three-node NATS cluster (R3) loses a stream leader twice under steady load: every accepted flow ends exactly once', () => {
  let cluster: NatsClusterHandle;
  let j: JetflowUnderTest;
  let cb: CallbackReceiver;
  // Services keep running through a node's death (they reconnect to the others); no restarts on exit,
  // so a service that crashes on it fails the test instead of being papered over.
  jetflowPerSuite(
    (s) => {
      ({ j, cb } = s);
      cluster = s.cluster!;
    },
    { cluster: { size: 3 }, receiver: { secret: TEST_SECRET } },
  );

  test('kill -9 the node leading JETFLOW_RESULTS, restart it, then the node leading JETFLOW_TASKS', async (t) => {
    t.diagnostic(`service logs in ${j.logDir}`);
    const jsm = await j.nc.jetstreamManager();
    for (const s of [STREAMS.ingest, STREAMS.tasks, STREAMS.results, STREAMS.callbacks, 'KV_jetflow_flows']) {
      assert.equal((await jsm.streams.info(s)).config.num_replicas, 3, `${s} is R3`);
    }
    // A leader election stalls writes for a few seconds: give flows room to finish rather than go partial.
    const load = steadyLoad(j, (i) => sampleSubmission(cb.url, { deadlineMs: 30_000, metadata: { i: String(i) } }), { rate: 15, durationMs: 32_000, prefix: 'cluster', retryForMs: 40_000 });
    const outage = async (stream: string) => {
      const victim = await cluster.streamLeader(stream);
      const led: string[] = [];
      for (const s of [...Object.values(STREAMS), ...Object.values(BUCKETS).map((b) => `KV_${b}`)]) if ((await jsm.streams.info(s)).cluster?.leader === victim.name) led.push(s);
      t.diagnostic(`${stream} is led by ${victim.name} (leader of ${led.join(', ')}): kill -9`);
      await victim.kill('SIGKILL');
      await sleep(10_000);
      const restarted = Date.now();
      await victim.restart();
      const next = await cluster.streamLeader(stream);
      t.diagnostic(`${victim.name} back and caught up in ${Date.now() - restarted} ms; ${stream} now led by ${next.name}`);
    };
    await sleep(3_000);
    await outage(STREAMS.results);
    await sleep(3_000);
    await outage(STREAMS.tasks);
    const res = await load.done;
    t.diagnostic(`accepted ${res.accepted.length}, gave up ${res.gaveUp}, submission retries ${res.retries}`);
    assert.equal(res.gaveUp, 0, 'every submission was accepted within its retry budget');
    assert.ok(res.accepted.length > 300, `accepted ${res.accepted.length}`);
    const { statuses, strays, repeats } = await assertExactlyOnce(j, cb, res.accepted).catch(async (err: Error) => {
      t.diagnostic(await consumerReport(j));
      throw err;
    });
    t.diagnostic(`outcomes ${JSON.stringify(statuses)}, repeated deliveries ${repeats}, stray callbacks ${strays}`);
    assert.equal(strays, 0, 'no callback for a flow nobody submitted');
    assert.ok((statuses.succeeded ?? 0) > 0);
    for (const p of j.stack.procs) assert.equal(p.proc.exitCode, null, `${p.name}#${p.index} survived the node deaths`);
  });
});

/** Each consumer's backlog: what a stuck flow is waiting in. */
async function consumerReport(j: JetflowUnderTest): Promise<string> {
  const jsm = await j.nc.jetstreamManager();
  const lines: string[] = [];
  for (const stream of [STREAMS.ingest, STREAMS.tasks, STREAMS.results, STREAMS.callbacks]) {
    try {
      const si = await jsm.streams.info(stream);
      lines.push(`${stream}: ${si.state.messages} messages, leader ${si.cluster?.leader ?? '-'}`);
      for (const c of await jsm.consumers.list(stream).next()) {
        lines.push(`  ${c.name}: pending ${c.num_pending}, ack pending ${c.num_ack_pending}, redelivered ${c.num_redelivered}, waiting ${c.num_waiting}, leader ${c.cluster?.leader ?? '-'}`);
      }
    } catch (err) {
      lines.push(`${stream}: ${(err as Error).message}`);
    }
  }
  return lines.join('\n');
}
