/**
 * Concurrency and rate limits by key against the real stack: two @jetflow/worker processes serve the same
 * subjects; each task writes when it started and ended into its output, and the test counts overlaps.
 * concurrency { limit: 2, key: "tenant" } never has more than 2 running at once (the same tasks without
 * the limit overlap more); a key on an input path limits each value alone; a worker killed with -9 while
 * it holds a slot frees it after the lease TTL and the flows complete; rateLimit { perSecond: 5 } spaces
 * 20 starts over more than 3 s, at most 5 (+1 for window edges) in any second.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fromBinary } from '@bufbuild/protobuf';
import { repoRoot } from '@jetflow/stack';
import { FlowEventSchema } from '@jetflow/proto';
import { TEST_API_KEY, startCallbackReceiver, startJetflow, testNatsAuth, type CallbackReceiver, type JetflowUnderTest, type TestNatsAuth } from '@jetflow/testing';

const SUBJECTS = {
  limited: 'jetflow.task.custom.limited',
  unlimited: 'jetflow.task.custom.unlimited',
  bycustomer: 'jetflow.task.custom.bycustomer',
  rated: 'jetflow.task.custom.rated',
};
const task = (subject: string, more: Record<string, unknown> = {}) => ({
  name: 'work',
  subject,
  softLimitMs: 40_000,
  hardLimitMs: 50_000,
  maxAttempts: 3,
  backoff: { initialMs: 100, maxMs: 300, multiplier: 2 },
  ...more,
});
const flow = (name: string, t: Record<string, unknown>) => ({ name, version: 1, deadlineMs: 120_000, tasks: [t] });
const FLOWS = [
  flow('limited', task(SUBJECTS.limited, { concurrency: { limit: 2, key: 'tenant' } })),
  flow('unlimited', task(SUBJECTS.unlimited)),
  flow('bycustomer', task(SUBJECTS.bycustomer, { concurrency: { limit: 1, key: 'input.customerId' } })),
  // A stage flow: limits work on stage tasks too.
  { name: 'rated', version: 1, deadlineMs: 120_000, stages: [{ name: 'only', onFailure: 'fail_flow', tasks: [task(SUBJECTS.rated, { rateLimit: { perSecond: 5, key: 'tenant' } })] }] },
];
const LEASE_MS = 6_000;

// A worker process: runs `work` for flowInput.ms (flowInput.holdMs on its first attempt), prints each start.
const CHILD = `
import { createWorker, defineTask } from ${JSON.stringify(resolve('packages/worker/src/index.ts'))};
const name = process.env.INSTANCE;
const run = async ({ flowInput }, ctx) => {
  const start = Date.now();
  process.stdout.write(JSON.stringify({ start: ctx.flowId, worker: name, attempt: ctx.attempt }) + '\\n');
  const ms = ctx.attempt === 1 && flowInput.holdMs ? flowInput.holdMs : (flowInput.ms ?? 300);
  await new Promise((r) => setTimeout(r, ms));
  return { start, end: Date.now(), worker: name, attempt: ctx.attempt };
};
const worker = await createWorker({
  servers: process.env.NATS_URL, user: process.env.NATS_USER, password: process.env.NATS_PASSWORD, name,
  tasks: ${JSON.stringify(Object.values(SUBJECTS))}.map((subject) => defineTask({ subject, run })),
  concurrency: 4, consumerWaitMs: 20000, limits: { leaseMs: ${LEASE_MS} },
});
process.stdout.write(JSON.stringify({ ready: worker.subjects }) + '\\n');
setInterval(() => undefined, 1000);
`;

interface Run {
  start: number;
  end: number;
  worker: string;
  attempt: number;
}

/** The most intervals open at one instant (an end at the same ms as a start does not overlap it). */
function maxOverlap(runs: Array<{ start: number; end: number }>): number {
  const ev = runs.flatMap((r): Array<[number, number]> => [
    [r.start, 1],
    [r.end, -1],
  ]);
  ev.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let cur = 0;
  let max = 0;
  for (const [, d] of ev) max = Math.max(max, (cur += d));
  return max;
}

describe('task limits by key', () => {
  let j: JetflowUnderTest;
  let cb: CallbackReceiver;
  let auth: TestNatsAuth;
  let dir: string;
  const children: Array<{ proc: ChildProcess; name: string; starts: Array<{ start: string; worker: string; attempt: number }> }> = [];

  const startChild = (name: string) =>
    new Promise<(typeof children)[number]>((res, rej) => {
      const proc = spawn(process.execPath, ['--import', 'tsx', join(dir, 'child.mts')], {
        cwd: repoRoot(),
        env: { PATH: process.env.PATH ?? '', NATS_URL: j.natsUrls.join(','), ...auth.env('worker:lim'), INSTANCE: name },
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      const c = { proc, name, starts: [] as Array<{ start: string; worker: string; attempt: number }> };
      children.push(c);
      let buf = '';
      proc.stdout.on('data', (d: Buffer) => {
        buf += d.toString();
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          let m: { ready?: string[]; start?: string; worker: string; attempt: number };
          try {
            m = JSON.parse(line) as typeof m;
          } catch {
            continue; // a log line
          }
          if (m.ready) res(c);
          else if (m.start) c.starts.push(m as { start: string; worker: string; attempt: number });
        }
      });
      proc.on('exit', (code) => rej(new Error(`worker ${name} exited with ${code}`)));
    });

  const submit = async (name: string, input: Record<string, unknown>) => {
    const r = await j.api('/v1/flows', { method: 'POST', json: { flow: name, input, callbackUrl: cb.url } });
    assert.equal(r.status, 202, await r.clone().text());
    return ((await r.json()) as { flowId: string }).flowId;
  };
  const runsOf = async (ids: string[], timeoutMs = 60_000) => {
    await cb.waitForFlows(ids, timeoutMs);
    return ids.map((id) => {
      const got = cb.byFlow(id);
      assert.equal(got.length, 1, `one callback for ${id}`);
      assert.equal(got[0]!.body.status, 'succeeded', JSON.stringify(got[0]!.body));
      return (got[0]!.body.results as Record<string, Run>).work!;
    });
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'jetflow-limits-'));
    const flowsFile = join(dir, 'flows.json');
    writeFileSync(flowsFile, JSON.stringify(FLOWS));
    writeFileSync(join(dir, 'child.mts'), CHILD);
    const env = { JETFLOW_FLOWS_FILE: flowsFile, JETFLOW_API_KEYS: `default:operator:${TEST_API_KEY}` };
    auth = testNatsAuth(env, {}, { workers: { lim: Object.values(SUBJECTS) } });
    cb = await startCallbackReceiver();
    j = await startJetflow({ env, auth });
    await Promise.all([startChild('lim-a'), startChild('lim-b')]);
  });
  after(async () => {
    for (const c of children) if (c.proc.exitCode === null) c.proc.kill('SIGKILL');
    await j?.stop();
    await cb?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('concurrency { limit: 2, key: tenant }: 30 flows over two workers never run more than 2 at once; without the limit they overlap more', async () => {
    // The flows' events, live: a task that waits for its limit says so (task.waiting).
    const waiting = new Map<string, string>();
    const sub = j.nc.subscribe('jetflow.event.default.>', {
      callback: (_e, m) => {
        const ev = fromBinary(FlowEventSchema, m.data);
        if (ev.type === 'task.waiting') waiting.set(ev.flowId, ev.message);
      },
    });
    const ids = await Promise.all(Array.from({ length: 30 }, () => submit('limited', { ms: 250 })));
    const runs = await runsOf(ids);
    assert.equal(maxOverlap(runs), 2, 'at most 2 at once, and the limit is used');
    assert.deepEqual(new Set(runs.map((r) => r.worker)), new Set(['lim-a', 'lim-b']), 'both workers ran some');
    assert.ok(
      runs.every((r) => r.attempt === 1),
      'waiting for the limit is no attempt',
    );

    const freeIds = await Promise.all(Array.from({ length: 30 }, () => submit('unlimited', { ms: 250 })));
    const free = await runsOf(freeIds);
    assert.ok(maxOverlap(free) > 2, `without the limit more than 2 overlap (${maxOverlap(free)})`);
    sub.unsubscribe();
    assert.ok(ids.filter((id) => waiting.has(id)).length >= 20, `most limited flows waited (${waiting.size})`);
    assert.equal(waiting.get(ids.find((id) => waiting.has(id))!), 'waiting for its concurrency limit (2 at once per tenant)');
    assert.equal(freeIds.filter((id) => waiting.has(id)).length, 0, 'unlimited tasks never wait');
  });

  test('a key on an input path limits each value on its own', async () => {
    const customers = ['c-1', 'c-2', 'c-3'];
    const ids = await Promise.all(Array.from({ length: 12 }, (_, i) => submit('bycustomer', { customerId: customers[i % 3], ms: 300 })));
    const runs = await runsOf(ids);
    for (const c of customers) {
      const mine = runs.filter((_, i) => i % 3 === customers.indexOf(c));
      assert.equal(maxOverlap(mine), 1, `customer ${c}: one at a time`);
    }
    assert.ok(maxOverlap(runs) > 1, `different customers run at the same time (${maxOverlap(runs)})`);
  });

  test('rateLimit { perSecond: 5 } (a stage task): 20 starts span more than 3 s, at most 5 (+1 at window edges) in any second', async () => {
    const runs = await runsOf(await Promise.all(Array.from({ length: 20 }, () => submit('rated', { ms: 20 }))));
    const starts = runs.map((r) => r.start).sort((a, b) => a - b);
    assert.ok(starts.at(-1)! - starts[0]! >= 3_000, `span ${starts.at(-1)! - starts[0]!} ms`);
    for (const t of starts) {
      const inWindow = starts.filter((s) => s >= t && s < t + 1_000).length;
      assert.ok(inWindow <= 6, `${inWindow} starts in the second from ${t - starts[0]!} ms`);
    }
  });

  test('the flow view shows a task held back by its limit (HTTP and jetflow get): limit 1, the second flow waits while the first runs, then runs', async () => {
    type View = { status: string; stages: Array<{ tasks: Array<{ name: string; status: string; waitingForLimit?: { kind: string; key: string; limit: number; since: string } }> }> };
    const view = async (id: string) => (await (await j.api(`/v1/flows/${id}`)).json()) as View;
    const work = (v: View) => v.stages.flatMap((st) => st.tasks).find((t) => t.name === 'work')!;
    const first = await submit('bycustomer', { customerId: 'visible', holdMs: 5_000 });
    for (const until = Date.now() + 20_000; !children.some((c) => c.starts.some((x) => x.start === first)); await new Promise((r) => setTimeout(r, 50)))
      assert.ok(Date.now() < until, 'the first flow started');
    const second = await submit('bycustomer', { customerId: 'visible', ms: 100 });
    let shown: View | undefined;
    for (const until = Date.now() + 20_000; !(shown = await view(second)) || !work(shown).waitingForLimit; await new Promise((r) => setTimeout(r, 100)))
      assert.ok(Date.now() < until, `the second flow's task shows it waits for its limit: ${JSON.stringify(work(shown))}`);
    const w = work(shown).waitingForLimit!;
    assert.equal(work(shown).status, 'dispatched');
    assert.deepEqual({ kind: w.kind, key: w.key, limit: w.limit }, { kind: 'concurrency', key: 'input.customerId', limit: 1 });
    assert.ok(Number.isFinite(Date.parse(w.since)));
    assert.equal(work(await view(first)).waitingForLimit, undefined, 'the running one does not wait');
    assert.ok(!children.some((c) => c.starts.some((x) => x.start === second)), 'the waiting task has not started');
    // jetflow get prints the same view.
    const got = await new Promise<string>((res, rej) =>
      execFile(
        process.execPath,
        [join(repoRoot(), 'dist', 'scripts', 'jetflow.js'), 'get', second],
        { env: { PATH: process.env.PATH ?? '', JETFLOW_URL: j.http, JETFLOW_API_KEY: j.apiKey } },
        (err, out) => (err ? rej(new Error(err.message)) : res(out)),
      ),
    );
    const fromCli = work(JSON.parse(got) as View);
    assert.ok(fromCli.status !== 'dispatched' || fromCli.waitingForLimit?.key === 'input.customerId', got);

    // Once the first ends, the second runs (attempt 1: waiting was no attempt) and no longer shows the wait.
    const [a, b] = await runsOf([first, second], 40_000);
    assert.ok(b!.start >= a!.end, 'one at a time');
    assert.equal(b!.attempt, 1);
    assert.equal(work(await view(second)).waitingForLimit, undefined);
  });

  test('a task waiting for its limit is cancelled with its flow: it never starts, the flow ends cancelled with one callback', async () => {
    const holder = await submit('bycustomer', { customerId: 'z', holdMs: 4_000 });
    const until = Date.now() + 20_000;
    while (!children.some((c) => c.starts.some((x) => x.start === holder)) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    const waiter = await submit('bycustomer', { customerId: 'z', ms: 100 });
    await new Promise((r) => setTimeout(r, 800));
    const c = await j.api(`/v1/flows/${waiter}/cancel`, { method: 'POST', json: {} });
    assert.equal(c.status, 202, await c.clone().text());
    await cb.waitForFlows([waiter], 20_000);
    const got = cb.byFlow(waiter);
    assert.equal(got.length, 1);
    // The task's result is a cancelled one. The flow's status: `cancelled`, or `partial` when the worker's
    // cancelled result reaches the orchestrator before ingest's cancel control does (a race of the engine,
    // the same for any task that waits in a worker when its flow is cancelled; reported, not fixed here).
    const body = got[0]!.body as unknown as { status: string; results: Record<string, { status: string }> };
    assert.equal(body.results.work!.status, 'cancelled', JSON.stringify(body));
    assert.ok(['cancelled', 'partial'].includes(body.status), JSON.stringify(body));
    assert.ok(!children.some((ch) => ch.starts.some((x) => x.start === waiter)), 'the waiting task never started');
    // The holder still finishes on its slot.
    const [run] = await runsOf([holder], 30_000);
    assert.equal(run!.attempt, 1);
  });

  test('a worker killed with -9 while it holds a slot: the slot frees after the lease TTL and the flows complete, one at a time', async () => {
    const first = await submit('bycustomer', { customerId: 'k', holdMs: 60_000, ms: 300 });
    // Wait for a worker to hold the slot (it prints the start), then queue two more for the same key.
    const until = Date.now() + 30_000;
    let holder: (typeof children)[number] | undefined;
    while (!(holder = children.find((c) => c.starts.some((s) => s.start === first))) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    assert.ok(holder, 'the first task started');
    const more = [await submit('bycustomer', { customerId: 'k', ms: 300 }), await submit('bycustomer', { customerId: 'k', ms: 300 })];
    await new Promise((r) => setTimeout(r, 1_000));
    const other = children.find((c) => c !== holder)!;
    assert.equal(other.starts.filter((s) => more.includes(s.start)).length + holder.starts.filter((s) => more.includes(s.start)).length, 0, 'the others wait for the slot');
    holder.proc.kill('SIGKILL');
    const killedAt = Date.now();
    const runs = await runsOf([first, ...more], 60_000);
    // The first one ran again (attempt 2) on the worker that lives; no two ran at once.
    assert.equal(runs[0]!.worker, other.name);
    assert.equal(runs[0]!.attempt, 2);
    assert.equal(maxOverlap(runs), 1);
    // Nothing of that key started before the dead worker's lease could have expired (its last renewal
    // was at most a third of the TTL before the kill).
    const earliest = Math.min(...runs.map((r) => r.start));
    assert.ok(earliest >= killedAt + LEASE_MS - LEASE_MS / 3 - 500, `started ${earliest - killedAt} ms after the kill`);
  });
});
