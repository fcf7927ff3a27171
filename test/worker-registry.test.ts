/**
 * The worker registry against the real services: built-in and @jetflow/worker workers announce what they
 * serve in KV jetflow_workers, GET /v1/workers and `jetflow workers` show them, stop() removes an entry,
 * a killed worker's entry turns stale and then expires, and a flow whose subject no live worker serves
 * says which task waits for a worker (HTTP and gRPC GetFlow), then completes once one starts.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pino } from 'pino';
import { createWorker, defineTask, type Worker } from '../packages/worker/src/index.js';
import { repoRoot } from '@jetflow/stack';
import { BUCKETS } from '@jetflow/messaging';
import { ingestClient } from './grpc-client.js';
import { TEST_API_KEY, startCallbackReceiver, startJetflow, testNatsAuth, type CallbackReceiver, type JetflowUnderTest, type TestNatsAuth } from '@jetflow/testing';

const SUBJECT = 'jetflow.task.custom.regtok';
const FLOWS = [
  {
    name: 'regtok',
    version: 1,
    deadlineMs: 120_000,
    stages: [
      {
        name: 'only',
        onFailure: 'fail_flow',
        tasks: [{ name: 'tokenize', subject: SUBJECT, softLimitMs: 2_000, hardLimitMs: 4_000, maxAttempts: 3, backoff: { initialMs: 100, maxMs: 300, multiplier: 2 } }],
      },
    ],
  },
];
const OTHER_KEY = 'other-key-0123456789abcdef';
const CLI = join(repoRoot(), 'dist', 'scripts', 'jetflow.js');

interface Instance {
  id: string;
  name: string;
  service: string;
  version: string;
  host: string;
  pid: number;
  subjects: string[];
  concurrency: number;
  busy: number;
  status: 'live' | 'stale';
}
interface Workers {
  staleAfterIntervals: number;
  workers: Instance[];
  subjects: Array<{ subject: string; instances: number; slots: number; busy: number; pending: number | null }>;
}
type TaskView = { name: string; subject: string | null; status: string; waitingForWorker?: boolean };
interface FlowView {
  status: string;
  stages: Array<{ tasks: TaskView[] }>;
  waitingFor?: Array<{ task: string; subject: string }>;
}

// A worker process of its own, to be killed with SIGKILL (no stop(), no delete of its entry).
const CHILD = `
import { createWorker, defineTask } from ${JSON.stringify(resolve('packages/worker/src/index.ts'))};
const worker = await createWorker({
  servers: process.env.NATS_URL, user: process.env.NATS_USER, password: process.env.NATS_PASSWORD, name: process.env.INSTANCE,
  tasks: [defineTask({ subject: ${JSON.stringify(SUBJECT)}, run: ({ items }) => ({ n: items.length }) })],
  concurrency: 2, announceIntervalMs: 300, consumerWaitMs: 20000, log: undefined,
});
process.stdout.write('ready ' + worker.subjects.join(',') + '\\n');
setInterval(() => undefined, 1000);
`;

describe('worker registry', () => {
  let j: JetflowUnderTest;
  let cb: CallbackReceiver;
  let auth: TestNatsAuth;
  let dir: string;
  const children: ChildProcess[] = [];
  const sdk: Worker[] = [];

  const workers = async (key = TEST_API_KEY) => {
    const r = await fetch(`${j.http}/v1/workers`, { headers: { authorization: `Bearer ${key}` } });
    return { status: r.status, body: (await r.json()) as Workers };
  };
  const until = async <T>(what: string, ms: number, probe: () => Promise<T | undefined>): Promise<T> => {
    const end = Date.now() + ms;
    let last: unknown;
    for (;;) {
      const v = await probe().catch((err: unknown) => void (last = err));
      if (v !== undefined) return v;
      if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms${last ? ` (${(last as Error).message})` : ''}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const instanceOf = async (pred: (i: Instance) => boolean) => (await workers()).body.workers.find(pred);
  const view = async (id: string) => (await (await j.api(`/v1/flows/${id}`)).json()) as FlowView;
  const cli = (args: string[]) =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((res, rej) => {
      const p = spawn(process.execPath, [CLI, ...args], {
        env: { PATH: process.env.PATH ?? '', NO_COLOR: '1', JETFLOW_URL: j.http, JETFLOW_API_KEY: TEST_API_KEY },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      p.on('error', rej);
      p.on('close', (code) => res({ code, stdout, stderr }));
    });
  const startSdk = (name: string) =>
    createWorker({
      servers: j.natsUrls,
      user: auth.env('worker:regtok').NATS_USER!,
      password: auth.env('worker:regtok').NATS_PASSWORD!,
      name,
      tasks: [defineTask({ subject: SUBJECT, run: ({ items }) => ({ words: items.length, by: name }) })],
      concurrency: 3,
      announceIntervalMs: 300,
      consumerWaitMs: 20_000,
      log: pino({ level: 'warn' }),
    }).then((w) => (sdk.push(w), w));

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'jetflow-registry-'));
    const flowsFile = join(dir, 'flows.json');
    writeFileSync(flowsFile, JSON.stringify(FLOWS));
    const env = { JETFLOW_FLOWS_FILE: flowsFile, JETFLOW_API_KEYS: `default:operator:${TEST_API_KEY},other:${OTHER_KEY}`, JETFLOW_WORKER_ANNOUNCE_MS: '300' };
    auth = testNatsAuth(env, {}, { workers: { regtok: [SUBJECT] } });
    cb = await startCallbackReceiver();
    j = await startJetflow({ env, auth });
  });
  after(async () => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    await Promise.all(sdk.map((w) => w.stop(1_000).catch(() => undefined)));
    await j?.stop();
    await cb?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('the built-in workers announce their subjects and slots; a tenant key is refused', async () => {
    const r = await until('both built-in workers', 20_000, async () => {
      const w = await workers();
      return ['dataset-generator', 'analyst'].every((n) => w.body.workers.some((i) => i.name === n && i.status === 'live')) ? w : undefined;
    });
    assert.equal(r.status, 200);
    assert.equal(r.body.staleAfterIntervals, 3);
    const ds = r.body.workers.find((i) => i.name === 'dataset-generator')!;
    assert.equal(ds.service, 'dataset-generator');
    assert.ok(ds.subjects.includes('jetflow.task.dataset.text'), ds.subjects.join(','));
    assert.ok(ds.subjects.every((s) => s.startsWith('jetflow.task.dataset.')));
    assert.ok(ds.concurrency >= 1 && ds.pid > 0 && ds.version.length > 0);
    const an = r.body.workers.find((i) => i.name === 'analyst')!;
    assert.ok(an.subjects.includes('jetflow.task.analyst.sentiment'));
    const sentiment = r.body.subjects.find((s) => s.subject === 'jetflow.task.analyst.sentiment')!;
    assert.deepEqual([sentiment.instances, sentiment.slots, sentiment.pending], [1, an.concurrency, 0]);
    // The custom subject is in a definition but nobody serves it yet.
    assert.deepEqual(
      r.body.subjects.find((s) => s.subject === SUBJECT),
      { subject: SUBJECT, instances: 0, slots: 0, busy: 0, pending: 0 },
    );

    const t = await workers(OTHER_KEY);
    assert.equal(t.status, 403);
    assert.equal((t.body as unknown as { error: { code: string } }).error.code, 'permission_denied');
  });

  test('a flow for a subject no live worker serves is accepted and waits; it completes once a worker starts', async () => {
    const sub = await j.api('/v1/flows', { method: 'POST', json: { flow: 'regtok', input: { records: [{ text: 'a b' }, { text: 'c' }] }, callbackUrl: cb.url } });
    assert.equal(sub.status, 202, await sub.clone().text());
    const id = ((await sub.json()) as { flowId: string }).flowId;
    const waiting = await until('the task dispatched', 15_000, async () => {
      const v = await view(id);
      return v.waitingFor?.length ? v : undefined;
    });
    assert.equal(waiting.status, 'running');
    assert.deepEqual(waiting.waitingFor, [{ task: 'tokenize', subject: SUBJECT }]);
    const t = waiting.stages.flatMap((s) => s.tasks).find((x) => x.name === 'tokenize')!;
    assert.equal(t.status, 'dispatched');
    assert.equal(t.waitingForWorker, true);
    // gRPC GetFlow mirrors the view.
    const grpc = ingestClient(j.grpc, TEST_API_KEY);
    try {
      const g = (await grpc.get(id)).flow as unknown as FlowView;
      assert.deepEqual(g.waitingFor, [{ task: 'tokenize', subject: SUBJECT }]);
    } finally {
      grpc.close();
    }
    const pending = await until('the task pending in its consumer', 10_000, async () => {
      const s = (await workers()).body.subjects.find((x) => x.subject === SUBJECT);
      return s && s.pending === 1 ? s : undefined;
    });
    assert.equal(pending.instances, 0);

    await startSdk('regtok-inproc');
    await cb.waitForFlows([id], 20_000);
    const got = cb.byFlow(id);
    assert.equal(got.length, 1, 'one callback');
    assert.equal(got[0]!.body.status, 'succeeded');
    assert.deepEqual((got[0]!.body.results as Record<string, unknown>).tokenize, { words: 2, by: 'regtok-inproc' });
    const done = await view(id);
    assert.equal(done.status, 'succeeded');
    assert.deepEqual(done.waitingFor, []);
    assert.ok(done.stages.flatMap((s) => s.tasks).every((x) => x.waitingForWorker === false));
  });

  test('an SDK worker shows with its subjects and slots, in the API and the CLI; after stop() its entry is gone', async () => {
    const me = await until('the SDK worker', 10_000, () => instanceOf((i) => i.id === 'regtok-inproc'));
    assert.deepEqual([me.name, me.service, me.subjects, me.concurrency, me.status, me.pid], ['regtok', 'sdk', [SUBJECT], 3, 'live', process.pid]);
    assert.equal(me.version, '0.1.0');
    const row = (await workers()).body.subjects.find((s) => s.subject === SUBJECT)!;
    assert.deepEqual([row.instances, row.slots], [1, 3]);

    const table = await cli(['workers']);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /regtok\s+regtok-inproc\s+sdk\s+0\.1\.0\s+\S+\s+\d+\s+3\s+\d+\s+live\b.*jetflow\.task\.custom\.regtok/);
    assert.match(table.stdout, /jetflow\.task\.custom\.regtok\s+1\s+3\s+/);
    const json = await cli(['--json', 'workers', '--subject', SUBJECT]);
    assert.equal(json.code, 0, json.stderr);
    assert.deepEqual(
      (JSON.parse(json.stdout) as Workers).workers.map((i) => i.id),
      ['regtok-inproc'],
    );
    const tenant = await new Promise<number | null>((res) => {
      const p = spawn(process.execPath, [CLI, 'workers'], { env: { PATH: process.env.PATH ?? '', JETFLOW_URL: j.http, JETFLOW_API_KEY: OTHER_KEY }, stdio: 'ignore' });
      p.on('close', res);
    });
    assert.equal(tenant, 4, 'a tenant key exits with the auth code');

    await sdk.pop()!.stop(1_000);
    await until('the entry removed', 5_000, async () => ((await instanceOf((i) => i.id === 'regtok-inproc')) ? undefined : true));
    const none = await cli(['workers', '--subject', SUBJECT]);
    assert.equal(none.code, 5, 'no live worker for the subject');
  });

  test('a worker killed with SIGKILL turns stale after 3 intervals, then its entry expires', async () => {
    const script = join(dir, 'child.mts');
    writeFileSync(script, CHILD);
    const child = spawn(process.execPath, ['--import', 'tsx', script], {
      cwd: repoRoot(),
      env: { PATH: process.env.PATH ?? '', NATS_URL: j.natsUrls.join(','), ...auth.env('worker:regtok'), INSTANCE: 'regtok-child', LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    children.push(child);
    const live = await until('the child worker live', 30_000, () => instanceOf((i) => i.id === 'regtok-child' && i.status === 'live'));
    assert.equal(live.pid, child.pid);
    assert.deepEqual([live.subjects, live.concurrency], [[SUBJECT], 2]);
    child.kill('SIGKILL');
    const killedAt = Date.now();
    const stale = await until('stale', 10_000, () => instanceOf((i) => i.id === 'regtok-child' && i.status === 'stale'));
    assert.equal(stale.pid, child.pid);
    const row = (await workers()).body.subjects.find((s) => s.subject === SUBJECT)!;
    assert.equal(row.instances, 0, 'a stale instance serves nothing');
    await until('expired', 45_000, async () => ((await instanceOf((i) => i.id === 'regtok-child')) ? undefined : true));
    // Gone from the bucket itself too (its max age), not only from ingest's view.
    const kv = await j.nc.jetstream().views.kv(BUCKETS.workers, { bindOnly: true });
    await until('gone from the bucket', 15_000, async () => ((await kv.get(`regtok.regtok-child`))?.operation === 'PUT' ? undefined : true));
    assert.ok(Date.now() - killedAt >= 25_000, 'removed by the bucket max age, not before');
  });
});
