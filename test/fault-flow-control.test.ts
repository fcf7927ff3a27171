/**
 * Flow control through faults, on one real stack (NATS with identities, noop workers, two @jetflow/worker
 * processes for a limited subject). Everything is set up first, then goes through the same faults:
 *
 *  1. a NATS restart (kill -9 of nats-server) under running services;
 *  2. kill -9 of the orchestrator, a signal accepted while it is down, kill -9 of ingest and of the
 *     dataset-generator, a second NATS restart, and the orchestrator kept down past the schedules'
 *     catch-up grace (30 s) before it comes back.
 *
 * Then: delayed flows whose start fell in each outage start once, no earlier than startAt, with one
 * callback; the per-second schedule fired each fire time at most once, every one through the first restart,
 * and after the long outage only those within the grace (the older ones counted `missed`, in the API and the
 * metric); signals sent before and after the restarts are applied once, their payloads the tasks' outputs;
 * a waitFor timeout due during the outage fires after it; a paused flow, a paused definition and a paused
 * subject stay paused (a flow of the definition submitted after the outage starts paused, the subject's
 * restarted worker does not take its task) and run once resumed (HTTP and the CLI). Last, a concurrency limit
 * of 2 across kill -9 of a worker holding a lease (never more than 2 run at once, and once the killed
 * worker's lease has expired both slots are used again) and through a NATS restart while both slots are held.
 *
 * Covered elsewhere, not repeated: kill -9 of every orchestrator replica with a schedule and a startAt
 * (test/schedules), a signal accepted while the orchestrator is down (test/signals), a paused flow through
 * kill -9 of the orchestrator (test/pause), a limit of 1 and the lease TTL (test/task-limits).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { deriveFlowId } from '@jetflow/flows';
import { repoRoot, waitForHttp } from '@jetflow/stack';
import { assertExactlyOnce, TEST_API_KEY, testNatsAuth, waitForConsumers, type CallbackReceiver, type JetflowUnderTest } from '@jetflow/testing';
import { flowControlSuite, type FlowView } from './flow-control-suite.js';

const LIMITED = 'jetflow.task.custom.limited2';
const GATED = 'jetflow.task.dataset.embeddings'; // the paused subject: only flow `gated` uses it here
const LEASE_MS = 6_000;
const WAIT_TIMEOUT_MS = 30_000;
const one = (name: string, subject: string, more: Record<string, unknown> = {}) => ({ name, version: 1, deadlineMs: 120_000, tasks: [{ name: 'work', subject, ...more }] });
const FLOWS = [
  ...(JSON.parse(readFileSync(resolve('test/fixtures/signal-flows.json'), 'utf8')) as unknown[]),
  one('tick', 'jetflow.task.analyst.sentiment'),
  one('held', 'jetflow.task.analyst.sentiment'),
  one('gated', GATED),
  { name: 'slowwait', version: 1, deadlineMs: 120_000, tasks: [{ name: 'wait', waitFor: { signal: 'never', timeoutMs: WAIT_TIMEOUT_MS } }] },
  one('limited2', LIMITED, { softLimitMs: 40_000, hardLimitMs: 50_000, maxAttempts: 3, backoff: { initialMs: 100, maxMs: 300, multiplier: 2 }, concurrency: { limit: 2, key: 'tenant' } }),
];

// A worker process of the limited subject: prints each start (with its time), runs flowInput.ms.
const CHILD = `
import { createWorker, defineTask } from ${JSON.stringify(resolve('packages/worker/src/index.ts'))};
const name = process.env.INSTANCE;
const run = async ({ flowInput }, ctx) => {
  const start = Date.now();
  process.stdout.write(JSON.stringify({ started: ctx.flowId, at: start, worker: name, attempt: ctx.attempt }) + '\\n');
  await new Promise((r) => setTimeout(r, flowInput.ms ?? 300));
  return { start, end: Date.now(), worker: name, attempt: ctx.attempt };
};
const worker = await createWorker({
  servers: process.env.NATS_URL, user: process.env.NATS_USER, password: process.env.NATS_PASSWORD, name,
  tasks: [defineTask({ subject: ${JSON.stringify(LIMITED)}, run })],
  concurrency: 4, consumerWaitMs: 20000, limits: { leaseMs: ${LEASE_MS} },
});
process.stdout.write(JSON.stringify({ ready: worker.subjects }) + '\\n');
setInterval(() => undefined, 1000);
`;

type Run = { start: number; end: number; worker: string; attempt: number };
type Started = { started: string; at: number; worker: string; attempt: number };
type Schedule = { fired: number; skipped: number; missed: number };
type Callback = { status: string; results: Record<string, unknown>; datasets: Record<string, unknown>; errors: Array<{ task: string; code: string }> };

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

const dir = mkdtempSync(join(tmpdir(), 'jetflow-fault-fc-'));
const flowsFile = join(dir, 'flows.json');
writeFileSync(flowsFile, JSON.stringify(FLOWS));
writeFileSync(join(dir, 'child.mts'), CHILD);
const ENV = { JETFLOW_TASK_MODE: 'noop', JETFLOW_FLOWS_FILE: flowsFile, JETFLOW_API_KEYS: `default:operator:${TEST_API_KEY},other:other-key-0123456789abcdef` };
const auth = testNatsAuth(ENV, {}, { workers: { lim: [LIMITED] } });

describe('flow control through kill -9 of the services and NATS restarts', () => {
  let j: JetflowUnderTest;
  let cb: CallbackReceiver;
  const { submit, view, task, until, waiting, post, cli } = flowControlSuite((s) => ({ j, cb } = s), { flowsFile, jetflow: { auth, env: ENV } });
  const children: Array<{ proc: ChildProcess; name: string; starts: Started[] }> = [];
  const startChild = (name: string) =>
    new Promise<(typeof children)[number]>((res, rej) => {
      const proc = spawn(process.execPath, ['--import', 'tsx', join(dir, 'child.mts')], {
        cwd: repoRoot(),
        env: { PATH: process.env.PATH ?? '', NATS_URL: j.natsUrls.join(','), ...auth.env('worker:lim'), INSTANCE: name },
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      const c = { proc, name, starts: [] as Started[] };
      children.push(c);
      let buf = '';
      proc.stdout.on('data', (d: Buffer) => {
        buf += d.toString();
        for (let i; (i = buf.indexOf('\n')) >= 0;) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          let m: Partial<Started> & { ready?: string[] };
          try {
            m = JSON.parse(line) as typeof m;
          } catch {
            continue; // a log line
          }
          if (m.ready) res(c);
          else if (m.started) c.starts.push(m as Started);
        }
      });
      proc.on('exit', (code, signal) => rej(new Error(`worker ${name} exited with ${code ?? signal}`)));
    });
  before(async () => {
    await Promise.all([startChild('lim-a'), startChild('lim-b')]);
  });
  after(() => {
    for (const c of children) if (c.proc.exitCode === null) c.proc.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  // What the faults go through, set up by the first test and checked by the next ones.
  const f = {} as {
    delayed1: { id: string; startAt: number };
    delayed2: { id: string; startAt: number };
    sigA: string;
    sigB: string;
    timeout: string;
    paused: string;
    held: string[];
    gated: string;
    downAt: number;
    upAt: number;
  };
  const scheduleOf = async () => (await (await j.api('/v1/schedules/fc-tick')).json()) as Schedule;
  const metricsOfOrchestrator = async () => {
    const port = [...readFileSync(join(j.logDir, 'orchestrator-0.log'), 'utf8').matchAll(/"metricsPort":(\d+)[^\n]*metrics listening/g)].pop()?.[1];
    assert.ok(port, 'the orchestrator logged its metrics port');
    return (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  };
  const delayed = async (key: string, inMs: number) => {
    const startAt = new Date(Date.now() + inMs).toISOString();
    const id = await submit('tick', { idempotencyKey: key, startAt });
    // Accepted, then its state (written by the orchestrator) says scheduled.
    assert.equal((await until(`${id} scheduled`, async () => ((v) => (v.status !== 'accepted' ? v : undefined))(await view(id)))).status, 'scheduled');
    return { id, startAt: Date.parse(startAt) };
  };
  const stillPaused = async (when: string) => {
    let v = await view(f.paused);
    assert.equal(v.paused, true, `${when}: the paused flow`);
    assert.equal(task(v, 'publish')!.status, 'pending', `${when}: nothing of the paused flow dispatched`);
    for (const id of f.held) {
      v = await until(`${id} started`, async () => ((x) => (x.status === 'running' ? x : undefined))(await view(id)));
      assert.equal(v.paused, true, `${when}: ${id} of the paused definition`);
      assert.equal(task(v, 'work')!.status, 'pending', `${when}: nothing of ${id} dispatched`);
    }
    assert.equal(task(await view(f.gated), 'work')!.status, 'dispatched', `${when}: the paused subject's task is not taken`);
    for (const id of [f.paused, ...f.held, f.gated]) assert.equal(cb.byFlow(id).length, 0, `${when}: ${id} has not ended`);
  };

  test('set up: a per-second schedule, delayed flows, flows waiting for signals and a timeout, a paused flow, definition and subject', async () => {
    const created = await post('/v1/schedules', { id: 'fc-tick', cron: '* * * * * *', timezone: 'UTC', overlap: 'allow', submission: { flow: 'tick', input: {} } });
    assert.equal(created.status, 201, await created.clone().text());

    f.sigA = await submit('approvals');
    f.sigB = await submit('twosteps');
    f.timeout = await submit('slowwait');
    f.paused = await submit('approvals');
    await waiting(f.sigA, 'approval');
    await waiting(f.sigB, 'first');
    await waiting(f.timeout, 'wait');
    assert.equal((await post(`/v1/flows/${f.sigB}/signals/one`, { step: 1 })).status, 202);
    await waiting(f.sigB, 'second');

    // The paused flow: its approval arrives while paused, and what it frees waits.
    await waiting(f.paused, 'approval');
    assert.equal((await post(`/v1/flows/${f.paused}/pause`, { reason: 'fault test' })).status, 202);
    await until('paused', async () => ((await view(f.paused)).paused === true ? true : undefined));
    assert.equal((await post(`/v1/flows/${f.paused}/signals/approved`, { ok: true })).status, 202);
    await until('approval taken', async () => (task(await view(f.paused), 'approval')?.status === 'succeeded' ? true : undefined));

    assert.equal((await post('/v1/flow-definitions/held/pause')).status, 200);
    f.held = [await submit('held')];
    assert.equal((await post(`/v1/subjects/${GATED}/pause`)).status, 200);
    await sleep(500); // the workers' watch brings the subject's flag
    f.gated = await submit('gated');
    await until('gated dispatched', async () => (task(await view(f.gated), 'work')?.status === 'dispatched' ? true : undefined));

    for (const until = Date.now() + 15_000; (await scheduleOf()).fired < 2; await sleep(200)) assert.ok(Date.now() < until, 'the schedule fires');
    await stillPaused('before the faults');
  });

  test('a NATS restart under running services', async () => {
    // Due while nats-server is down.
    f.delayed1 = await delayed('fc-delayed-1', 1_500);
    await j.nats!.kill();
    await sleep(2_500);
    await j.nats!.restart();
    await waitForConsumers(j.nc, 60_000, { pausedSubjects: [GATED] });
    await stillPaused('after the NATS restart');
  });

  test('kill -9 of the orchestrator, ingest and a worker, a NATS restart, and the orchestrator down past the catch-up grace', async (t) => {
    // Due during the outage, and the timeout too.
    f.delayed2 = await delayed('fc-delayed-2', 8_000);
    assert.ok(task(await view(f.timeout), 'wait')!.waitingForSignal, 'the waitFor timeout is not due yet');
    await j.stack.kill('orchestrator', 0, 'SIGKILL');
    f.downAt = Date.now();
    // A signal accepted while the orchestrator is down: its record and control go through the NATS restart.
    const r = await post(`/v1/flows/${f.sigA}/signals/approved`, { by: 'fault', n: 1 });
    assert.equal(r.status, 202, await r.clone().text());
    await j.stack.kill('ingest', 0, 'SIGKILL');
    await j.stack.kill('dataset-generator', 0, 'SIGKILL');
    await j.nats!.restart();
    j.stack.restart('ingest', 0);
    await waitForHttp(`${j.http}/readyz`, 60_000);
    j.stack.restart('dataset-generator', 0);
    // Past the 30 s catch-up grace (and the waitFor timeout, and delayed2's start).
    await sleep(Math.max(0, f.downAt + 34_000 - Date.now()));
    f.upAt = Date.now();
    j.stack.restart('orchestrator', 0);
    await waitForConsumers(j.nc, 60_000, { pausedSubjects: [GATED] });
    t.diagnostic(`orchestrator down ${Math.round((f.upAt - f.downAt) / 1000)} s`);
  });

  test('paused things stayed paused (a new flow of the definition starts paused); resume (HTTP and the CLI) runs each once', async () => {
    f.held.push(await submit('held'));
    await sleep(1_500); // room for a wrong dispatch to show
    await stillPaused('after the outage');
    const metrics = await metricsOfOrchestrator();
    assert.match(metrics, /jetflow_paused\{kind="definition"[^}]*\} 1\b/);
    assert.match(metrics, /jetflow_paused\{kind="subject"[^}]*\} 1\b/);
    assert.match(metrics, /jetflow_paused\{kind="flow"[^}]*\} 3\b/, 'the paused flow and the two of the definition');

    assert.equal((await post(`/v1/flows/${f.paused}/resume`)).status, 202);
    assert.match(await cli('resume', 'definition', 'held'), /definition held resumed \(2 flows resumed\)/);
    assert.match(await cli('resume', 'subject', GATED), new RegExp(`subject ${GATED.replaceAll('.', '\\.')} resumed`));
    await assertExactlyOnce(j, cb, [f.paused, ...f.held, f.gated], { allowed: ['succeeded'], timeoutMs: 30_000 });
    assert.deepEqual((cb.byFlow(f.paused)[0]!.body as unknown as Callback).results.publish, { noop: true });
  });

  test('signals before and after the faults are applied once (the payload is the output); the waitFor timeout fired after the outage', async () => {
    assert.equal((await post(`/v1/flows/${f.sigB}/signals/two`, { step: 2 })).status, 202, 'a signal after the restarts');
    await assertExactlyOnce(j, cb, [f.sigA, f.sigB, f.timeout], { allowed: ['succeeded', 'failed'], timeoutMs: 30_000 });
    const a = cb.byFlow(f.sigA)[0]!.body as unknown as Callback;
    assert.equal(a.status, 'succeeded');
    assert.deepEqual(a.datasets.approval, { by: 'fault', n: 1 });
    assert.equal((await view(f.sigA)).signals?.length, 1, 'one signal applied');
    const b = cb.byFlow(f.sigB)[0]!.body as unknown as Callback;
    assert.equal(b.status, 'succeeded');
    assert.deepEqual(b.datasets.first, { step: 1 });
    assert.deepEqual(b.results.second, { step: 2 });
    const tm = cb.byFlow(f.timeout)[0]!.body as unknown as Callback;
    assert.equal(tm.status, 'failed');
    assert.deepEqual(
      tm.errors.map((e) => [e.task, e.code]),
      [['wait', 'timeout']],
    );
  });

  test('delayed flows started once, no earlier than their startAt, one callback each', async () => {
    const ids = [f.delayed1, f.delayed2];
    await assertExactlyOnce(
      j,
      cb,
      ids.map((d) => d.id),
      { allowed: ['succeeded'], timeoutMs: 30_000 },
    );
    for (const d of ids) {
      const v: FlowView = await view(d.id);
      assert.equal(v.startAt && Date.parse(v.startAt), d.startAt);
      assert.ok(Date.parse(v.startedAt!) >= d.startAt, `${d.id} started ${v.startedAt}, before its start ${new Date(d.startAt).toISOString()}`);
      const dispatched = Date.parse(task(v, 'work')!.dispatchedAt!);
      assert.ok(dispatched >= d.startAt, `${d.id} dispatched before its start`);
    }
    assert.ok(Date.parse((await view(f.delayed2.id)).startedAt!) >= f.upAt, 'the second one started once the orchestrator was back');
  });

  test('the schedule: one flow per fire time; none lost to the NATS restart; after the long outage only the grace was caught up, the rest counted missed', async (t) => {
    const fireTimes = async () => {
      const r = await j.api(`/v1/flows?limit=200&metadata=${encodeURIComponent('jetflow-schedule=fc-tick')}`);
      const flows = ((await r.json()) as { flows: Array<{ flowId: string; idempotencyKey: string }> }).flows;
      return { flows, times: flows.map((x) => Date.parse(x.idempotencyKey.slice('fc-tick:'.length))).sort((a, b) => a - b) };
    };
    // Firing again since the orchestrator is back.
    await until('a fire time after the outage', async () => ((await fireTimes()).times.some((x) => x > f.upAt + 2_000) ? true : undefined), 30_000);
    const s = await scheduleOf();
    assert.equal((await j.api('/v1/schedules/fc-tick', { method: 'DELETE' })).status, 200);
    await sleep(1_500); // a firing under way lands
    const { flows, times } = await fireTimes();
    assert.equal(new Set(times).size, times.length, 'no fire time twice');
    for (const x of flows) assert.equal(x.flowId, deriveFlowId('default', x.idempotencyKey));
    const gaps = times.slice(1).flatMap((x, i) => (x - times[i]! === 1_000 ? [] : [[times[i]!, x] as const]));
    const fmt = (x: number) => new Date(x).toISOString().slice(14, 19);
    assert.equal(gaps.length, 1, `one gap, the missed fire times: ${gaps.map(([a, b]) => `${fmt(a)}..${fmt(b)}`).join(' ')}`);
    const [lastBefore, firstAfter] = gaps[0]!;
    assert.ok(lastBefore >= f.downAt - 3_000 && lastBefore <= f.downAt + 1_000, 'fired up to the kill');
    assert.ok(firstAfter >= f.upAt - 30_000 - 1_000, `nothing older than the grace when it was back fired (${fmt(firstAfter)}, back at ${fmt(f.upAt)})`);
    assert.ok(firstAfter < f.upAt - 15_000, 'the grace of the outage was caught up');
    const missed = (firstAfter - lastBefore) / 1_000 - 1;
    t.diagnostic(`${times.length} fire times, ${missed} missed (${fmt(lastBefore)}..${fmt(firstAfter)})`);
    assert.ok(missed >= 1);
    assert.equal(s.missed, missed, "the schedule's missed count");
    assert.equal(s.skipped, 0);
    // The orchestrator's counter started at its restart, before the catch-up.
    const metrics = await metricsOfOrchestrator();
    const m = /^jetflow_schedule_firings_total\{[^}]*outcome="missed"[^}]*\} (\d+)$/m.exec(metrics);
    assert.equal(Number(m?.[1]), missed, 'the missed counter');
  });

  test('concurrency limit 2 across kill -9 of a worker holding a lease: never more than 2 at once; the lease expires and both slots are used again', async (t) => {
    const [a, b] = children as [(typeof children)[number], (typeof children)[number]];
    const ids = await Promise.all(Array.from({ length: 14 }, () => submit('limited2', { input: { ms: 1_500 } })));
    // Kill the worker while one of its tasks has at least 700 ms to run: it holds that slot's lease.
    const running = await until('a task running on lim-a', async () => a.starts.find((s) => ids.includes(s.started) && Date.now() - s.at < 800), 30_000);
    a.proc.kill('SIGKILL');
    const killedAt = Date.now();
    await assertExactlyOnce(j, cb, ids, { allowed: ['succeeded'], timeoutMs: 90_000 });
    const runs = ids.map((id) => (cb.byFlow(id)[0]!.body as unknown as Callback).results.work as Run);
    // The killed worker's runs, each up to the kill (or to its recorded end).
    const killed = a.starts.filter((s) => ids.includes(s.started) && !runs.some((r) => r.worker === 'lim-a' && r.start === s.at)).map((s) => ({ start: s.at, end: killedAt }));
    assert.ok(killed.length >= 1, 'the killed worker held a task');
    assert.equal(maxOverlap([...runs, ...killed]), 2, 'at most 2 at once (the killed runs counted), and the limit is used');
    // Its task ran again, on the worker that lives.
    const rerun = runs[ids.indexOf(running.started)]!;
    assert.equal(rerun.worker, b.name);
    assert.ok(rerun.attempt >= 2, `attempt ${rerun.attempt}`);
    // The dead worker's lease frees at its TTL: before that the live one has at most one slot, after it two.
    const renewedBy = killedAt - LEASE_MS / 3;
    const heldUntil = runs.filter((r) => r.start < renewedBy + LEASE_MS - 500 && r.end > killedAt);
    const freed = runs.filter((r) => r.start >= killedAt + LEASE_MS + 500);
    t.diagnostic(`${killed.length} killed run(s); overlap ${maxOverlap(heldUntil)} while its lease held, ${maxOverlap(freed)} after it expired`);
    assert.ok(maxOverlap(heldUntil) <= 1, 'one slot held by the dead worker until its lease expires');
    assert.equal(maxOverlap(freed), 2, 'both slots again once the lease expired');
  });

  test('concurrency limit 2 through a NATS restart while both slots are held: never more than 2 at once, every flow once', async (t) => {
    const c = await startChild('lim-c'); // two workers again
    const ids = await Promise.all(Array.from({ length: 10 }, () => submit('limited2', { input: { ms: 1_500 } })));
    const live = children.filter((x) => x.proc.exitCode === null && x.proc.signalCode === null);
    const startsOf = () => live.flatMap((x) => x.starts).filter((s) => ids.includes(s.started));
    await until('both slots held', async () => (startsOf().filter((s) => Date.now() - s.at < 1_000).length >= 2 ? true : undefined), 30_000);
    await j.nats!.kill();
    await sleep(2_000);
    await j.nats!.restart();
    await assertExactlyOnce(j, cb, ids, { allowed: ['succeeded'], timeoutMs: 90_000 });
    const runs = ids.map((id) => (cb.byFlow(id)[0]!.body as unknown as Callback).results.work as Run);
    // Every start, the attempts whose result did not count too (each runs its 1.5 s unless it is the recorded run).
    const all = startsOf().map((s) => runs.find((r) => r.worker === s.worker && r.start === s.at) ?? { start: s.at, end: s.at + 1_500 });
    t.diagnostic(`${all.length} starts for ${ids.length} flows, ${new Set(runs.map((r) => r.worker)).size} workers; most at once ${maxOverlap(all)}`);
    assert.ok(runs.some((r) => r.worker === c.name));
    assert.equal(maxOverlap(all), 2, 'at most 2 at once through the restart');
  });
});
