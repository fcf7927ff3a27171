/**
 * Python workers through the gRPC worker door (jetflow.v1.WorkerService on ingest's gRPC port), against
 * the real services: real python3 processes running jetflow_worker (sdk/python, with Debian's grpcio and
 * protobuf) next to the built-in TypeScript dataset generators. The pandas example end to end; retries,
 * terminal failures, the soft and hard limits, cancellation, kill -9 mid-task, and a key that may not serve a subject.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { makeFeedbackBatch, TEST_API_KEY, startCallbackReceiver, startJetflow, type CallbackReceiver, type JetflowUnderTest } from '@jetflow/testing';

const PYTHON = process.env.JETFLOW_PYTHON ?? '/usr/bin/python3';
const SDK = resolve('sdk/python');
const EXAMPLE = resolve('examples/python-pandas');
const FIXTURES = resolve('test/fixtures/python');
const PY_KEY = 'py-worker-key-0123456789abcdef';

const task = (name: string, subject: string, o: { maxAttempts?: number; softLimitMs?: number; hardLimitMs?: number } = {}) => ({
  name,
  subject,
  softLimitMs: o.softLimitMs ?? 5_000,
  hardLimitMs: o.hardLimitMs ?? 10_000,
  maxAttempts: o.maxAttempts ?? 3,
  backoff: { initialMs: 100, maxMs: 300, multiplier: 2 },
});
const single = (name: string, t: ReturnType<typeof task>, deadlineMs = 30_000) => ({ name, version: 1, deadlineMs, stages: [{ name: 'only', onFailure: 'fail_flow', tasks: [t] }] });
const FLOWS = [
  ...(JSON.parse(readFileSync(join(EXAMPLE, 'flows.json'), 'utf8')) as unknown[]),
  single('py-flaky', task('flaky', 'jetflow.task.py.flaky')),
  single('py-reject', task('reject', 'jetflow.task.py.reject')),
  single('py-big', task('big', 'jetflow.task.py.big')),
  single('py-soft', task('soft', 'jetflow.task.py.soft', { softLimitMs: 500, hardLimitMs: 8_000, maxAttempts: 1 })),
  single('py-hard', task('hard', 'jetflow.task.py.hard', { softLimitMs: 300, hardLimitMs: 1_500, maxAttempts: 1 })),
  single('py-slow', task('slow', 'jetflow.task.py.slow', { softLimitMs: 20_000, hardLimitMs: 25_000 }), 60_000),
  single('secret', task('secret', 'jetflow.task.custom.secret')),
];

interface PyProc {
  proc: ChildProcess;
  events: Array<Record<string, unknown>>;
  output: string[];
  exited: Promise<number | null>;
  waitFor(pred: (e: Record<string, unknown>) => boolean, ms: number, what: string): Promise<Record<string, unknown>>;
}

describe('Python workers through the gRPC worker door', () => {
  let j: JetflowUnderTest;
  let cb: CallbackReceiver;
  let dir: string;
  const procs: PyProc[] = [];

  const startPython = (script: string, cwd: string, env: Record<string, string>): PyProc => {
    const proc = spawn(PYTHON, ['-u', script], {
      cwd,
      env: { PATH: process.env.PATH ?? '', PYTHONDONTWRITEBYTECODE: '1', PYTHONPATH: [SDK, cwd].join(':'), JETFLOW_GRPC: j.grpc, JETFLOW_WORKER_KEY: PY_KEY, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const p: PyProc = {
      proc,
      events: [],
      output: [],
      exited: new Promise((r) => proc.once('exit', (code) => r(code))),
      async waitFor(pred, ms, what) {
        const until = Date.now() + ms;
        for (;;) {
          const e = p.events.find(pred);
          if (e) return e;
          if (Date.now() > until || proc.exitCode !== null)
            throw new Error(`${script}: no ${what} within ${ms} ms; events ${JSON.stringify(p.events)}; output ${p.output.join('').slice(-3000)}`);
          await new Promise((r) => setTimeout(r, 50));
        }
      },
    };
    let buf = '';
    proc.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      for (let i; (i = buf.indexOf('\n')) >= 0; buf = buf.slice(i + 1)) {
        const line = buf.slice(0, i);
        try {
          const e = JSON.parse(line) as Record<string, unknown>;
          if (e && typeof e.event === 'string') p.events.push(e);
          else p.output.push(line + '\n');
        } catch {
          p.output.push(line + '\n');
        }
      }
    });
    proc.stderr.on('data', (d: Buffer) => p.output.push(d.toString()));
    procs.push(p);
    return p;
  };
  const fixture = (tag: string, env: Record<string, string> = {}) => startPython('fixture_worker.py', FIXTURES, { WORKER_TAG: tag, ...env });

  const submit = async (flow: string, input: Record<string, unknown>) => {
    const r = await j.api('/v1/flows', { method: 'POST', json: { flow, input, callbackUrl: cb.url } });
    assert.equal(r.status, 202, await r.clone().text());
    return ((await r.json()) as { flowId: string }).flowId;
  };
  type TaskView = { name: string; status: string; attempts: number; error: { code: string; message: string } | null };
  type View = { status: string; stages: Array<{ tasks: TaskView[] }> };
  const view = async (id: string) => (await (await j.api(`/v1/flows/${id}`)).json()) as View;
  const taskOf = (v: View, name: string) => v.stages.flatMap((s) => s.tasks).find((t) => t.name === name)!;
  const oneCallback = async (id: string, ms = 30_000) => {
    await cb.waitForFlows([id], ms);
    const got = cb.byFlow(id);
    assert.equal(got.length, 1, `exactly one callback for ${id}`);
    return got[0]!.body as unknown as { status: string; results: Record<string, unknown>; errors?: unknown };
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'jetflow-py-'));
    const flowsFile = join(dir, 'flows.json');
    writeFileSync(flowsFile, JSON.stringify(FLOWS));
    cb = await startCallbackReceiver();
    j = await startJetflow({
      env: { JETFLOW_FLOWS_FILE: flowsFile, JETFLOW_API_KEYS: `default:operator:${TEST_API_KEY}`, JETFLOW_WORKER_KEYS: `py:jetflow.task.py.>:${PY_KEY}` },
    });
  });
  after(async () => {
    for (const p of procs) if (p.proc.exitCode === null) p.proc.kill('SIGKILL');
    await j?.stop();
    await cb?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("the SDK's and the example's Python unit tests pass, and the committed worker_pb2.py matches the proto", () => {
    for (const [cwd, args] of [
      [SDK, ['-m', 'unittest', 'discover', '-s', 'tests']],
      [EXAMPLE, ['-m', 'unittest', 'test_profile']],
    ] as const) {
      const r = spawnSync(PYTHON, args, { cwd, env: { PATH: process.env.PATH ?? '', PYTHONDONTWRITEBYTECODE: '1', PYTHONPATH: SDK }, encoding: 'utf8', timeout: 120_000 });
      assert.equal(r.status, 0, `${cwd}: ${r.stdout}\n${r.stderr}`);
      assert.match(r.stderr, /\nOK\n?/);
    }
    if (!existsSync('/usr/bin/protoc')) return;
    execFileSync('/usr/bin/protoc', ['--python_out', dir, 'jetflow/v1/worker.proto'], { cwd: resolve('proto') });
    assert.equal(
      readFileSync(join(SDK, 'jetflow_worker/worker_pb2.py'), 'utf8'),
      readFileSync(join(dir, 'jetflow/v1/worker_pb2.py'), 'utf8'),
      'regenerate sdk/python/jetflow_worker/worker_pb2.py (docs/PYTHON.md)',
    );
  });

  test('the pandas example: built-in generators, then the Python profile task in pool processes; one callback with the rows', async () => {
    const w = startPython('worker.py', EXAMPLE, { CONCURRENCY: '2', LOG_LEVEL: 'WARNING' });
    for (const until = Date.now() + 30_000; !w.output.join('').includes('ready');) {
      if (Date.now() > until || w.proc.exitCode !== null) throw new Error(`example worker not ready: ${w.output.join('')}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    // The door announces its workers in the worker registry (GET /v1/workers), as grpc.<key>-<name>-<id>.
    type Instance = { name: string; service: string; subjects: string[]; concurrency: number; status: string; version: string };
    let listed: Instance | undefined;
    for (const until = Date.now() + 10_000; !listed && Date.now() < until; await new Promise((r) => setTimeout(r, 200))) {
      const r = await j.api('/v1/workers');
      assert.equal(r.status, 200, await r.clone().text());
      listed = ((await r.json()) as { workers: Instance[] }).workers.find((x) => x.subjects.includes('jetflow.task.py.profile') && x.status === 'live');
    }
    assert.ok(listed, 'the Python worker is in the registry');
    assert.equal(listed.name, 'grpc');
    assert.equal(listed.service, 'grpc');
    assert.equal(listed.concurrency, 2);
    assert.match(listed.version, /^jetflow_worker\/0\.1\.0 python\/3\./);
    const { records } = makeFeedbackBatch({ n: 120, seed: 7 });
    const id = await submit('pandas-profile', { records });
    const body = await oneCallback(id, 45_000);
    assert.equal(body.status, 'succeeded', JSON.stringify(body));
    const profile = body.results.profile as {
      rows: number;
      columns: string[];
      numeric: Record<string, { count: number }>;
      datasets: Record<string, { rows: number }>;
      worker: { pandas: string };
    };
    assert.equal(profile.rows, 120);
    assert.ok(profile.columns.includes('fields.rating'), profile.columns.join(','));
    assert.equal(profile.numeric['fields.rating']!.count, records.filter((r) => typeof r.fields.rating === 'number').length);
    // The TypeScript generators' outputs reached the Python task as deps, with the same row count.
    assert.equal(profile.datasets.text?.rows, 120);
    assert.equal(profile.datasets.features?.rows, 120);
    assert.match(profile.worker.pandas, /^\d+\.\d+/);
    w.proc.kill('SIGTERM');
    assert.equal(await w.exited, 0, w.output.join(''));
  });

  test('a plain exception is retried with the definition backoff and succeeds on attempt 3; a TerminalError fails the task at once', async () => {
    const w = fixture('A');
    const ready = await w.waitFor((e) => e.event === 'ready', 60_000, 'ready');
    assert.deepEqual(ready.subjects, ['jetflow.task.py.big', 'jetflow.task.py.flaky', 'jetflow.task.py.hard', 'jetflow.task.py.reject', 'jetflow.task.py.slow', 'jetflow.task.py.soft']);
    const flaky = await submit('py-flaky', {});
    const body = await oneCallback(flaky);
    assert.equal(body.status, 'succeeded', JSON.stringify(body));
    assert.deepEqual(body.results.flaky, { succeededOnAttempt: 3, by: 'A' });
    assert.equal(taskOf(await view(flaky), 'flaky').attempts, 3);
    assert.deepEqual(
      w.events.filter((e) => e.flowId === flaky).map((e) => e.attempt),
      [1, 2, 3],
    );

    const reject = await submit('py-reject', {});
    const failed = await oneCallback(reject);
    assert.equal(failed.status, 'failed');
    const t = taskOf(await view(reject), 'reject');
    assert.equal(t.status, 'failed');
    assert.equal(t.attempts, 1);
    assert.equal(t.error?.code, 'terminal');
    assert.match(t.error?.message ?? '', /bad_record: record r1 has no language/);
    assert.equal(w.events.filter((e) => e.flowId === reject).length, 1, 'ran once');

    // An output over the door's message limit is a terminal failure, not a broken stream and a task that comes back forever.
    const big = await submit('py-big', {});
    assert.equal((await oneCallback(big)).status, 'failed');
    const b = taskOf(await view(big), 'big');
    assert.equal(b.attempts, 1);
    assert.match(b.error?.message ?? '', /output_too_large: the task's output is \d+ bytes of JSON; the door takes at most \d+/);
    assert.equal(w.proc.exitCode, null, 'the stream held: the worker (reconnect=False) is still serving');
  });

  test('the soft limit sets ctx.cancelled; past the hard limit the pool process is terminated and the task times out', async () => {
    const w = procs.find((p) => p.proc.exitCode === null && p.events.some((e) => e.event === 'ready'))!;
    const soft = await submit('py-soft', {});
    const body = await oneCallback(soft);
    assert.equal(body.status, 'succeeded', JSON.stringify(body));
    const out = body.results.soft as { cancelled: boolean; afterMs: number };
    assert.equal(out.cancelled, true, 'ctx.cancelled was set');
    assert.ok(out.afterMs >= 300 && out.afterMs < 8_000, `set after ${out.afterMs} ms (soft limit 500 ms)`);

    const hard = await submit('py-hard', {});
    const failed = await oneCallback(hard);
    assert.equal(failed.status, 'failed');
    const t = taskOf(await view(hard), 'hard');
    assert.equal(t.error?.code, 'timeout');
    assert.equal(t.attempts, 1);
    const start = await w.waitFor((e) => e.flowId === hard && e.event === 'start', 1_000, 'start of the hard task');
    const pid = start.pid as number;
    assert.ok((ready(w).pool as number[]).includes(pid), 'it ran in a pool process');
    const gone = async () => {
      for (const until = Date.now() + 10_000; Date.now() < until; await new Promise((r) => setTimeout(r, 100))) {
        try {
          process.kill(pid, 0);
        } catch {
          return true;
        }
      }
      return false;
    };
    assert.ok(await gone(), `pool process ${pid} was terminated`);
    // A fresh pool process took its place: the worker still serves.
    const again = await submit('py-flaky', {});
    assert.equal((await oneCallback(again)).status, 'succeeded');
  });

  test('kill -9 of the Python worker mid-task: the door hands the task back at once, a second worker completes the flow once', async () => {
    for (const p of procs) if (p.proc.exitCode === null) p.proc.kill('SIGKILL');
    const a = fixture('K1', { SUBJECTS: 'jetflow.task.py.slow' });
    await a.waitFor((e) => e.event === 'ready', 60_000, 'ready');
    const id = await submit('py-slow', { sleepMs: 4_000 });
    await a.waitFor((e) => e.flowId === id && e.event === 'start', 20_000, 'start on K1');
    const b = fixture('K2', { SUBJECTS: 'jetflow.task.py.slow' });
    await b.waitFor((e) => e.event === 'ready', 60_000, 'ready');
    a.proc.kill('SIGKILL');
    const killedAt = Date.now();
    const redelivered = await b.waitFor((e) => e.flowId === id && e.event === 'start', 20_000, 'start on K2');
    assert.equal(redelivered.attempt, 2);
    // Handed back by the door when the stream broke, not after the consumer's ack wait.
    assert.ok(Date.now() - killedAt < 3_000, `redelivered ${Date.now() - killedAt} ms after the kill (the ack wait is 5 s)`);
    const body = await oneCallback(id, 30_000);
    assert.equal(body.status, 'succeeded', JSON.stringify(body));
    assert.deepEqual(body.results.slow, { attempt: 2, by: 'K2' });
    await new Promise((r) => setTimeout(r, 1_000));
    assert.equal(cb.byFlow(id).length, 1, 'still one callback');
  });

  test('a cancelled flow: the door tells the Python task (ctx.cancelled), its output is dropped, the flow ends cancelled with one callback', async () => {
    for (const p of procs) if (p.proc.exitCode === null) p.proc.kill('SIGKILL');
    const w = fixture('C', { SUBJECTS: 'jetflow.task.py.slow' });
    await w.waitFor((e) => e.event === 'ready', 60_000, 'ready');
    const id = await submit('py-slow', { sleepMs: 20_000 });
    await w.waitFor((e) => e.flowId === id && e.event === 'start', 20_000, 'start');
    const r = await j.api(`/v1/flows/${id}/cancel`, { method: 'POST', json: { reason: 'test' } });
    assert.ok(r.status < 300, await r.text());
    await w.waitFor((e) => e.flowId === id && e.event === 'cancelled', 10_000, 'ctx.cancelled in the task');
    const body = await oneCallback(id);
    // The task ends cancelled, never with its output. The flow ends `cancelled`, or `partial` when the
    // worker's CANCELLED result reaches the orchestrator before ingest's cancel control does (the cancel
    // watch can beat the control's publish, for NATS workers too; libs/flows state.ts then applies the
    // result like a failure under a continue policy).
    assert.equal((body.results.slow as { status: string }).status, 'cancelled', JSON.stringify(body));
    assert.ok(['cancelled', 'partial'].includes(body.status), JSON.stringify(body));
    assert.equal(taskOf(await view(id), 'slow').status, 'cancelled');
    w.proc.kill('SIGTERM');
    await w.exited;
  });

  test('stop() drains: the task that fits the grace finishes on the stopping worker, the other is handed back to the next one', async () => {
    for (const p of procs) if (p.proc.exitCode === null) p.proc.kill('SIGKILL');
    const d = fixture('D', { SUBJECTS: 'jetflow.task.py.slow', GRACE_S: '3' });
    await d.waitFor((e) => e.event === 'ready', 60_000, 'ready');
    const short = await submit('py-slow', { sleepMs: 1_000 });
    const long = await submit('py-slow', { sleepMs: 8_000 });
    await d.waitFor((e) => e.flowId === short && e.event === 'start', 20_000, 'start of the short task');
    await d.waitFor((e) => e.flowId === long && e.event === 'start', 20_000, 'start of the long task');
    d.proc.kill('SIGTERM');
    await d.waitFor((e) => e.event === 'stopped', 15_000, 'stopped');
    assert.equal(await d.exited, 0);
    const e = fixture('E', { SUBJECTS: 'jetflow.task.py.slow' });
    const [a, b] = [await oneCallback(short), await oneCallback(long, 40_000)];
    assert.deepEqual(a.results.slow, { attempt: 1, by: 'D' });
    assert.deepEqual(b.results.slow, { attempt: 2, by: 'E' });
    e.proc.kill('SIGTERM');
    await e.exited;
  });

  test('a hello naming a subject the key may not serve is refused with PERMISSION_DENIED naming the subject', async () => {
    const w = fixture('X', { SUBJECTS: 'jetflow.task.py.slow,jetflow.task.custom.secret' });
    const refused = await w.waitFor((e) => e.event === 'refused', 30_000, 'refusal');
    assert.equal(refused.status, 'PERMISSION_DENIED');
    assert.match(String(refused.message), /may not serve jetflow\.task\.custom\.secret/);
    assert.equal(await w.exited, 2);
    const bad = startPython('fixture_worker.py', FIXTURES, { WORKER_TAG: 'Y', JETFLOW_WORKER_KEY: 'not-a-worker-key-0123456789' });
    const r2 = await bad.waitFor((e) => e.event === 'refused', 30_000, 'refusal');
    assert.equal(r2.status, 'UNAUTHENTICATED');
  });
});

function ready(p: PyProc): Record<string, unknown> {
  return p.events.find((e) => e.event === 'ready')!;
}
