/**
 * @jetflow/worker as a team uses it: `npm pack` of packages/worker installed into an empty project (no
 * other file of this repository), a plain-ESM worker script run there as a child process with a
 * `worker:tokenize` NATS identity, serving custom subjects of a flows file against the real services.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { TEST_API_KEY, startCallbackReceiver, startJetflow, testNatsAuth, type CallbackReceiver, type JetflowUnderTest, type TestNatsAuth } from '@jetflow/testing';

const task = (name: string, subject: string, o: { maxAttempts?: number; softLimitMs?: number; hardLimitMs?: number } = {}) => ({
  name,
  subject,
  softLimitMs: o.softLimitMs ?? 2_000,
  hardLimitMs: o.hardLimitMs ?? 4_000,
  maxAttempts: o.maxAttempts ?? 3,
  backoff: { initialMs: 100, maxMs: 300, multiplier: 2 },
});
// The example project's flow (a definition with a custom subject), plus flows for retries, terminal errors and draining.
const EXAMPLE = resolve('examples/wordcount-worker');
const FLOWS = [
  ...(JSON.parse(readFileSync(join(EXAMPLE, 'flows.json'), 'utf8')) as unknown[]),
  { name: 'flaky', version: 1, deadlineMs: 30_000, stages: [{ name: 'only', onFailure: 'fail_flow', tasks: [task('flaky', 'jetflow.task.custom.flaky')] }] },
  { name: 'reject', version: 1, deadlineMs: 30_000, stages: [{ name: 'only', onFailure: 'fail_flow', tasks: [task('reject', 'jetflow.task.custom.reject')] }] },
  {
    name: 'drain',
    version: 1,
    deadlineMs: 60_000,
    stages: [
      { name: 'only', onFailure: 'fail_flow', tasks: ['short', 'long'].map((n) => task(n, 'jetflow.task.custom.slow', { maxAttempts: 2, softLimitMs: 15_000, hardLimitMs: 20_000 })) },
    ],
  },
];
const SUBJECTS = ['jetflow.task.custom.tokenize', 'jetflow.task.custom.flaky', 'jetflow.task.custom.reject', 'jetflow.task.custom.slow'];

// Plain Node ESM, as in a team's own repository: only the installed package.
const WORKER = `
import { createWorker, defineTask, TerminalError } from '@jetflow/worker';
const say = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
const by = process.env.WORKER_TAG;
const sleep = (ms, signal) => new Promise((res, rej) => {
  const t = setTimeout(res, ms);
  signal.addEventListener('abort', () => { clearTimeout(t); rej(new Error('stopped')); }, { once: true });
});
const tasks = [
  defineTask({ subject: 'jetflow.task.custom.tokenize', run: ({ items }) => ({ words: items.flatMap((r) => r.text.split(/\\s+/).filter(Boolean)).length, by }) }),
  defineTask({ subject: 'jetflow.task.custom.flaky', run: (_input, ctx) => {
    say({ event: 'start', task: ctx.task, flowId: ctx.flowId, attempt: ctx.attempt });
    if (ctx.attempt < 3) throw new Error('flaky attempt ' + ctx.attempt);
    return { succeededOnAttempt: ctx.attempt, by };
  } }),
  defineTask({ subject: 'jetflow.task.custom.reject', run: (_input, ctx) => {
    say({ event: 'start', task: ctx.task, flowId: ctx.flowId, attempt: ctx.attempt });
    throw new TerminalError('record r1 has no language');
  } }),
  defineTask({ subject: 'jetflow.task.custom.slow', run: async ({ flowInput }, ctx) => {
    say({ event: 'start', task: ctx.task, flowId: ctx.flowId, attempt: ctx.attempt });
    await sleep(flowInput.sleepMs[ctx.task], ctx.hardSignal);
    return { attempt: ctx.attempt, by };
  } }),
];
const worker = await createWorker({ servers: process.env.NATS_URL, user: process.env.NATS_USER, password: process.env.NATS_PASSWORD, tasks, concurrency: 4, consumerWaitMs: 20000 });
say({ event: 'ready', subjects: worker.subjects });
process.once('SIGTERM', async () => {
  say({ event: 'stopping', inFlight: worker.inFlight });
  await worker.stop(Number(process.env.GRACE_MS));
  say({ event: 'stopped' });
  process.exit(0);
});
`;

interface WorkerProc {
  proc: ChildProcess;
  events: Array<Record<string, unknown>>;
  stderr: string[];
  waitFor(pred: (e: Record<string, unknown>) => boolean, ms: number, what: string): Promise<Record<string, unknown>>;
  exited: Promise<number | null>;
}

describe('@jetflow/worker from its npm tarball, in a project of its own', () => {
  let j: JetflowUnderTest;
  let cb: CallbackReceiver;
  let auth: TestNatsAuth;
  let project: string;
  const workers: WorkerProc[] = [];

  const startWorker = (tag: string, graceMs: number): WorkerProc => {
    const proc = spawn(process.execPath, ['worker.mjs'], {
      cwd: project,
      env: { PATH: process.env.PATH ?? '', NATS_URL: j.natsUrls.join(','), ...auth.env('worker:tokenize'), WORKER_TAG: tag, GRACE_MS: String(graceMs), LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const w: WorkerProc = {
      proc,
      events: [],
      stderr: [],
      exited: new Promise((r) => proc.once('exit', (code) => r(code))),
      async waitFor(pred, ms, what) {
        const until = Date.now() + ms;
        for (;;) {
          const e = w.events.find(pred);
          if (e) return e;
          if (Date.now() > until || proc.exitCode !== null) throw new Error(`worker ${tag}: no ${what} within ${ms} ms; events ${JSON.stringify(w.events)}; stderr ${w.stderr.join('')}`);
          await new Promise((r) => setTimeout(r, 50));
        }
      },
    };
    let buf = '';
    proc.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      for (let i; (i = buf.indexOf('\n')) >= 0; buf = buf.slice(i + 1)) {
        const line = buf.slice(0, i);
        let e: Record<string, unknown> | undefined;
        try {
          e = JSON.parse(line) as Record<string, unknown>;
        } catch {
          // not JSON
        }
        // The script's own lines have `event`; the rest are the SDK's pino logs.
        if (e && typeof e.event === 'string') w.events.push(e);
        else w.stderr.push(line + '\n');
      }
    });
    proc.stderr.on('data', (d: Buffer) => w.stderr.push(d.toString()));
    workers.push(w);
    return w;
  };

  const submit = async (flow: string, input: Record<string, unknown>) => {
    const r = await j.api('/v1/flows', { method: 'POST', json: { flow, input, callbackUrl: cb.url } });
    assert.equal(r.status, 202, await r.clone().text());
    return ((await r.json()) as { flowId: string }).flowId;
  };
  type View = { status: string; stages: Array<{ tasks: Array<{ name: string; status: string; attempts: number; error: { code: string } | null }> }> };
  const view = async (id: string) => (await (await j.api(`/v1/flows/${id}`)).json()) as View;
  const taskOf = (v: View, name: string) => v.stages.flatMap((s) => s.tasks).find((t) => t.name === name)!;

  before(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'jetflow-sdk-'));
    // The tarball, built by its prepack (esbuild bundle + declarations).
    const npmEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.toLowerCase().startsWith('npm_')));
    execFileSync('npm', ['pack', resolve('packages/worker'), '--pack-destination', dir, '--silent'], { cwd: resolve('.'), env: npmEnv, stdio: ['ignore', 'ignore', 'inherit'] });
    const tarball = readdirSync(dir).find((f) => f.endsWith('.tgz'));
    assert.ok(tarball, `npm pack wrote no tarball in ${dir}`);
    project = join(dir, 'team-project');
    execFileSync('mkdir', [project]);
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'team-project', private: true, type: 'module' }));
    writeFileSync(join(project, 'worker.mjs'), WORKER);
    // The user's default npm cache (filled by npm ci here), so the install works offline.
    const cache = execFileSync('npm', ['config', 'get', 'cache'], { cwd: project, env: npmEnv, encoding: 'utf8' }).trim();
    execFileSync('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--silent', '--cache', cache, join(dir, tarball)], {
      cwd: project,
      env: npmEnv,
      stdio: ['ignore', 'ignore', 'inherit'],
    });

    const flowsFile = join(dir, 'flows.json');
    writeFileSync(flowsFile, JSON.stringify(FLOWS));
    const env = { JETFLOW_FLOWS_FILE: flowsFile, JETFLOW_API_KEYS: `default:operator:${TEST_API_KEY}` };
    auth = testNatsAuth(env, {}, { workers: { tokenize: SUBJECTS } });
    cb = await startCallbackReceiver();
    j = await startJetflow({ env, auth });
  });
  after(async () => {
    for (const w of workers) if (w.proc.exitCode === null) w.proc.kill('SIGKILL');
    await j?.stop();
    await cb?.close();
    if (project) rmSync(join(project, '..'), { recursive: true, force: true });
  });

  test('the installed package serves a custom subject: one callback with the worker output', async () => {
    const a = startWorker('A', 3_000);
    const ready = await a.waitFor((e) => e.event === 'ready', 30_000, 'ready');
    assert.deepEqual(ready.subjects, [...SUBJECTS].sort());
    const id = await submit('wordcount', { records: [{ text: 'the quick brown fox' }, { text: 'jumps over' }] });
    await cb.waitForFlows([id], 20_000);
    const got = cb.byFlow(id);
    assert.equal(got.length, 1, 'exactly one callback');
    assert.equal(got[0]!.body.status, 'succeeded');
    assert.deepEqual((got[0]!.body.results as Record<string, unknown>).tokenize, { words: 6, by: 'A' });
  });

  test('a plain Error is retried with the definition backoff: two failures, then success on attempt 3', async () => {
    const id = await submit('flaky', {});
    await cb.waitForFlows([id], 20_000);
    const got = cb.byFlow(id);
    assert.equal(got.length, 1);
    assert.equal(got[0]!.body.status, 'succeeded');
    assert.deepEqual((got[0]!.body.results as Record<string, unknown>).flaky, { succeededOnAttempt: 3, by: 'A' });
    assert.equal(taskOf(await view(id), 'flaky').attempts, 3);
    assert.deepEqual(
      workers[0]!.events.filter((e) => e.flowId === id).map((e) => e.attempt),
      [1, 2, 3],
    );
  });

  test('a TerminalError is not retried: dead letter with its code, the fail_flow stage fails the flow, one callback', async () => {
    const id = await submit('reject', {});
    await cb.waitForFlows([id], 20_000);
    const got = cb.byFlow(id);
    assert.equal(got.length, 1);
    assert.equal(got[0]!.body.status, 'failed');
    const t = taskOf(await view(id), 'reject');
    assert.equal(t.attempts, 1, 'no retry');
    assert.equal(t.error?.code, 'terminal');
    assert.equal(workers[0]!.events.filter((e) => e.flowId === id).length, 1, 'ran once');
    const jsm = await j.nc.jetstreamManager();
    const m = await jsm.streams.getMessage('JETFLOW_DLQ', { last_by_subj: 'jetflow.dlq.task.jetflow.task.custom.reject' });
    assert.equal(m.header.get('Jetflow-Flow-Id'), id);
    assert.equal(m.header.get('Jetflow-Dlq-Code'), 'terminal');
    assert.equal(m.header.get('Jetflow-Dlq-Attempts'), '1');
    assert.match(m.header.get('Jetflow-Dlq-Reason'), /record r1 has no language/);
  });

  test('examples/wordcount-worker: its own tests (runTask, no NATS) pass against the packed package', () => {
    // Copied under the project that installed the tarball: '@jetflow/worker' resolves to it, as after npm install there.
    const copy = join(project, 'wordcount-worker');
    cpSync(EXAMPLE, copy, { recursive: true, filter: (src) => !src.includes('node_modules') });
    const out = execFileSync(process.execPath, ['--test', '--test-reporter=tap'], { cwd: copy, encoding: 'utf8', env: { PATH: process.env.PATH ?? '' } });
    assert.match(out, /^# pass [1-9]/m, out);
    assert.match(out, /^# fail 0$/m, out);
    execFileSync(process.execPath, ['--check', 'worker.mjs'], { cwd: copy });
  });

  test('worker.stop() drains: a task that finishes within the grace completes, one past it is handed back and done by the next worker', async () => {
    const a = workers[0]!;
    const id = await submit('drain', { sleepMs: { short: 1_000, long: 5_000 } });
    await a.waitFor((e) => e.flowId === id && e.task === 'short', 10_000, 'start of short');
    await a.waitFor((e) => e.flowId === id && e.task === 'long', 10_000, 'start of long');
    a.proc.kill('SIGTERM'); // grace 3 s: short finishes, long is handed back
    await a.waitFor((e) => e.event === 'stopped', 15_000, 'stopped');
    assert.equal(await a.exited, 0);
    assert.equal(cb.byFlow(id).length, 0, 'the flow waits for its handed-back task');
    const b = startWorker('B', 3_000);
    await b.waitFor((e) => e.event === 'ready', 30_000, 'ready');
    await cb.waitForFlows([id], 20_000);
    const got = cb.byFlow(id);
    assert.equal(got.length, 1);
    assert.equal(got[0]!.body.status, 'succeeded', JSON.stringify(got[0]!.body));
    const results = got[0]!.body.results as Record<string, unknown>;
    assert.deepEqual(results.short, { attempt: 1, by: 'A' }, 'finished within the grace');
    assert.deepEqual(results.long, { attempt: 2, by: 'B' }, 'handed back, then run by the next worker');
    b.proc.kill('SIGTERM');
    assert.equal(await b.exited, 0);
  });
});
