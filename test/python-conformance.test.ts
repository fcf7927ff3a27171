/**
 * The worker conformance kit (test/conformance/kit.ts, docs/WORKERS.md) against a Python worker: jetflow_worker
 * (sdk/python) serving the conventional behaviours through the gRPC worker door of a real ingest process, on a
 * nats-server with NATS identities. The kit plays the orchestrator (no orchestrator runs) and watches only the
 * bus, so what it checks is what the door does on the worker's behalf; it kills -9 and restarts the Python
 * process for its kill-worker case.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { BEHAVIOURS, CASE_NAMES, formatReport, runConformance, type CaseResult } from './conformance/kit.js';
import { TEST_API_KEY, freePort, startNatsServer, testNatsAuth, type NatsServerHandle, type TestNatsAuth } from '@jetflow/testing';
import { serviceCommand, waitForHttp } from '@jetflow/stack';

const PYTHON = process.env.JETFLOW_PYTHON ?? '/usr/bin/python3';
const KEY = 'conformance-worker-key-0123456789';
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

interface Proc {
  proc: ChildProcess;
  ready: Promise<void>;
  exited: Promise<void>;
  output: string[];
}

function start(cmd: string, args: string[], env: Record<string, string>, readyLine: string | undefined, what: string): Proc {
  const proc = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const output: string[] = [];
  proc.stderr.on('data', (d: Buffer) => output.push(d.toString()));
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const ready = new Promise<void>((res, rej) => {
    let out = '';
    proc.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      output.push(d.toString());
      if (readyLine && out.includes(readyLine)) res();
    });
    if (!readyLine) res();
    void exited.then(() => rej(new Error(`${what} exited before it was ready: ${output.join('').slice(-3000)}`)));
  });
  return { proc, ready, exited, output };
}

describe('worker conformance kit, Python through the gRPC worker door', () => {
  let dir: string;
  let nats: NatsServerHandle;
  let auth: TestNatsAuth;
  let ingest: Proc;
  let grpcPort: number;
  let worker: Proc | undefined;

  const spawnWorker = () =>
    start(
      PYTHON,
      ['-u', resolve('test/conformance/python_worker.py')],
      { PATH: process.env.PATH ?? '', PYTHONDONTWRITEBYTECODE: '1', PYTHONPATH: resolve('sdk/python'), JETFLOW_GRPC: `127.0.0.1:${grpcPort}`, JETFLOW_WORKER_KEY: KEY },
      '"event": "ready"',
      'the Python conformance worker',
    );
  const killWorker = async () => {
    if (!worker) return;
    worker.proc.kill('SIGKILL');
    await worker.exited;
    worker = undefined;
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'jetflow-py-conformance-'));
    const flowsFile = join(dir, 'flows.json');
    writeFileSync(flowsFile, JSON.stringify(FLOWS));
    const env = { JETFLOW_FLOWS_FILE: flowsFile, JETFLOW_API_KEYS: `default:operator:${TEST_API_KEY}` };
    auth = testNatsAuth(env);
    nats = await startNatsServer({ config: auth.config, connect: auth.options('admin') });
    const httpPort = await freePort();
    grpcPort = await freePort();
    // Ingest alone, as its own NATS identity: the door. The kit provisions the task consumers with its short ack wait after.
    const { cmd, args } = serviceCommand('ingest');
    ingest = start(
      cmd,
      args,
      {
        ...process.env,
        ...env,
        ...auth.env('ingest'),
        NATS_URL: nats.url,
        JETFLOW_HOST: '127.0.0.1',
        JETFLOW_HTTP_PORT: String(httpPort),
        JETFLOW_GRPC_PORT: String(grpcPort),
        JETFLOW_WORKER_KEYS: `conformance:jetflow.task.conformance.>:${KEY}`,
        JETFLOW_HISTORY: 'off',
        JETFLOW_CLAIM_CHECK_BYTES: '0',
        JETFLOW_METRICS_PORT: '0',
        LOG_LEVEL: 'warn',
      },
      undefined,
      'ingest',
    );
    await Promise.race([
      waitForHttp(`http://127.0.0.1:${httpPort}/readyz`, 60_000),
      ingest.ready.then(() => ingest.exited).then(() => Promise.reject(new Error(`ingest exited: ${ingest.output.join('')}`))),
    ]);
  });
  after(async () => {
    await killWorker();
    ingest?.proc.kill('SIGTERM');
    await ingest?.exited;
    await nats?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('jetflow_worker through the door passes every case, the kit killing and restarting the Python process', async () => {
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
    assert.equal(seen.length, CASE_NAMES.length);
  });
});
