import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runBench } from '../bench/run.js';

// The benchmark's machinery, not its numbers: a short noop run through the real services must
// measure something on every axis and see every flow complete exactly once. No timing assertions.
test('bench: a short noop run measures throughput, latency, messages, CPU and RSS, and checks exactly-once', { timeout: 90_000 }, async () => {
  const r = await runBench({ quick: true, mode: 'noop', rates: [50], duration: 2, saturation: false, out: '', progress: false, maxSeconds: 80, ceilingSeconds: 0.5 });
  assert.equal(r.aborted, null, String(r.aborted));
  assert.equal(r.steps.length, 1);
  const s = r.steps[0]!;
  assert.equal(s.mode, 'noop');
  assert.equal(s.kind, 'open');
  assert.equal(s.offered, 50);
  assert.equal(s.submitted, 100);
  assert.equal(s.accepted, 100);
  assert.equal(s.completed, 100);
  assert.ok(s.completedPerSec > 0);
  assert.equal(s.latencyMs.n, 100);
  assert.ok(s.latencyMs.p50 > 0 && s.latencyMs.p50 <= s.latencyMs.p99 && s.latencyMs.p99 <= s.latencyMs.max);
  assert.deepEqual(s.exactlyOnce, { ok: true, missing: 0, duplicates: 0, deliveryIdMismatch: 0, notSucceeded: 0 });
  // At least: the submission, six tasks, six results and the callback job are stored per flow.
  assert.ok(s.jsMsgsPerFlow >= 14, `js msgs/flow ${s.jsMsgsPerFlow}`);
  assert.ok((s.streamMsgsPerFlow.JETFLOW_TASKS ?? 0) >= 6);
  assert.ok(s.kvWritesPerFlow >= 1, `kv writes/flow ${s.kvWritesPerFlow}`);
  for (const p of ['nats-server', 'ingest', 'orchestrator', 'dataset-generator', 'analyst']) {
    assert.ok(p in s.cpuMsPerFlow.byProcess, `cpu of ${p}`);
    assert.ok((s.peakRssMb[p] ?? 0) > 5, `rss of ${p}`);
  }
  assert.ok(s.cpuMsPerFlow.system > 0);
  assert.ok((s.cpuMsPerFlow.byProcess.orchestrator ?? 0) > 0);
  assert.ok(s.natsMsgsPerFlow.orchestrator && s.natsMsgsPerFlow.orchestrator.in > 0);
  assert.ok(r.ceiling && r.ceiling.jsPubConsumePerSec > 0 && r.ceiling.kvUpdatePerSec > 0);
  assert.ok(s.utilisation && s.utilisation.combined > 0);
  assert.equal(r.exactlyOnce.ok, true);
  assert.equal(r.exactlyOnce.accepted >= 100, true);
  assert.ok(r.targets.length > 0);
});
