/**
 * The worker conformance kit (test/conformance/kit.ts, docs/WORKERS.md) on a real nats-server with NATS
 * identities: @jetflow/worker serving the conventional behaviours as a `worker:conformance` process passes
 * every case, the kit killing and restarting it; and workers that break one rule each (a hand-written
 * one in test/conformance/raw-worker.ts) fail the case that names the rule.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BEHAVIOURS, CASE_NAMES, CONFORMANCE_SUBJECTS, formatReport, prepareConformance, runConformance, type CaseResult } from './conformance/kit.js';
import { startRawWorker, type RawWorkerFault } from './conformance/raw-worker.js';
import { startNatsServer, testNatsAuth, type NatsServerHandle, type TestNatsAuth } from '@jetflow/testing';

// A definition naming the conformance subjects, so the worker identity's grants can be derived for them.
const FLOWS = [
  {
    name: 'conformance',
    version: 1,
    deadlineMs: 60_000,
    stages: [
      {
        name: 'only',
        onFailure: 'continue',
        tasks: Object.entries(BEHAVIOURS).map(([k, subject]) => ({
          name: k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`),
          subject,
          softLimitMs: 10_000,
          hardLimitMs: 15_000,
          maxAttempts: 3,
          backoff: { initialMs: 200, maxMs: 1_000, multiplier: 2 },
        })),
      },
    ],
  },
];

interface WorkerProc {
  proc: ChildProcess;
  ready: Promise<void>;
  exited: Promise<void>;
  stderr: string[];
}

describe('worker conformance kit', () => {
  let dir: string;
  let nats: NatsServerHandle;
  let auth: TestNatsAuth;
  let worker: WorkerProc | undefined;

  const spawnWorker = (): WorkerProc => {
    const proc = spawn(process.execPath, ['--import', 'tsx', 'test/conformance/sdk-worker.ts'], {
      env: { ...process.env, NATS_URL: nats.url, ...auth.env('worker:conformance'), JETFLOW_PARTITIONS: '8', LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const stderr: string[] = [];
    proc.stderr.on('data', (d: Buffer) => stderr.push(d.toString()));
    const exited = new Promise<void>((r) => proc.once('exit', () => r()));
    const ready = new Promise<void>((resolve, reject) => {
      let out = '';
      proc.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('"event":"ready"')) resolve();
      });
      void exited.then(() => reject(new Error(`the conformance worker exited before it was ready: ${stderr.join('')}`)));
    });
    return { proc, ready, exited, stderr };
  };
  const killWorker = async () => {
    if (!worker) return;
    worker.proc.kill('SIGKILL');
    await worker.exited;
    worker = undefined;
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'jetflow-conformance-'));
    const flowsFile = join(dir, 'flows.json');
    writeFileSync(flowsFile, JSON.stringify(FLOWS));
    auth = testNatsAuth({ JETFLOW_FLOWS_FILE: flowsFile }, {}, { workers: { conformance: CONFORMANCE_SUBJECTS } });
    nats = await startNatsServer({ config: auth.config, connect: auth.options('admin') });
    // The kit plays the orchestrator, which provisions the task consumers: a worker identity may not.
    await prepareConformance({ servers: nats.url, connection: auth.options('admin') });
  });
  after(async () => {
    await killWorker();
    await nats?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('@jetflow/worker passes every case, as a worker:conformance process the kit kills and restarts', async () => {
    worker = spawnWorker();
    await worker.ready;
    const seen: CaseResult[] = [];
    const report = await runConformance({
      servers: nats.url,
      connection: auth.options('admin'),
      worker: {
        kill: killWorker,
        start: async () => {
          worker = spawnWorker();
          await worker.ready;
        },
      },
      onCase: (c) => seen.push(c),
    });
    await killWorker();
    assert.deepEqual(
      report.cases.map((c) => c.name),
      CASE_NAMES,
      'every case ran, none skipped',
    );
    assert.deepEqual(
      report.cases.filter((c) => c.outcome !== 'passed').map((c) => `${c.name}: ${c.message}`),
      [],
      formatReport(report),
    );
    assert.equal(report.passed, true);
    assert.equal(seen.length, CASE_NAMES.length, 'onCase told of each case');
  });

  const broken: Array<{ fault: RawWorkerFault; failing: string; message: RegExp }> = [
    { fault: 'drop-token', failing: 'echo', message: /result_token is "".*must be the Task's result_token/ },
    { fault: 'ack-before-publish', failing: 'result-before-ack', message: /acked \d+ ms before its result was published/ },
    { fault: 'random-msg-id', failing: 'echo', message: /Nats-Msg-Id is ".*"; it must be .*:echo:result/ },
    { fault: 'wrong-partition', failing: 'echo', message: /published to jetflow\.result\.\d\.\S+; it belongs on jetflow\.result\.\d\./ },
  ];
  for (const b of broken) {
    test(`the kit fails a worker that breaks a rule: ${b.fault} fails ${b.failing}`, async () => {
      await killWorker();
      const nc = await auth.connect('worker:conformance', [nats.url]);
      const raw = await startRawWorker(nc, { partitions: 8, fault: b.fault });
      try {
        const report = await runConformance({ servers: nats.url, connection: auth.options('admin'), only: [b.failing] });
        assert.equal(report.passed, false, formatReport(report));
        const c = report.cases.find((x) => x.name === b.failing)!;
        assert.equal(c.outcome, 'failed');
        assert.match(c.message!, b.message);
      } finally {
        await raw.stop();
        await nc.close();
      }
    });
  }

  test('the same hand-written worker without a fault passes the cases it serves (echo and result-before-ack)', async () => {
    const nc = await auth.connect('worker:conformance', [nats.url]);
    const raw = await startRawWorker(nc, { partitions: 8, fault: 'none' });
    try {
      const report = await runConformance({ servers: nats.url, connection: auth.options('admin'), only: ['echo', 'result-before-ack'] });
      assert.equal(report.passed, true, formatReport(report));
    } finally {
      await raw.stop();
      await nc.close();
    }
  });

  test('an unknown case name is refused, naming the cases', async () => {
    await assert.rejects(runConformance({ servers: nats.url, connection: auth.options('admin'), only: ['nope'] }), /no case named "nope" \(cases: echo, /);
  });
});
