/**
 * The gRPC worker door against a NATS worker: the same no-op task served by a Python jetflow_worker
 * through the door and by @jetflow/worker over NATS, on one fresh stack. For each, a closed loop of
 * `--concurrency` clients submits one-task flows for `--seconds` and waits for each callback; printed:
 * tasks per second, and per task the time from the orchestrator's dispatch to the worker's result
 * (read from the flow state: dispatchedAt → finishedAt) at p50/p90, whose difference is what the door adds.
 *
 *   node --import tsx bench/worker-door.ts [--seconds 5] [--concurrency 16]
 *
 * Needs Debian's python3 with python3-grpcio and python3-protobuf (docs/PYTHON.md).
 */
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { TEST_API_KEY, startJetflow, testNatsAuth } from '@jetflow/testing';
import { createWorker, defineTask, type WorkerLogger } from '../packages/worker/src/index.js';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '5' }, concurrency: { type: 'string', default: '16' } } });
const secs = Number(values.seconds);
const conc = Number(values.concurrency);
if (!(secs > 0) || !(conc >= 1)) throw new Error('usage: --seconds <s> --concurrency <n>');

const KEY = 'bench-worker-key-0123456789abcdef';
const DOOR = 'jetflow.task.py.noop';
const NATS = 'jetflow.task.bench.noop';
const flow = (name: string, subject: string) => ({
  name,
  version: 1,
  deadlineMs: 30_000,
  stages: [
    {
      name: 'only',
      onFailure: 'fail_flow',
      tasks: [{ name: 'noop', subject, softLimitMs: 5_000, hardLimitMs: 10_000, maxAttempts: 1, backoff: { initialMs: 100, maxMs: 1_000, multiplier: 2 } }],
    },
  ],
});
const dir = mkdtempSync(join(tmpdir(), 'jetflow-door-bench-'));
writeFileSync(join(dir, 'flows.json'), JSON.stringify([flow('via-door', DOOR), flow('via-nats', NATS)]));
writeFileSync(
  join(dir, 'noop_worker.py'),
  [
    'import os',
    'from jetflow_worker import Worker',
    'w = Worker(target=os.environ["JETFLOW_GRPC"], api_key=os.environ["KEY"], name="bench")',
    `@w.task("${DOOR}")`,
    'def noop(task_input, ctx):',
    '    return {"ok": True}',
    'import threading',
    'threading.Thread(target=lambda: (w.ready.wait(), print("ready", flush=True)), daemon=True).start()',
    'w.run(concurrency=int(os.environ["CONCURRENCY"]))',
  ].join('\n'),
);

// Callbacks resolve their flow's waiter at once (no polling in the measurement).
const waiters = new Map<string, () => void>();
const arrived = new Set<string>();
const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    res.end('ok');
    try {
      const id = (JSON.parse(Buffer.concat(chunks).toString()) as { flowId: string }).flowId;
      const w = waiters.get(id);
      // A callback may come before its submitter starts waiting.
      if (w) w();
      else arrived.add(id);
      waiters.delete(id);
    } catch {
      // not a callback
    }
  });
});
await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
const cbUrl = `http://127.0.0.1:${(server.address() as { port: number }).port}/cb`;

const env = { JETFLOW_FLOWS_FILE: join(dir, 'flows.json'), JETFLOW_API_KEYS: `default:operator:${TEST_API_KEY}`, JETFLOW_WORKER_KEYS: `bench:jetflow.task.py.>:${KEY}`, LOG_LEVEL: 'warn' };
const auth = testNatsAuth(env, {}, { workers: { bench: [NATS] } });
const j = await startJetflow({ env, auth });
const py = spawn('/usr/bin/python3', ['-u', join(dir, 'noop_worker.py')], {
  env: { PATH: process.env.PATH ?? '', PYTHONPATH: resolve('sdk/python'), PYTHONDONTWRITEBYTECODE: '1', JETFLOW_GRPC: j.grpc, KEY, CONCURRENCY: String(conc) },
  stdio: ['ignore', 'pipe', 'inherit'],
});
const id = auth.options('worker:bench');
const silent: WorkerLogger = { child: () => silent, debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };
const natsWorker = await createWorker({
  servers: j.natsUrls,
  user: String(id.user),
  password: String(id.pass),
  tasks: [defineTask({ subject: NATS, run: () => ({ ok: true }) })],
  concurrency: conc,
  consumerWaitMs: 20_000,
  log: silent,
});

try {
  await new Promise<void>((res, rej) => {
    const t = setTimeout(() => rej(new Error('the Python worker did not connect within 30 s')), 30_000);
    py.stdout.on('data', (d: Buffer) => d.toString().includes('ready') && (clearTimeout(t), res()));
  });
  const kv = await j.nc.jetstream().views.kv('jetflow_flows');
  const run = async (flowName: string, ms: number) => {
    const ids: string[] = [];
    const until = Date.now() + ms;
    let n = 0;
    const client = async () => {
      while (Date.now() < until) {
        const key = `${flowName}-${n++}-${Math.random()}`;
        const r = await j.api('/v1/flows', { method: 'POST', json: { flow: flowName, input: {}, callbackUrl: cbUrl, idempotencyKey: key } });
        if (r.status !== 202) throw new Error(`submission refused: ${r.status} ${await r.text()}`);
        const flowId = ((await r.json()) as { flowId: string }).flowId;
        if (!arrived.delete(flowId)) await new Promise<void>((res) => waiters.set(flowId, res));
        ids.push(flowId);
      }
    };
    const t0 = Date.now();
    await Promise.all(Array.from({ length: conc }, client));
    const elapsed = (Date.now() - t0) / 1000;
    const task: number[] = [];
    for (const flowId of ids) {
      const e = await kv.get(flowId);
      const s = JSON.parse(new TextDecoder().decode(e!.value)) as { tasks: Record<string, { dispatchedAt: number; finishedAt: number }> };
      const t = Object.values(s.tasks)[0]!;
      task.push(t.finishedAt - t.dispatchedAt);
    }
    task.sort((a, b) => a - b);
    const q = (p: number) => task[Math.min(task.length - 1, Math.floor(task.length * p))]!;
    return { flows: ids.length, perSecond: ids.length / elapsed, p50: q(0.5), p90: q(0.9) };
  };
  // Warm both paths (connections, JIT, the consumers' first pulls), then measure each in turn.
  await run('via-nats', 1_000);
  await run('via-door', 1_000);
  const nats = await run('via-nats', secs * 1000);
  const door = await run('via-door', secs * 1000);
  console.log(`one no-op task per flow, ${conc} clients in a closed loop, ${secs} s each (dispatch → result, ms)`);
  console.log(`${'path'.padEnd(34)} ${'tasks/s'.padStart(8)} ${'p50'.padStart(6)} ${'p90'.padStart(6)}`);
  for (const [name, r] of [
    ['NATS worker (@jetflow/worker)', nats],
    ['gRPC door (Python jetflow_worker)', door],
  ] as const)
    console.log(`${name.padEnd(34)} ${r.perSecond.toFixed(0).padStart(8)} ${String(r.p50).padStart(6)} ${String(r.p90).padStart(6)}`);
  console.log(`added by the door per task: p50 ${door.p50 - nats.p50} ms, p90 ${door.p90 - nats.p90} ms`);
  console.log(JSON.stringify({ bench: 'worker-door', seconds: secs, concurrency: conc, nats, door }));
} finally {
  py.kill('SIGTERM');
  await natsWorker.stop(1_000);
  await j.stop();
  server.close();
  rmSync(dir, { recursive: true, force: true });
}
