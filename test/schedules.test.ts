import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { headers as natsHeaders } from 'nats';
import { deriveFlowId } from '@jetflow/flows';
import { repoRoot } from '@jetflow/stack';
import { EXIT } from '../scripts/cli/exit.js';
import { startCallbackReceiver, startJetflow, sampleSubmission, waitForConsumers, type CallbackReceiver, type JetflowUnderTest } from '@jetflow/testing';
import { ingestClient } from './grpc-client.js';

// Delayed starts and cron schedules against the real stack: two orchestrator replicas, noop workers.

type View = {
  flowId: string;
  status: string;
  startAt?: string | null;
  startedAt: string | null;
  deadlineAt: string | null;
  stages: Array<{ tasks: Array<{ name: string; status: string; dispatchedAt: string | null }> }>;
};
type Schedule = { id: string; paused: boolean; fired: number; skipped: number; missed: number; nextFireAt: string | null; lastFlowId: string | null };

describe('delayed starts and cron schedules', () => {
  let j: JetflowUnderTest;
  let cb: CallbackReceiver;
  before(async () => {
    cb = await startCallbackReceiver({ secret: 'test-callback-secret' });
    j = await startJetflow({ replicas: { orchestrator: 2 }, env: { JETFLOW_TASK_MODE: 'noop' } });
  });
  after(async () => {
    await j?.stop();
    await cb?.close();
  });

  const view = async (flowId: string): Promise<View | undefined> => {
    const r = await j.api(`/v1/flows/${flowId}`);
    return r.status === 200 ? ((await r.json()) as View) : undefined;
  };
  const waitFor = async (flowId: string, statuses: string[], timeoutMs = 30_000): Promise<View> => {
    for (const until = Date.now() + timeoutMs; ;) {
      const v = await view(flowId);
      if (v && statuses.includes(v.status)) return v;
      if (Date.now() > until) throw new Error(`flow ${flowId} did not reach ${statuses.join('|')} (last: ${v?.status})`);
      await sleep(50);
    }
  };
  const firstDispatch = (v: View) => Math.min(...v.stages[0]!.tasks.map((t) => Date.parse(t.dispatchedAt ?? 'x')));

  test('bad startAt and delayMs are refused with 400 naming the field', async () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ startAt: 'tomorrow' }, 'startAt'],
      [{ startAt: '2026-01-01T10:00:00' }, 'startAt'],
      [{ startAt: new Date(Date.now() + 31 * 86_400_000).toISOString() }, 'startAt'],
      [{ delayMs: -5 }, 'delayMs'],
      [{ delayMs: 'soon' }, 'delayMs'],
      [{ delayMs: 100, startAt: new Date().toISOString() }, 'startAt'],
    ];
    for (const [extra, field] of cases) {
      const r = await j.api('/v1/flows', { method: 'POST', json: sampleSubmission(cb.url, extra) });
      assert.equal(r.status, 400, JSON.stringify(extra));
      const body = (await r.json()) as { error: { code: string; details: Array<{ path: string }> } };
      assert.equal(body.error.code, 'invalid_argument');
      assert.deepEqual(
        body.error.details.map((d) => d.path),
        [field],
        JSON.stringify(extra),
      );
    }
  });

  test('delayMs 1500 over HTTP: 202 scheduled, GET shows it with startAt, then it runs, starting no earlier', async (t) => {
    const r = await j.api('/v1/flows', { method: 'POST', json: sampleSubmission(cb.url, { idempotencyKey: 'delay-1500', delayMs: 1_500, deadlineMs: 5_000 }) });
    assert.equal(r.status, 202);
    const { flowId, status } = (await r.json()) as { flowId: string; status: string };
    assert.equal(status, 'scheduled');
    const s = await waitFor(flowId, ['scheduled', 'running', 'succeeded']);
    assert.equal(s.status, 'scheduled', 'the state exists before the start, as scheduled');
    assert.ok(s.startAt);
    const startAt = Date.parse(s.startAt);
    assert.equal(s.startedAt, null);
    assert.ok(s.stages[0]!.tasks.every((x) => x.status === 'pending' && x.dispatchedAt === null));
    // The deadline counts from the start time.
    assert.equal(Date.parse(s.deadlineAt!), startAt + 5_000);
    // The same submission again: the same flow, still scheduled.
    const again = await j.api('/v1/flows', { method: 'POST', json: sampleSubmission(cb.url, { idempotencyKey: 'delay-1500', delayMs: 1_500, deadlineMs: 5_000 }) });
    assert.equal(((await again.json()) as { flowId: string }).flowId, flowId);
    const done = await waitFor(flowId, ['succeeded', 'partial', 'failed', 'cancelled']);
    assert.equal(done.status, 'succeeded');
    const dispatched = firstDispatch(done);
    assert.ok(dispatched >= startAt, `dispatched ${new Date(dispatched).toISOString()} before its start ${s.startAt}`);
    assert.ok(Date.parse(done.startedAt!) >= startAt);
    t.diagnostic(`started ${dispatched - startAt} ms after startAt`);
    await cb.waitForFlows([flowId]);
    await sleep(300);
    assert.equal(cb.byFlow(flowId).length, 1, 'one callback');
  });

  test('gRPC and the NATS door take startAt and delayMs too', async () => {
    const client = ingestClient(j.grpc, j.apiKey);
    let grpcFlow: string;
    try {
      const s = sampleSubmission(cb.url);
      const r = await client.submit({ flow: 'insights', input: s.input, idempotencyKey: 'grpc-delay', delayMs: 1_000 });
      assert.equal(r.status, 'scheduled');
      grpcFlow = r.flowId;
    } finally {
      client.close();
    }
    const startAt = new Date(Date.now() + 1_500).toISOString();
    const h = natsHeaders();
    h.set('Nats-Msg-Id', 'nats-start-at');
    await j.nc.jetstream().publish('jetflow.ingest.default.insights', new TextEncoder().encode(JSON.stringify({ input: sampleSubmission(cb.url).input, startAt })), { headers: h });
    const natsFlow = deriveFlowId('default', 'nats-start-at');
    for (const id of [grpcFlow, natsFlow]) {
      const s = await waitFor(id, ['scheduled', 'running', 'succeeded']);
      assert.equal(s.status, 'scheduled', id);
    }
    const n = await waitFor(natsFlow, ['succeeded']);
    assert.equal(n.startAt, startAt);
    assert.ok(firstDispatch(n) >= Date.parse(startAt));
    const g = await waitFor(grpcFlow, ['succeeded']);
    assert.ok(firstDispatch(g) >= Date.parse(g.startAt!));
  });

  test('cancel of a scheduled flow: it ends cancelled with one callback and never starts', async () => {
    const r = await j.api('/v1/flows', { method: 'POST', json: sampleSubmission(cb.url, { idempotencyKey: 'cancel-scheduled', delayMs: 2_000 }) });
    const { flowId } = (await r.json()) as { flowId: string };
    const s = await waitFor(flowId, ['scheduled']);
    const c = await j.api(`/v1/flows/${flowId}/cancel`, { method: 'POST', json: { reason: 'not needed' } });
    assert.equal(c.status, 202);
    const v = await waitFor(flowId, ['cancelled', 'succeeded', 'running']);
    assert.equal(v.status, 'cancelled');
    await cb.waitForFlows([flowId]);
    // Past its start time: still cancelled, nothing dispatched, still one callback.
    await sleep(Math.max(0, Date.parse(s.startAt!) - Date.now()) + 1_500);
    const later = (await view(flowId))!;
    assert.equal(later.status, 'cancelled');
    assert.ok(later.stages.flatMap((x) => x.tasks).every((x) => x.status === 'cancelled' && x.dispatchedAt === null));
    const got = cb.byFlow(flowId);
    assert.equal(got.length, 1, 'one callback');
    assert.equal(got[0]!.body.status, 'cancelled');
  });

  test('schedules: bad cron is 400 naming cron; tenant-scoped; */1 with two replicas fires each second once; pause, resume, delete', async (t) => {
    const submission = { flow: 'insights', input: sampleSubmission(cb.url).input };
    const bad = await j.api('/v1/schedules', { method: 'POST', json: { id: 'bad', cron: '*/1 * * * * * * *', submission } });
    assert.equal(bad.status, 400);
    const badBody = (await bad.json()) as { error: { code: string; details: Array<{ path: string }> } };
    assert.deepEqual(
      badBody.error.details.map((d) => d.path),
      ['cron'],
    );
    const badZone = await j.api('/v1/schedules', { method: 'POST', json: { id: 'bad', cron: '* * * * *', timezone: 'Mars/Base', submission } });
    assert.deepEqual(
      ((await badZone.json()) as { error: { details: Array<{ path: string }> } }).error.details.map((d) => d.path),
      ['timezone'],
    );

    const spec = { id: 'tick', cron: '*/1 * * * * *', timezone: 'UTC', submission, overlap: 'allow' };
    const created = await j.api('/v1/schedules', { method: 'POST', json: spec });
    assert.equal(created.status, 201);
    assert.equal((await j.api('/v1/schedules', { method: 'POST', json: spec })).status, 200, 'the same body again');
    assert.equal((await j.api('/v1/schedules', { method: 'POST', json: { ...spec, cron: '*/2 * * * * *' } })).status, 409);
    // Another tenant sees none of it.
    const other = (path: string, init: RequestInit = {}) => fetch(`${j.http}${path}`, { ...init, headers: { authorization: 'Bearer other-key-0123456789abcdef' } });
    assert.deepEqual(await (await other('/v1/schedules')).json(), { schedules: [] });
    assert.equal((await other('/v1/schedules/tick')).status, 404);
    assert.equal((await other('/v1/schedules/tick', { method: 'DELETE' })).status, 404);

    const get = async () => (await (await j.api('/v1/schedules/tick')).json()) as Schedule;
    const flowsOf = async () => {
      const r = await j.api(`/v1/flows?limit=200&metadata=${encodeURIComponent('jetflow-schedule=tick')}`);
      return ((await r.json()) as { flows: Array<{ flowId: string; idempotencyKey: string | null; metadata: Record<string, string> }> }).flows;
    };
    await sleep(5_500);
    const paused = (await (await j.api('/v1/schedules/tick/pause', { method: 'POST' })).json()) as Schedule;
    assert.equal(paused.paused, true);
    assert.equal(paused.nextFireAt, null);
    await sleep(1_500); // a firing under way when the pause came lands now
    const atPause = await get();
    assert.ok(atPause.fired >= 3, `fired ${atPause.fired} times in 5.5 s`);
    await sleep(2_500);
    const stillPaused = await get();
    assert.equal(stillPaused.fired, atPause.fired, 'no firing while paused');

    const resumed = (await (await j.api('/v1/schedules/tick/resume', { method: 'POST' })).json()) as Schedule;
    assert.equal(resumed.paused, false);
    assert.ok(resumed.nextFireAt);
    for (const until = Date.now() + 10_000; (await get()).fired < atPause.fired + 2;) {
      if (Date.now() > until) assert.fail('no firing after resume');
      await sleep(200);
    }
    const del = await j.api('/v1/schedules/tick', { method: 'DELETE' });
    assert.equal(del.status, 200);
    assert.equal((await j.api('/v1/schedules/tick')).status, 404);
    await sleep(1_500);
    const flowsAtDelete = await flowsOf();
    await sleep(2_000);
    const flows = await flowsOf();
    assert.equal(flows.length, flowsAtDelete.length, 'no firing after delete');

    // One flow per fire time: keys are <id>:<fire time>, and every flow id is the one its key derives.
    const keys = flows.map((f) => f.idempotencyKey!);
    assert.equal(new Set(keys).size, keys.length, 'no fire time twice');
    for (const f of flows) {
      assert.match(f.idempotencyKey!, /^tick:\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z$/);
      assert.equal(f.flowId, deriveFlowId('default', f.idempotencyKey!));
      assert.equal(f.metadata['jetflow-fire-at'], f.idempotencyKey!.slice('tick:'.length));
    }
    // Within the first active window every second fired (none skipped silently).
    const times = keys.map((k) => Date.parse(k.slice('tick:'.length))).sort((a, b) => a - b);
    const first = times.filter((x) => x < times[0]! + 3_000);
    for (let i = 1; i < first.length; i++) assert.equal(first[i]! - first[i - 1]!, 1_000, `consecutive seconds: ${first.map((x) => new Date(x).toISOString()).join(', ')}`);
    t.diagnostic(`${flows.length} flows, one per fire time, ${atPause.fired} before the pause`);

    // Both replicas counted what they fired: the sum is one per flow.
    let sum = 0;
    for (const i of [0, 1]) {
      const line = readFileSync(join(j.logDir, `orchestrator-${i}.log`), 'utf8')
        .split('\n')
        .find((l) => l.includes('"metrics listening"'));
      const port = (JSON.parse(line!) as { metricsPort: number }).metricsPort;
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      const m = /^jetflow_schedule_firings_total\{[^}]*outcome="fired"[^}]*\} (\d+)$/m.exec(text);
      assert.ok(m, `replica ${i} exposes the firings counter`);
      assert.match(text, /^jetflow_schedule_firings_total\{[^}]*outcome="missed"[^}]*\} \d+$/m, 'the missed series exists (at zero)');
      sum += Number(m[1]);
    }
    assert.equal(sum, flows.length, 'firings counted across replicas = flows');
  });

  test('overlap skip: no firing while the previous flow still runs (each due time counted as skipped); firing again once it has ended', async () => {
    const submission = { flow: 'insights', input: sampleSubmission(cb.url).input };
    // Without dataset workers the first firing's flow cannot finish.
    await j.stack.kill('dataset-generator', 0, 'SIGKILL');
    const get = async () => (await (await j.api('/v1/schedules/skipper')).json()) as Schedule;
    try {
      assert.equal((await j.api('/v1/schedules', { method: 'POST', json: { id: 'skipper', cron: '* * * * * *', overlap: 'skip', submission } })).status, 201);
      for (const until = Date.now() + 15_000; ;) {
        const s = await get();
        if (s.fired >= 1 && s.skipped >= 3) break;
        assert.ok(Date.now() < until, `fired ${s.fired}, skipped ${s.skipped}`);
        await sleep(200);
      }
      const busy = await get();
      assert.equal(busy.fired, 1, 'one firing while its flow runs');
      assert.equal((await view(busy.lastFlowId!))?.status, 'running');
    } finally {
      j.stack.restart('dataset-generator', 0);
    }
    await waitForConsumers(j.nc, 60_000);
    const first = (await get()).lastFlowId!;
    assert.equal((await waitFor(first, ['succeeded', 'partial', 'failed'])).status, 'succeeded');
    for (const until = Date.now() + 15_000; (await get()).fired < 2;) {
      assert.ok(Date.now() < until, 'fires again once the previous flow has ended');
      await sleep(200);
    }
    assert.equal((await j.api('/v1/schedules/skipper', { method: 'DELETE' })).status, 200);
  });

  test('jetflow schedules create|list|get|pause|resume|delete', async () => {
    const cli = (args: string[]) =>
      new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
        execFile(
          process.execPath,
          [join(repoRoot(), 'dist', 'scripts', 'jetflow.js'), ...args],
          { env: { PATH: process.env.PATH ?? '', NO_COLOR: '1', JETFLOW_URL: j.http, JETFLOW_API_KEY: j.apiKey }, timeout: 30_000 },
          (err, stdout, stderr) => resolve({ code: err ? Number((err as { code?: unknown }).code ?? 1) : 0, stdout, stderr }),
        );
      });
    const file = join(mkdtempSync(join(tmpdir(), 'jetflow-schedules-')), 'nightly.json');
    writeFileSync(
      file,
      JSON.stringify({ id: 'nightly', cron: '0 2 * * *', timezone: 'Europe/Berlin', overlap: 'skip', submission: { flow: 'insights', input: sampleSubmission(cb.url).input } }),
    );
    const created = await cli(['schedules', 'create', file]);
    assert.equal(created.code, 0, created.stderr);
    assert.match(created.stdout, /nightly\s+0 2 \* \* \*\s+Europe\/Berlin\s+insights\s+skip\s+active/);
    assert.match((await cli(['schedules', 'list'])).stdout, /nightly/);
    const got = JSON.parse((await cli(['schedules', 'get', 'nightly'])).stdout) as Schedule;
    assert.equal(got.paused, false);
    assert.ok(got.nextFireAt);
    assert.match((await cli(['schedules', 'pause', 'nightly'])).stdout, /paused/);
    assert.equal((JSON.parse((await cli(['--json', 'schedules', 'get', 'nightly'])).stdout) as Schedule).paused, true);
    assert.match((await cli(['schedules', 'resume', 'nightly'])).stdout, /active/);
    assert.equal((await cli(['schedules', 'delete', 'nightly'])).stdout.trim(), 'deleted nightly');
    assert.equal((await cli(['schedules', 'get', 'nightly'])).code, EXIT.notFound);
    const bad = await cli(['schedules', 'create', '/nonexistent.json']);
    assert.equal(bad.code, EXIT.usage);
  });

  test('a NATS restart under running orchestrators: the schedule goes on firing, one flow per fire time', async () => {
    const submission = { flow: 'insights', input: sampleSubmission(cb.url).input };
    assert.equal((await j.api('/v1/schedules', { method: 'POST', json: { id: 'through-nats', cron: '* * * * * *', submission } })).status, 201);
    const get = async () => (await (await j.api('/v1/schedules/through-nats')).json()) as Schedule;
    for (const until = Date.now() + 15_000; (await get()).fired < 2;) {
      assert.ok(Date.now() < until, 'the schedule fires');
      await sleep(200);
    }
    await j.nats!.restart();
    await waitForConsumers(j.nc, 60_000);
    const after = (await get()).fired;
    for (const until = Date.now() + 20_000; (await get()).fired < after + 3;) {
      assert.ok(Date.now() < until, `fires after the restart (fired ${(await get()).fired})`);
      await sleep(200);
    }
    assert.equal((await j.api('/v1/schedules/through-nats', { method: 'DELETE' })).status, 200);
    await sleep(1_500);
    const r = await j.api(`/v1/flows?limit=200&metadata=${encodeURIComponent('jetflow-schedule=through-nats')}`);
    const keys = ((await r.json()) as { flows: Array<{ idempotencyKey: string }> }).flows.map((f) => f.idempotencyKey);
    assert.equal(new Set(keys).size, keys.length, 'no fire time twice');
  });

  test('a schedule through kill -9 of every orchestrator and a NATS restart: the fire times of the outage fire once each, none lost', async (t) => {
    const submission = { flow: 'insights', input: sampleSubmission(cb.url).input };
    assert.equal((await j.api('/v1/schedules', { method: 'POST', json: { id: 'durable', cron: '* * * * * *', submission } })).status, 201);
    const get = async () => (await (await j.api('/v1/schedules/durable')).json()) as Schedule;
    for (const until = Date.now() + 15_000; (await get()).fired < 2;) {
      assert.ok(Date.now() < until, 'the schedule fires');
      await sleep(200);
    }
    await j.stack.kill('orchestrator', 0, 'SIGKILL');
    await j.stack.kill('orchestrator', 1, 'SIGKILL');
    const downAt = Date.now();
    await j.nats!.restart();
    await sleep(3_000);
    j.stack.restart('orchestrator', 0);
    j.stack.restart('orchestrator', 1);
    await waitForConsumers(j.nc, 60_000);
    const upAt = Date.now();
    await sleep(3_000);
    assert.equal((await j.api('/v1/schedules/durable', { method: 'DELETE' })).status, 200);
    assert.equal((await j.api('/v1/schedules/durable')).status, 404, 'deleted');
    await sleep(2_000);
    const r = await j.api(`/v1/flows?limit=200&metadata=${encodeURIComponent('jetflow-schedule=durable')}`);
    const flows = ((await r.json()) as { flows: Array<{ flowId: string; idempotencyKey: string }> }).flows;
    const times = flows.map((f) => Date.parse(f.idempotencyKey.slice('durable:'.length))).sort((a, b) => a - b);
    assert.equal(new Set(times).size, times.length, 'no fire time twice');
    for (const f of flows) assert.equal(f.flowId, deriveFlowId('default', f.idempotencyKey));
    // Every second from the first firing to the last, the outage's included (within the 30 s catch-up grace).
    for (let i = 1; i < times.length; i++) assert.equal(times[i]! - times[i - 1]!, 1_000, `no gap: ${times.map((x) => new Date(x).toISOString().slice(17, 23)).join(' ')}`);
    assert.ok(times[0]! < downAt && times.at(-1)! > upAt, 'firings before the outage and after it');
    t.diagnostic(`${times.length} fire times, ${Math.round((upAt - downAt) / 1000)} s down`);
  });

  test('a startAt survives kill -9 of every orchestrator and a NATS restart during the wait', async () => {
    const startAt = new Date(Date.now() + 4_000).toISOString();
    const r = await j.api('/v1/flows', { method: 'POST', json: sampleSubmission(cb.url, { idempotencyKey: 'survives', startAt }) });
    assert.equal(r.status, 202);
    const { flowId, status } = (await r.json()) as { flowId: string; status: string };
    assert.equal(status, 'scheduled');
    assert.equal((await waitFor(flowId, ['scheduled'])).status, 'scheduled');
    await j.stack.kill('orchestrator', 0, 'SIGKILL');
    await j.stack.kill('orchestrator', 1, 'SIGKILL');
    await j.nats!.restart();
    await sleep(Math.max(0, Date.parse(startAt) - Date.now()) + 500);
    j.stack.restart('orchestrator', 0);
    j.stack.restart('orchestrator', 1);
    await waitForConsumers(j.nc, 60_000);
    const done = await waitFor(flowId, ['succeeded', 'partial', 'failed', 'cancelled'], 60_000);
    assert.equal(done.status, 'succeeded');
    assert.ok(firstDispatch(done) >= Date.parse(startAt));
    await cb.waitForFlows([flowId], 30_000);
    await sleep(500);
    assert.equal(new Set(cb.byFlow(flowId).map((d) => d.raw)).size, 1, 'one ending');
  });
});
