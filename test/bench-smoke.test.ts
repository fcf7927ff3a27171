import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runBench, formatCompare, readResults, type BenchResult, type StepResult } from '../bench/run.js';
import { changePct } from '../bench/lib/compare.js';
import { parseCommand } from '../bench/lib/options.js';
import { RESULTS_FORMAT } from '../bench/lib/results.js';

const PROCS = ['nats-server', 'ingest', 'orchestrator', 'dataset-generator', 'analyst'];

/** What every measured step must have: every flow once, messages, KV writes, CPU and RSS per process. */
function assertMeasured(s: StepResult, flows: number) {
  const what = `${s.door} ${s.kind}${s.afterBurst ? ' after burst' : ''}`;
  assert.equal(s.submitted, flows, what);
  assert.equal(s.accepted, flows, what);
  assert.equal(s.completed, flows, what);
  assert.equal(s.latencyMs.n, flows, what);
  assert.ok(s.latencyMs.p50 > 0 && s.latencyMs.p50 <= s.latencyMs.p99 && s.latencyMs.p99 <= s.latencyMs.max, what);
  assert.deepEqual(s.exactlyOnce, { ok: true, missing: 0, duplicates: 0, deliveryIdMismatch: 0, notSucceeded: 0 }, what);
  for (const p of PROCS) assert.ok((s.peakRssMb[p] ?? 0) > 5, `${what}: rss of ${p}`);
}

function assertCosts(s: StepResult) {
  const what = `${s.door} ${s.kind}`;
  // At least: the submission, six tasks, six results and the callback job are stored per flow. Counts are
  // divided by the flows completed between a step's two snapshots, and a short step also completes a few
  // flows whose messages were stored before its first snapshot (the previous step's tail): allow for that.
  const edge = 0.8;
  assert.ok(s.jsMsgsPerFlow >= 14 * edge, `${what}: js msgs/flow ${s.jsMsgsPerFlow}`);
  assert.ok((s.streamMsgsPerFlow.JETFLOW_TASKS ?? 0) >= 6 * edge, `${what}: task msgs/flow ${s.streamMsgsPerFlow.JETFLOW_TASKS}`);
  assert.ok(s.kvWritesPerFlow >= 1, `${what}: kv writes/flow ${s.kvWritesPerFlow}`);
  for (const p of PROCS) assert.ok(Number.isFinite(s.cpuMsPerFlow.byProcess[p]), `${what}: cpu of ${p}`);
  assert.ok(s.cpuMsPerFlow.system > 0, what);
  assert.ok((s.cpuMsPerFlow.byProcess.orchestrator ?? 0) > 0, what);
  assert.ok(s.natsMsgsPerFlow.orchestrator && s.natsMsgsPerFlow.orchestrator.in > 0, what);
}

// The benchmark's machinery, not its numbers: short noop runs through the real services (NATS with
// identities, history on) on every door must measure something on every axis and see every flow
// complete exactly once. No timing assertions.
test('bench: every door (NATS JSON and protobuf, HTTP, gRPC), a burst and the step after it, idle CPU, exactly-once', { timeout: 240_000 }, async () => {
  const r = await runBench({
    quick: true,
    mode: 'noop',
    doors: ['nats', 'nats-proto', 'http', 'grpc'],
    rates: [50],
    duration: 2,
    saturation: false,
    burst: 100,
    burstRate: 50,
    burstSeconds: 1,
    drainSeconds: 20,
    out: '',
    progress: false,
    maxSeconds: 220,
    ceilingSeconds: 0.5,
  });
  assert.equal(r.aborted, null, String(r.aborted));
  assert.equal(r.format, RESULTS_FORMAT);
  for (const door of ['nats', 'nats-proto', 'http', 'grpc'] as const) {
    const steps = r.steps.filter((s) => s.door === door);
    assert.deepEqual(
      steps.map((s) => [s.kind, s.offered, s.afterBurst, s.history]),
      [
        ['open', 50, false, 'on'],
        ['burst', null, false, 'on'],
        ['open', 50, true, 'on'],
      ],
      door,
    );
    const [open, burst, after] = steps as [StepResult, StepResult, StepResult];
    assertMeasured(open, 100);
    assertCosts(open);
    assert.ok(open.completedPerSec > 0);
    // HTTP and gRPC go through ingest, which publishes each submission; the NATS door bypasses it.
    const ingestIn = open.natsMsgsPerFlow.ingest?.in ?? 0;
    if (door === 'http' || door === 'grpc') assert.ok(ingestIn >= 1, `${door}: ingest published ${ingestIn} msgs/flow`);
    else assert.ok(ingestIn < 0.5, `${door}: ingest published ${ingestIn} msgs/flow`);
    assertMeasured(burst, 100);
    assert.ok(burst.completedPerSec > 0);
    assert.ok(Number.isNaN(burst.cpuMsPerFlow.system), 'a burst has no per-flow costs (its snapshots bracket the sending only)');
    assertMeasured(after, 50);
    assertCosts(after);
  }
  assert.equal(r.stacks.length, 1);
  const idle = r.stacks[0]!;
  assert.deepEqual([idle.mode, idle.history], ['noop', 'on']);
  for (const p of PROCS) assert.ok(Number.isFinite(idle.idleCpuPct[p]) && idle.idleCpuPct[p]! >= 0, `idle cpu of ${p}`);
  // History on runs the local DynamoDB (and S3): measured, but outside the system's figures.
  assert.ok(Number.isFinite(idle.idleCpuPct['local-aws']), 'local AWS process tracked');
  // nats-server's side of idleness: messages (pulls, heartbeats, reports, renewals) and JetStream API requests.
  assert.ok((idle.idleMsgsPerSec ?? 0) > 0 && Number.isFinite(idle.idleApiPerSec), `idle nats-server figures: ${idle.idleMsgsPerSec} msgs/s, ${idle.idleApiPerSec} API/s`);
  assert.ok(r.ceiling && r.ceiling.jsPubConsumePerSec > 0 && r.ceiling.kvUpdatePerSec > 0);
  assert.ok(r.steps[0]!.utilisation && r.steps[0]!.utilisation.combined > 0);
  assert.equal(r.exactlyOnce.ok, true);
  assert.equal(r.exactlyOnce.accepted, 4 * 250 + 4 * 25, 'every flow, warm-ups included');
  assert.ok(r.targets.length > 0);
});

test('bench: history off starts no local DynamoDB and still completes every flow once', { timeout: 150_000 }, async () => {
  const r = await runBench({
    quick: true,
    mode: 'noop',
    history: ['off'],
    rates: [50],
    duration: 1,
    saturation: false,
    ceiling: false,
    warmupSeconds: 0,
    out: '',
    progress: false,
    maxSeconds: 130,
  });
  assert.equal(r.aborted, null, String(r.aborted));
  assert.equal(r.steps.length, 1);
  assert.equal(r.steps[0]!.history, 'off');
  assertMeasured(r.steps[0]!, 50);
  assert.equal(r.stacks[0]!.history, 'off');
  assert.equal(r.stacks[0]!.idleCpuPct['local-aws'], undefined);
  assert.equal(r.steps[0]!.peakRssMb['local-aws'], undefined);
});

function fakeResult(over: { p99: number; cpu: number; orch: number; js: number }): BenchResult {
  const step = {
    mode: 'noop',
    history: 'on',
    door: 'nats',
    kind: 'open',
    afterBurst: false,
    offered: 100,
    window: null,
    completedPerSec: 100,
    latencyMs: { n: 1000, p50: 10, p95: 15, p99: over.p99, max: 50, mean: 11 },
    cpuMsPerFlow: { system: over.cpu, driver: 0.1, byProcess: { orchestrator: over.orch } },
    jsMsgsPerFlow: over.js,
    kvWritesPerFlow: 4,
    kvReadsPerFlow: 0,
    servicesPeakRssMb: 300,
    servicesPeakPssMb: 200,
  };
  return {
    format: RESULTS_FORMAT,
    meta: { startedAt: '2026-01-01T00:00:00Z', node: 'v20', natsServer: '2.9.10', cpus: 2 },
    ceiling: null,
    stacks: [{ mode: 'noop', history: 'on', idleCpuPct: {}, idleSystemCpuPct: 2, idleSeconds: 5, idleRssMb: {} }],
    steps: [step, { ...step, offered: 300 }],
  } as unknown as BenchResult;
}

test('bench --compare: two results files side by side, every figure with its change in %; bad files refused by name', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bench-compare-'));
  const a = join(dir, 'before.json');
  const b = join(dir, 'after.json');
  writeFileSync(a, JSON.stringify(fakeResult({ p99: 40, cpu: 2, orch: 0.8, js: 23 })));
  const after = fakeResult({ p99: 30, cpu: 2.5, orch: 0.8, js: 20 });
  after.steps.pop(); // 300/s only in A
  writeFileSync(b, JSON.stringify(after));
  const out = formatCompare(readResults(a), readResults(b), [a, b]);
  const line = (figure: string) => out.split('\n').find((l) => l.includes('100/s') && l.includes(` ${figure} `));
  assert.match(line('p99 ms') ?? '', /40\.00\s+30\.00\s+-25\.0 %/);
  assert.match(line('cpu ms/flow') ?? '', /2\.00\s+2\.50\s+\+25\.0 %/);
  assert.match(line('js msg/flow') ?? '', /23\.00\s+20\.00\s+-13\.0 %/);
  assert.match(out, /orch ms\/flow\s+0\.80\s+0\.80\s+0\.0 %/);
  assert.match(out, /idle\s+cpu % of a core\s+2\.00\s+2\.00\s+0\.0 %/);
  assert.match(out, /Only in A: noop nats history on 300\/s/);
  assert.equal(changePct(0, 5), undefined);
  assert.equal(changePct(2, undefined), undefined);

  // Through the CLI, as `npm run bench -- --compare A B` runs it.
  const cli = spawnSync(process.execPath, ['--import', 'tsx', 'bench/run.ts', '--compare', a, b], { encoding: 'utf8' });
  assert.equal(cli.status, 0, cli.stderr);
  assert.match(cli.stdout, /-25\.0 %/);

  const bad = join(dir, 'bad.json');
  writeFileSync(bad, JSON.stringify({ format: 1, steps: [] }));
  assert.throws(() => readResults(bad), new RegExp(`${bad.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: results format 1, expected ${RESULTS_FORMAT}`));
  writeFileSync(bad, '{not json');
  assert.throws(() => readResults(bad), /bad\.json: not JSON/);
  writeFileSync(bad, JSON.stringify({ format: RESULTS_FORMAT, steps: [{ mode: 'noop' }], stacks: [] }));
  assert.throws(() => readResults(bad), /bad\.json: steps\[0\]\.history is not a string/);
  const one = spawnSync(process.execPath, ['--import', 'tsx', 'bench/run.ts', '--compare', a], { encoding: 'utf8' });
  assert.equal(one.status, 2);
  assert.match(one.stderr, /--compare: expected two results files/);
});

test('bench CLI: doors, history and burst flags parsed; bad values named', () => {
  assert.deepEqual(parseCommand(['--door', 'nats,grpc', '--history', 'on,off', '--burst', '0']), { run: { doors: ['nats', 'grpc'], history: ['on', 'off'], burst: 0, build: true } });
  assert.throws(() => parseCommand(['--door', 'nats,smtp']), /--door: expected nats, nats-proto, http, grpc \(comma-separated\), got "smtp"/);
  assert.throws(() => parseCommand(['--history', 'maybe']), /--history: expected on, off/);
  assert.throws(() => parseCommand(['--burst', '1.5']), /--burst: expected a whole number/);
  assert.throws(() => parseCommand(['--rates', '100,x']), /--rates: expected a positive number, got "x"/);
});
