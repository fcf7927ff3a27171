/**
 * Bulk actions by filter against the real stack (NATS with identities, noop workers): POST /v1/flows:cancel
 * and POST /v1/deadletters:redrive, gRPC CancelFlows and the CLI. A dry run counts and changes nothing; a
 * real run cancels exactly the matching running flows (the others run on and complete, one callback each)
 * and redrives exactly the matching dead letters once; a tenant reaches only its own; bad filters name
 * the field; a bulk cancel cut short by kill -9 of ingest (with the orchestrator down too) is completed
 * by running it again.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import { create } from '@bufbuild/protobuf';
import { CancelFlowsRequestSchema, type CancelFlowsResponse } from '@jetflow/proto';
import { repoRoot } from '@jetflow/stack';
import { assertExactlyOnce, type CallbackReceiver, type JetflowUnderTest } from '@jetflow/testing';
import { ingestServiceDefinition } from '../services/ingest/src/adapters/grpc.js';
import { flowControlSuite } from './flow-control-suite.js';

const OTHER_KEY = 'other-key-0123456789abcdef';

type Json = Record<string, unknown>;

describe('bulk actions by filter', () => {
  let j: JetflowUnderTest;
  let cb: CallbackReceiver;
  const { until } = flowControlSuite((s) => ({ j, cb } = s), {
    jetflow: { env: { JETFLOW_CALLBACK_MAX_ATTEMPTS: '2', JETFLOW_CALLBACK_BACKOFF_MS: '50', JETFLOW_CALLBACK_BACKOFF_MAX_MS: '100' } },
  });
  const call = async (method: string, path: string, body?: unknown, key = j.apiKey) => {
    const r = await fetch(`${j.http}${path}`, {
      method,
      headers: { authorization: `Bearer ${key}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    return { status: r.status, body: (await r.json()) as Json };
  };
  const submit = async (batch: string, key = j.apiKey) => {
    const r = await call('POST', '/v1/flows', { flow: 'approvals', input: {}, callbackUrl: cb.url, metadata: { batch } }, key);
    assert.equal(r.status, 202, JSON.stringify(r.body));
    return r.body.flowId as string;
  };
  const statusOf = async (id: string, key = j.apiKey) => (await call('GET', `/v1/flows/${id}`, undefined, key)).body.status as string;
  const allIn = (ids: string[], status: string, key = j.apiKey) =>
    until(`${ids.length} flows ${status}`, async () => ((await Promise.all(ids.map((id) => statusOf(id, key)))).every((s) => s === status) ? true : undefined), 30_000);
  const signal = async (id: string, key = j.apiKey) => {
    const r = await fetch(`${j.http}/v1/flows/${id}/signals/approved`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: '{"ok":true}',
    });
    assert.equal(r.status, 202, await r.text());
  };
  const cancelBulk = (body: unknown, key = j.apiKey) => call('POST', '/v1/flows:cancel', body, key);
  const redriveBulk = (body: unknown, key = j.apiKey) => call('POST', '/v1/deadletters:redrive', body, key);
  /** Follows `next` to the end; the summed counts. */
  const cancelAll = async (body: Json, key = j.apiKey) => {
    const sum = { matched: 0, cancelled: 0, alreadyFinished: 0, failed: 0, calls: 0 };
    for (let cursor: string | null = null; ;) {
      const r = await cancelBulk({ ...body, ...(cursor ? { cursor } : {}) }, key);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      sum.calls++;
      for (const k of ['matched', 'cancelled', 'alreadyFinished', 'failed'] as const) sum[k] += r.body[k] as number;
      cursor = r.body.next as string | null;
      if (!cursor) return sum;
    }
  };
  const detailPath = (b: Json) => ((b.error as { details: Array<{ path: string }> }).details[0] ?? { path: '' }).path;

  /** The CLI from source (tsx) with the test key; exit code and output. */
  const cli = (args: string[], key = j.apiKey) =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
      const p = spawn(process.execPath, ['--import', 'tsx', join(repoRoot(), 'scripts', 'jetflow.ts'), ...args], {
        cwd: repoRoot(),
        env: { PATH: process.env.PATH ?? '', NO_COLOR: '1', JETFLOW_URL: j.http, JETFLOW_API_KEY: key },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      p.on('error', reject);
      p.on('close', (code) => resolve({ code, stdout, stderr }));
    });

  test('a dry run counts and changes nothing; a real run cancels exactly the matching running flows; the others complete with one callback each', async () => {
    const a = await Promise.all(Array.from({ length: 5 }, () => submit('a')));
    const b = await Promise.all(Array.from({ length: 3 }, () => submit('b')));
    const theirs = await Promise.all(Array.from({ length: 2 }, () => submit('a', OTHER_KEY)));
    await allIn([...a, ...b], 'running');
    await allIn(theirs, 'running', OTHER_KEY);

    const dry = await cancelBulk({ filter: { metadata: 'batch=a', flow: 'approvals' }, dryRun: true });
    assert.equal(dry.status, 200, JSON.stringify(dry.body));
    assert.equal(dry.body.dryRun, true);
    assert.equal(dry.body.matched, 5);
    assert.equal(dry.body.complete, true);
    assert.equal(dry.body.next, null);
    assert.deepEqual([...(dry.body.flowIds as string[])].sort(), [...a].sort());
    // The CLI's dry run says the same; nothing is cancelled.
    const cliDry = await cli(['flows', 'cancel', '--filter', 'metadata=batch=a', '--dry-run']);
    assert.equal(cliDry.code, 0, cliDry.stderr);
    assert.match(cliDry.stdout, /would cancel 5 flows/);
    for (const id of a) assert.ok(cliDry.stdout.includes(id), `${id} listed`);
    await sleep(300);
    for (const id of [...a, ...b]) assert.equal(await statusOf(id), 'running', 'a dry run changes nothing');

    // A tenant reaches only its own: the other tenant's bulk cancel of batch=a cancels its two, not ours.
    const forbidden = await cancelBulk({ filter: { metadata: 'batch=a', tenant: 'default' } }, OTHER_KEY);
    assert.equal(forbidden.status, 403);
    assert.equal(detailPath(forbidden.body), 'filter.tenant');
    const theirsCancelled = await cancelAll({ filter: { metadata: 'batch=a' } }, OTHER_KEY);
    assert.deepEqual(theirsCancelled, { matched: 2, cancelled: 2, alreadyFinished: 0, failed: 0, calls: 1 });
    await allIn(theirs, 'cancelled', OTHER_KEY);
    for (const id of a) assert.equal(await statusOf(id), 'running', "another tenant's bulk cancel leaves ours");

    // Two per request: the caller follows next.
    const real = await cancelAll({ filter: { metadata: 'batch=a' }, limit: 2, reason: 'bulk test' });
    assert.equal(real.cancelled, 5, JSON.stringify(real));
    assert.equal(real.failed, 0);
    assert.ok(real.calls >= 3, `${real.calls} calls of at most 2`);
    await allIn(a, 'cancelled');
    for (const id of b) assert.equal(await statusOf(id), 'running', 'batch b was not selected');
    // Again: nothing matches any more.
    const again = await cancelBulk({ filter: { metadata: 'batch=a' } });
    assert.deepEqual(again.body, { dryRun: false, matched: 0, cancelled: 0, alreadyFinished: 0, failed: 0, failures: [], next: null });

    // The others run on and complete; every flow has exactly one callback, with the state it ended in.
    for (const id of b) await signal(id);
    await assertExactlyOnce(j, cb, b, { allowed: ['succeeded'], timeoutMs: 30_000 });
    await assertExactlyOnce(j, cb, a, { allowed: ['cancelled'], timeoutMs: 30_000 });
    for (const id of a) assert.equal(cb.byFlow(id).length, 1);
  });

  test('refusals name the field: an empty filter without all, an ended status, an unknown field, a bad time; the listing takes the same filter', async () => {
    for (const [body, path] of [
      [{}, 'all'],
      [{ filter: {} }, 'all'],
      [{ filter: { status: 'failed' } }, 'filter.status'],
      [{ filter: { colour: 'red' } }, 'filter.colour'],
      [{ filter: { submittedAfter: 'yesterday' } }, 'filter.submittedAfter'],
      [{ filter: { flow: 'approvals' }, limit: 100_000 }, 'limit'],
      [{ filter: { flow: 'approvals' }, dryrun: true }, 'dryrun'],
    ] as const) {
      const r = await cancelBulk(body);
      assert.equal(r.status, 400, `${JSON.stringify(body)}: ${JSON.stringify(r.body)}`);
      assert.equal(detailPath(r.body), path, JSON.stringify(r.body));
    }
    const dl = await redriveBulk({ filter: { source: 'callback' }, all: 'yes' });
    assert.equal(dl.status, 400);
    assert.equal(detailPath(dl.body), 'all');
    assert.equal(detailPath((await redriveBulk({})).body), 'all');
    assert.equal(detailPath((await redriveBulk({ filter: { subject: 'not.jetflow' } })).body), 'filter.subject');
    // GET /v1/flows with the bulk filter's fields.
    const since = new Date(Date.now() - 60_000).toISOString();
    const listed = await call('GET', `/v1/flows?flow=approvals&submittedAfter=${encodeURIComponent(since)}&metadata=batch%3Db`);
    assert.equal(listed.status, 200, JSON.stringify(listed.body));
    assert.equal((listed.body.flows as unknown[]).length, 3);
    assert.equal((await call('GET', '/v1/flows?submittedBefore=never')).status, 400);
    assert.equal((await call('GET', '/v1/flows?tenant=default', undefined, OTHER_KEY)).status, 403);
    // The CLI: a refused request exits 1 and prints the field; a usage mistake exits 3.
    const refused = await cli(['flows', 'cancel']);
    assert.equal(refused.code, 1, refused.stdout + refused.stderr);
    assert.match(refused.stderr, /all: /);
    assert.equal((await cli(['flows', 'cancel', '--filter', 'nokey'])).code, 3);
  });

  test('gRPC CancelFlows: a dry run counts like HTTP; another tenant is refused; a real run cancels', async () => {
    const ids = await Promise.all(Array.from({ length: 3 }, () => submit('grpc')));
    await allIn(ids, 'running');
    const Ctor = grpc.makeGenericClientConstructor(ingestServiceDefinition(), 'IngestService');
    const client = new Ctor(j.grpc, grpc.credentials.createInsecure()) as unknown as Record<string, (...a: unknown[]) => unknown> & grpc.Client;
    const rpc = (req: Parameters<typeof create<typeof CancelFlowsRequestSchema>>[1], key = j.apiKey) =>
      new Promise<CancelFlowsResponse>((resolve, reject) => {
        const md = new grpc.Metadata();
        md.set('authorization', `Bearer ${key}`);
        (client.cancelFlows as (r: unknown, m: grpc.Metadata, cb: (e: grpc.ServiceError | null, r: CancelFlowsResponse) => void) => void).call(
          client,
          create(CancelFlowsRequestSchema, req),
          md,
          (e, r) => (e ? reject(e) : resolve(r)),
        );
      });
    try {
      const dry = await rpc({ filter: { metadata: 'batch=grpc' }, dryRun: true });
      assert.equal(dry.matched, 3);
      assert.deepEqual([...dry.flowIds].sort(), [...ids].sort());
      await assert.rejects(rpc({ filter: { metadata: 'batch=grpc', tenant: 'default' } }, OTHER_KEY), (e: grpc.ServiceError) => e.code === grpc.status.PERMISSION_DENIED);
      await assert.rejects(rpc({}), (e: grpc.ServiceError) => e.code === grpc.status.INVALID_ARGUMENT && /all/.test(e.details));
      const real = await rpc({ filter: { metadata: 'batch=grpc', status: ['running'] } });
      assert.equal(real.cancelled, 3);
      assert.equal(real.next, '');
      await allIn(ids, 'cancelled');
      await assertExactlyOnce(j, cb, ids, { allowed: ['cancelled'], timeoutMs: 30_000 });
    } finally {
      client.close();
    }
  });

  test('redrive by filter redrives exactly the matching dead letters, once; a second identical call redrives nothing', async () => {
    // Callbacks the receiver refuses: two flows of ours, one of the other tenant's, dead-lettered.
    cb.failWith = 503;
    const ours = [await submit('dl'), await submit('dl')];
    const theirs = await submit('dl', OTHER_KEY);
    await allIn(ours, 'running');
    await allIn([theirs], 'running', OTHER_KEY);
    for (const id of ours) await signal(id);
    await signal(theirs, OTHER_KEY);
    type Dl = { seq: number; flowId: string | null };
    const dlOf = async (key: string, flows: string[]) =>
      until(
        'the callbacks dead-lettered',
        async () => {
          const r = await call('GET', '/v1/deadletters?source=callback&code=callback_failed&limit=200', undefined, key);
          const found = (r.body.deadLetters as Dl[]).filter((d) => d.flowId && flows.includes(d.flowId));
          return found.length === flows.length ? found : undefined;
        },
        30_000,
      );
    const mine = await dlOf(j.apiKey, ours);
    const other = await dlOf(OTHER_KEY, [theirs]);
    cb.failWith = undefined;
    const body = { filter: { source: 'callback', code: 'callback_failed', subject: 'jetflow.callback.>' } };

    const dry = await redriveBulk({ ...body, dryRun: true });
    assert.equal(dry.status, 200, JSON.stringify(dry.body));
    assert.deepEqual([...(dry.body.seqs as number[])].sort(), mine.map((d) => d.seq).sort(), 'only our own dead letters');
    assert.equal(dry.body.matched, 2);
    await sleep(300);
    for (const id of ours) assert.equal(cb.byFlow(id).length, 0, 'a dry run redrives nothing');

    // The CLI runs the real one.
    const run = await cli(['deadletters', 'redrive', '--filter', 'source=callback', '--filter', 'code=callback_failed', '--filter', 'subject=jetflow.callback.>']);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.match(run.stdout, /redriven 2, already redriven 0, failed 0/);
    await assertExactlyOnce(j, cb, ours, { allowed: ['succeeded'], timeoutMs: 30_000 });
    // A second identical call finds nothing to redrive, and the deliveries stay at one each.
    const second = await redriveBulk(body);
    assert.deepEqual(second.body, { dryRun: false, matched: 0, redriven: 0, alreadyRedriven: 0, failed: 0, failures: [], next: null });
    await sleep(500);
    for (const id of ours) assert.equal(cb.byFlow(id).length, 1, 'delivered once');
    // The other tenant's dead letter is still there, untouched.
    assert.equal((await call('GET', `/v1/deadletters/${other[0]!.seq}`, undefined, OTHER_KEY)).status, 200);
    assert.equal(cb.byFlow(theirs).length, 0);
    // An operator key (the test key) reaches it by naming the tenant.
    const op = await redriveBulk({ filter: { tenant: 'other', flowId: theirs } });
    assert.equal(op.body.redriven, 1, JSON.stringify(op.body));
    await cb.waitForFlows([theirs], 30_000);
    await sleep(300);
    assert.deepEqual(
      cb.byFlow(theirs).map((d) => d.body.status),
      ['succeeded'],
    );
  });

  test('a bulk redrive cut short by kill -9 of ingest is completed by running it again: each callback is delivered once', async (t) => {
    cb.failWith = 503;
    const ids = await Promise.all(Array.from({ length: 30 }, () => submit('redrive-crash')));
    await allIn(ids, 'running');
    for (const id of ids) await signal(id);
    await until(
      'the 30 callbacks dead-lettered',
      async () => {
        const r = await redriveBulk({ filter: { source: 'callback', code: 'callback_failed' }, dryRun: true });
        return (r.body.matched as number) >= 30 ? true : undefined;
      },
      30_000,
    );
    cb.failWith = undefined;
    const body = { filter: { source: 'callback', code: 'callback_failed' }, limit: 1_000 };
    const first = redriveBulk(body).catch((err: unknown) => err);
    await sleep(30);
    await j.stack.kill('ingest');
    await first;
    j.stack.restart('ingest');
    await until('ingest back', async () => ((await fetch(`${j.http}/readyz`).catch(() => null))?.status === 200 ? true : undefined), 30_000);
    const again = await redriveBulk(body);
    assert.equal(again.status, 200, JSON.stringify(again.body));
    assert.equal(again.body.failed, 0, JSON.stringify(again.body));
    assert.equal(again.body.next, null);
    t.diagnostic(`after the kill: redriven ${String(again.body.redriven)}, already redriven ${String(again.body.alreadyRedriven)}`);
    await cb.waitForFlows(ids, 30_000);
    await sleep(500);
    for (const id of ids) assert.equal(cb.byFlow(id).length, 1, `${id}: one delivery (${cb.byFlow(id).length})`);
    const left = await redriveBulk({ ...body, dryRun: true });
    assert.equal(left.body.matched, 0, 'nothing left to redrive');
  });

  test('a bulk cancel cut short by kill -9 of ingest, with the orchestrator down, is completed by running it again', async (t) => {
    const ids = await Promise.all(Array.from({ length: 40 }, () => submit('crash')));
    const keep = await submit('keep');
    await allIn([...ids, keep], 'running');
    await j.stack.kill('orchestrator');
    // The first request may be cut anywhere: before, during or after its cancels.
    const first = cancelBulk({ filter: { metadata: 'batch=crash' }, limit: 1_000 }).catch((err: unknown) => err);
    await sleep(40);
    await j.stack.kill('ingest');
    await first;
    j.stack.restart('ingest');
    await until('ingest back', async () => ((await fetch(`${j.http}/readyz`).catch(() => null))?.status === 200 ? true : undefined), 30_000);
    // Again, to the end: what was done is done once more harmlessly (the same cancel message id).
    const again = await cancelAll({ filter: { metadata: 'batch=crash' }, limit: 1_000 });
    assert.equal(again.failed, 0, JSON.stringify(again));
    assert.equal(again.cancelled + again.alreadyFinished, 40, JSON.stringify(again));
    t.diagnostic(`after the kill: ${JSON.stringify(again)}`);
    j.stack.restart('orchestrator');
    await allIn(ids, 'cancelled');
    assert.equal(await statusOf(keep), 'running', 'the flow the filter did not select runs on');
    await assertExactlyOnce(j, cb, ids, { allowed: ['cancelled'], timeoutMs: 60_000 });
    const after = await cancelBulk({ filter: { metadata: 'batch=crash' } });
    assert.equal(after.body.matched, 0, 'nothing left to cancel');
    await signal(keep);
    await assertExactlyOnce(j, cb, [keep], { allowed: ['succeeded'], timeoutMs: 30_000 });
  });
});
