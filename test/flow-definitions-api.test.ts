import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { definitionHash, deriveFlowId, type FlowDef } from '@jetflow/flows';
import { repoRoot, waitForHttp } from '@jetflow/stack';
import { EXIT } from '../scripts/cli/exit.js';
import { assertExactlyOnce, jetflowPerSuite, waitForConsumers, type CallbackReceiver, type JetflowUnderTest } from '@jetflow/testing';
import { createWorker, defineTask } from '../packages/worker/src/index.js';

/**
 * Versioned definitions registered while running (PUT /v1/flow-definitions/{name}, operator keys): a new
 * flow runs as soon as it is registered; a new version takes over new submissions while flows in flight
 * finish on the version they started with; the same version again is unchanged, another content under a
 * taken version is refused; the newest version survives a restart and beats the file's older one; the
 * CLI applies a file; a flow naming a subject no worker serves is accepted and completes once one starts.
 */
const limits = (softLimitMs: number, hardLimitMs: number) => ({ softLimitMs, hardLimitMs, maxAttempts: 2, backoff: { initialMs: 100, maxMs: 400, multiplier: 2 } });
const slowFlow = (name: string, version: number, task: string, subject = 'jetflow.task.test.slow'): FlowDef => ({
  name,
  version,
  deadlineMs: 60_000,
  stages: [{ name: 'only', onFailure: 'fail_flow', tasks: [{ name: task, subject, ...limits(20_000, 30_000) }] }],
});
const FRESH_V1 = slowFlow('fresh', 1, 'first');
const FRESH_V2 = slowFlow('fresh', 2, 'second');
const SEEDED_V1 = slowFlow('seeded', 1, 'from-file');
const SEEDED_V2 = slowFlow('seeded', 2, 'from-api');
const CUSTOM_SUBJECT = 'jetflow.task.custom.shout';
const LONELY: FlowDef = {
  name: 'lonely',
  version: 1,
  deadlineMs: 60_000,
  stages: [{ name: 'only', onFailure: 'fail_flow', tasks: [{ name: 'shout', subject: CUSTOM_SUBJECT, ...limits(5_000, 8_000) }] }],
};
const OTHER_KEY = 'other-key-0123456789abcdef';

const dir = mkdtempSync(join(tmpdir(), 'jetflow-defs-api-'));
const flowsFile = join(dir, 'flows.json');
writeFileSync(flowsFile, JSON.stringify([SEEDED_V1]));
const CLI = join(repoRoot(), 'dist', 'scripts', 'jetflow.js');

type View = { status: string; version: number; flow: string };
type ErrorBody = { error: { code: string; message: string; details: Array<{ path: string; message: string }> } };

describe('flow definitions registered while running', () => {
  let j: JetflowUnderTest;
  let cb: CallbackReceiver;
  jetflowPerSuite((s) => ({ j, cb } = s), {
    jetflow: {
      env: { JETFLOW_FLOWS_FILE: flowsFile, JETFLOW_TEST_PLUGINS: '1' },
      serviceEnv: { analyst: { JETFLOW_TASK_SUBJECTS: 'jetflow.task.analyst.>,jetflow.task.test.>' } },
    },
  });
  const put = (def: unknown, name = (def as { name: string }).name, key?: string) =>
    j.api(`/v1/flow-definitions/${name}`, { method: 'PUT', json: def, ...(key ? { headers: { authorization: `Bearer ${key}` } } : {}) });
  const submit = async (flow: string, input: Record<string, unknown> = {}) => {
    const r = await j.api('/v1/flows', { method: 'POST', json: { flow, input, callbackUrl: cb.url } });
    assert.equal(r.status, 202, await r.clone().text());
    return ((await r.json()) as { flowId: string }).flowId;
  };
  const view = async (id: string) => (await (await j.api(`/v1/flows/${id}`)).json()) as View;
  const resultKeys = (id: string) => Object.keys(cb.byFlow(id)[0]!.body.results as object);
  /** Waits until a service's log says it uses this version (the watch has brought it). */
  const waitInUse = async (service: string, def: FlowDef, timeoutMs = 10_000) => {
    const until = Date.now() + timeoutMs;
    const needle = `"flow":"${def.name}","version":${def.version},"hash":"${definitionHash(def)}"`;
    for (;;) {
      const log = readFileSync(join(j.logDir, `${service}-0.log`), 'utf8');
      if (log.split('\n').some((l) => l.includes('flow definition version in use') && l.includes(needle))) return;
      if (Date.now() > until) assert.fail(`${service} never used ${def.name} v${def.version}`);
      await sleep(50);
    }
  };
  const waitDispatched = async (id: string) => {
    const until = Date.now() + 20_000;
    while ((await view(id)).status !== 'running' || !(await (await j.api(`/v1/flows/${id}`)).text()).includes('"dispatched"')) {
      if (Date.now() > until) assert.fail(`${id} never dispatched its task`);
      await sleep(100);
    }
  };

  test('a new flow registered through the API runs at once; v2 takes new submissions while v1 flows finish on v1', async () => {
    const r1 = await put(FRESH_V1);
    assert.equal(r1.status, 201, await r1.clone().text());
    const b1 = (await r1.json()) as { name: string; version: number; hash: string; source: string; outcome: string };
    assert.deepEqual([b1.name, b1.version, b1.hash, b1.source, b1.outcome], ['fresh', 1, definitionHash(FRESH_V1), 'api', 'created']);

    // Submitted at once: ingest took it on the PUT, the orchestrator reads the store if its watch is behind.
    const quick = await submit('fresh', { chaos: { slowMs: 10 } });
    await assertExactlyOnce(j, cb, [quick], { allowed: ['succeeded'] });
    assert.deepEqual(resultKeys(quick), ['first']);

    const inFlight = [await submit('fresh', { chaos: { slowMs: 3_000 } }), await submit('fresh', { chaos: { slowMs: 3_000 } })];
    for (const id of inFlight) await waitDispatched(id);
    const r2 = await put(FRESH_V2);
    assert.equal(r2.status, 201, await r2.clone().text());
    await waitInUse('orchestrator', FRESH_V2);
    const fresh = await submit('fresh', { chaos: { slowMs: 10 } });
    await assertExactlyOnce(j, cb, [...inFlight, fresh], { allowed: ['succeeded'], timeoutMs: 60_000 });
    for (const id of inFlight) {
      assert.deepEqual(resultKeys(id), ['first'], 'an in-flight flow finished on v1');
      assert.equal((await view(id)).version, 1);
    }
    assert.deepEqual(resultKeys(fresh), ['second']);
    assert.equal((await view(fresh)).version, 2);

    const one = (await (await j.api('/v1/flow-definitions/fresh')).json()) as { version: number; hash: string; definition: FlowDef; versions: Array<{ version: number; source: string }> };
    assert.equal(one.version, 2);
    assert.equal(definitionHash(one.definition), definitionHash(FRESH_V2));
    assert.deepEqual(
      one.versions.map((v) => [v.version, v.source]),
      [
        [2, 'api'],
        [1, 'api'],
      ],
    );
    const old = (await (await j.api('/v1/flow-definitions/fresh/versions/1')).json()) as { version: number; definition: FlowDef };
    assert.equal(definitionHash(old.definition), definitionHash(FRESH_V1));
    assert.equal((await j.api('/v1/flow-definitions/fresh/versions/7')).status, 404);
    assert.equal((await j.api('/v1/flow-definitions/nothing-here')).status, 404);
  });

  test('a flow registered a moment ago is started from the NATS door too', async () => {
    const DOOR = slowFlow('door', 1, 'by-nats');
    assert.equal((await put(DOOR)).status, 201);
    await j.nc.jetstream().publish('jetflow.ingest.default.door', new TextEncoder().encode(JSON.stringify({ input: { chaos: { slowMs: 10 } }, callbackUrl: cb.url })), { msgID: 'door-1' });
    const id = deriveFlowId('default', 'door-1');
    await assertExactlyOnce(j, cb, [id], { allowed: ['succeeded'] });
    assert.deepEqual(resultKeys(id), ['by-nats']);
  });

  test('the same version again is unchanged; other content under a taken version, or an older version, is a 409 naming the versions', async () => {
    const again = await put(FRESH_V2);
    assert.equal(again.status, 200);
    assert.equal(((await again.json()) as { outcome: string }).outcome, 'unchanged');
    const noName = await put({ ...FRESH_V1, name: undefined }, 'fresh');
    assert.equal(noName.status, 200, 'name absent in the body: the path names it');

    const changed = await put({ ...FRESH_V2, deadlineMs: 30_000 });
    assert.equal(changed.status, 409);
    const e = (await changed.json()) as ErrorBody;
    assert.equal(e.error.code, 'conflict');
    assert.match(e.error.message, /fresh v2 is stored already with other content .*v3/);
    const older = await put(slowFlow('fresh', 1, 'other'));
    assert.equal(older.status, 409);
    assert.match(((await older.json()) as ErrorBody).error.message, /fresh v1 is stored already with other content/);

    // Two different v3s at the same instant: exactly one wins, the other is told v3 is taken.
    const [a, b] = await Promise.all([put(slowFlow('fresh', 3, 'x')), put(slowFlow('fresh', 3, 'y'))]);
    assert.deepEqual([a.status, b.status].sort(), [201, 409]);
    const listed = (await (await j.api('/v1/flow-definitions/fresh')).json()) as { versions: Array<{ version: number }> };
    assert.deepEqual(
      listed.versions.map((v) => v.version),
      [3, 2, 1],
    );
  });

  test('bad bodies are 400 naming the path; tenant keys get 403', async () => {
    const cases: Array<[unknown, string, RegExp]> = [
      [{ ...FRESH_V1, name: 'other' }, 'name', /the body names "other" but the path names "fresh"/],
      [{ ...FRESH_V1, version: 9, deadlineMs: 'soon' }, 'deadlineMs', /deadlineMs/],
      [slowFlow('fresh', 9, 'first', 'jetflow.task.Bad'), 'stages[0].tasks[0]', /subject "jetflow.task.Bad" must be/],
      [[FRESH_V1], '(root)', /one flow definition/],
    ];
    for (const [body, path, re] of cases) {
      const r = await put(body, 'fresh');
      assert.equal(r.status, 400, JSON.stringify(body).slice(0, 80));
      const e = (await r.json()) as ErrorBody;
      assert.equal(e.error.code, 'invalid_argument');
      assert.equal(e.error.details[0]!.path, path);
      assert.match(e.error.message, re);
    }
    assert.equal((await put(FRESH_V1, 'Not-A-Name')).status, 400);
    for (const r of [await put(slowFlow('sneaky', 1, 't'), 'sneaky', OTHER_KEY), await fetch(`${j.http}/v1/flow-definitions`, { headers: { authorization: `Bearer ${OTHER_KEY}` } })]) {
      assert.equal(r.status, 403);
      assert.equal(((await r.json()) as ErrorBody).error.code, 'permission_denied');
    }
    assert.equal((await j.api('/v1/flow-definitions/sneaky')).status, 404, 'nothing stored for the refused PUT');
  });

  test("the newest version survives an orchestrator restart and beats the file's older version; the list names every source", async () => {
    assert.equal((await put(SEEDED_V2)).status, 201);
    await j.stack.kill('orchestrator', 0, 'SIGKILL');
    j.stack.restart('orchestrator');
    await waitForHttp(`${j.http}/readyz`, 60_000);
    await waitForConsumers(j.nc, 60_000);
    const ids = [await submit('seeded', { chaos: { slowMs: 10 } }), await submit('fresh', { chaos: { slowMs: 10 } })];
    await assertExactlyOnce(j, cb, ids, { allowed: ['succeeded'], timeoutMs: 60_000 });
    assert.deepEqual(resultKeys(ids[0]!), ['from-api'], 'the file holds v1, the store v2: v2 runs');
    assert.equal((await view(ids[0]!)).version, 2);
    assert.equal((await view(ids[1]!)).version, 3);

    const all = (await (await j.api('/v1/flow-definitions')).json()) as {
      flows: Array<{ name: string; newest: number; versions: Array<{ version: number; source: string; hash: string; storedAt: string }> }>;
    };
    const by = Object.fromEntries(all.flows.map((d) => [d.name, d]));
    assert.deepEqual(
      by.insights?.versions.map((v) => v.source),
      ['builtin'],
    );
    assert.deepEqual(
      by.seeded?.versions.map((v) => [v.version, v.source]),
      [
        [2, 'api'],
        [1, 'file'],
      ],
    );
    assert.equal(by.seeded?.newest, 2);
    assert.ok(by.seeded?.versions.every((v) => !Number.isNaN(Date.parse(v.storedAt)) && /^[0-9a-f]{16}$/.test(v.hash)));
  });

  test('jetflow flows apply registers a file (created, unchanged, refused with exit code 1); list and get print them', async () => {
    const file = join(dir, 'apply.json');
    const APPLIED = slowFlow('applied', 1, 'cli');
    writeFileSync(file, JSON.stringify([APPLIED, FRESH_V2, { ...FRESH_V2, deadlineMs: 50_000 }]));
    const r = await cli(['flows', 'apply', file]);
    assert.equal(r.code, EXIT.failed, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.match(lines[0]!, /^created\s+applied v1 \([0-9a-f]{16}\)$/);
    assert.match(lines[1]!, /^unchanged\s+fresh v2/);
    assert.match(lines[2]!, /^refused\s+fresh v2: conflict: fresh v2 is stored already with other content/);
    const again = await cli(['flows', 'apply', join(dir, 'one.json')], { write: ['one.json', JSON.stringify(APPLIED)] });
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /^unchanged\s+applied v1/);

    const list = await cli(['flows', 'list']);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /applied\s+v1\s+[0-9a-f]{16}\s+api/);
    assert.match(list.stdout, /fresh\s+v3\s+[0-9a-f]{16}\s+api\s+.*v3 v2 v1/);
    const get = await cli(['flows', 'get', 'fresh', '--version', '2']);
    assert.equal(get.code, 0, get.stderr);
    assert.equal(definitionHash(JSON.parse(get.stdout) as FlowDef), definitionHash(FRESH_V2));
    assert.equal((await cli(['flows', 'get', 'nope'])).code, EXIT.notFound);

    const id = await submit('applied', { chaos: { slowMs: 10 } });
    await assertExactlyOnce(j, cb, [id], { allowed: ['succeeded'] });
    assert.deepEqual(resultKeys(id), ['cli']);
  });

  test('a flow whose task subject no worker serves is accepted, waits, and completes once a worker for it starts', async () => {
    assert.equal((await put(LONELY)).status, 201);
    const id = await submit('lonely', { words: ['a', 'b'] });
    await sleep(1_500);
    const waiting = await view(id);
    assert.equal(waiting.status, 'running', 'accepted and waiting, not failed');
    const jsm = await j.nc.jetstreamManager();
    const pending = await jsm.streams.info('JETFLOW_TASKS', { subjects_filter: CUSTOM_SUBJECT });
    assert.equal(pending.state.subjects?.[CUSTOM_SUBJECT], 1, 'the task waits in the stream without a consumer');

    // The worker creates the subject's consumer now (the test's own identity may); the waiting task is delivered.
    const shout = defineTask({ subject: CUSTOM_SUBJECT, run: (input) => ({ loud: ((input.flowInput as { words: string[] }).words ?? []).map((w) => w.toUpperCase()) }) });
    const worker = await createWorker({ servers: j.natsUrls, tasks: [shout], concurrency: 2, ...(j.natsAuth ? { user: 'test-admin', password: adminPassword(j) } : {}) });
    try {
      await assertExactlyOnce(j, cb, [id], { allowed: ['succeeded'], timeoutMs: 30_000 });
      assert.deepEqual(cb.byFlow(id)[0]!.body.results, { shout: { loud: ['A', 'B'] } });
    } finally {
      await worker.stop();
    }
  });

  function cli(args: string[], o: { write?: [string, string] } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
    if (o.write) writeFileSync(join(dir, o.write[0]), o.write[1]);
    return new Promise((resolve, reject) => {
      const env = { PATH: process.env.PATH ?? '', NO_COLOR: '1', JETFLOW_URL: j.http, JETFLOW_API_KEY: j.apiKey };
      const p = spawn(process.execPath, [CLI, ...args], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const t = setTimeout(() => p.kill('SIGKILL'), 30_000);
      p.on('error', reject);
      p.on('close', (code) => {
        clearTimeout(t);
        resolve({ code, stdout, stderr });
      });
    });
  }
});

/** The test superuser's password (its identity may create any consumer, as an operator deploying a worker would). */
function adminPassword(j: JetflowUnderTest): string {
  return String(j.natsAuth!.options('admin').pass);
}
