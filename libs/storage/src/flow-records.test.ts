import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { DescribeTableCommand, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DeleteObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { isStorageError } from './errors.js';
import { FlowRecords, type FlowStart } from './flow-records.js';
import type { ObjectStore } from './object-store.js';
import { startFlowRecords, type FlowRecordsFixture } from './flow-records-fixture.js';
import { parseS3Ref } from './refs.js';

describe('FlowRecords against dynalite and s3rver', () => {
  let fx: FlowRecordsFixture;
  let s3: S3Client;
  let dynamo: DynamoDBClient;
  let objects: ObjectStore;
  let flows: FlowRecords;

  const start = (flowId: string, tenant: string, startedAt: string, extra: Partial<FlowStart> = {}): FlowStart => ({
    flowId,
    flow: 'insights',
    tenant,
    startedAt,
    ...extra,
  });

  before(async () => {
    fx = await startFlowRecords({ bucket: 'jetflow-flows-test', table: 'flows-test', inlineLimitBytes: 2048 });
    ({ s3, dynamo, objects, flows } = fx);
  });
  after(async () => {
    await fx?.stop();
  });

  test('ensureTable is idempotent and creates both indexes', async () => {
    await flows.ensureTable();
    const other = new FlowRecords({ dynamo, objects, table: 'flows-race' });
    await Promise.all([other.ensureTable(), other.ensureTable(), other.ensureTable()]);
    const desc = await dynamo.send(new DescribeTableCommand({ TableName: 'flows-test' }));
    assert.equal(desc.Table?.TableStatus, 'ACTIVE');
    assert.deepEqual(desc.Table?.GlobalSecondaryIndexes?.map((g) => g.IndexName).sort(), ['by-tenant', 'by-tenant-status']);
    assert.equal(new FlowRecords({ dynamo, objects }).table, 'jetflow-flows');
  });

  test('recordStarted writes once; a second call is a no-op', async () => {
    const first = start('f-start', 'acme', '2024-05-01T10:00:00Z', {
      idempotencyKey: 'order-1',
      callbackUrl: 'https://hooks.example.com/x',
      metadata: { source: 'crm', empty: '' },
      deadlineAt: new Date('2024-05-01T10:00:10Z'),
    });
    assert.equal(await flows.recordStarted(first), true);
    assert.equal(await flows.recordStarted({ ...first, flow: 'other', idempotencyKey: 'changed' }), false);

    const rec = await flows.get('f-start');
    assert.deepEqual(rec, {
      flowId: 'f-start',
      flow: 'insights',
      tenant: 'acme',
      status: 'running',
      startedAt: '2024-05-01T10:00:00.000Z',
      deadlineAt: '2024-05-01T10:00:10.000Z',
      idempotencyKey: 'order-1',
      metadata: { source: 'crm', empty: '' },
      callbackUrl: 'https://hooks.example.com/x',
    });
    assert.equal(await flows.get('f-unknown'), undefined);
  });

  test('recordFinished writes once; a replay does not overwrite', async () => {
    await flows.recordStarted(start('f-fin', 'acme', '2024-05-01T11:00:00Z'));
    const outcome = {
      status: 'partial' as const,
      finishedAt: '2024-05-01T11:00:04.5Z',
      durationMs: 4500,
      results: [{ analyst: 'sentiment', score: 0.8 }],
      errors: [{ task: 'anomaly', code: 'timeout', message: 'hard limit' }],
      datasets: { text: 's3://b/datasets/f-fin/text.jsonl.gz' },
    };
    assert.equal(await flows.recordFinished('f-fin', outcome), true);
    assert.equal(await flows.recordFinished('f-fin', { ...outcome, status: 'succeeded', results: [{ analyst: 'x' }], errors: [] }), false);
    const rec = await flows.get('f-fin');
    assert.equal(rec?.status, 'partial');
    assert.equal(rec?.finishedAt, '2024-05-01T11:00:04.500Z');
    assert.equal(rec?.durationMs, 4500);
    assert.equal(rec?.errorCount, 1);
    assert.deepEqual(rec?.results, outcome.results);
    assert.deepEqual(rec?.errors, outcome.errors);
    assert.deepEqual(rec?.datasets, outcome.datasets);
    assert.equal(rec?.resultsRef, undefined);

    // A started record cannot be re-opened by a late recordStarted either.
    assert.equal(await flows.recordStarted(start('f-fin', 'acme', '2024-05-01T11:00:00Z')), false);
    assert.equal((await flows.get('f-fin'))?.status, 'partial');
  });

  test('racing recordFinished calls: exactly one wins', async () => {
    await flows.recordStarted(start('f-race', 'acme', '2024-05-01T12:00:00Z'));
    const results = await Promise.all(
      ['succeeded', 'failed', 'partial', 'cancelled', 'succeeded'].map((status, i) =>
        flows.recordFinished('f-race', {
          status: status as 'succeeded',
          finishedAt: new Date(Date.UTC(2024, 4, 1, 12, 0, i)),
          durationMs: i * 1000,
          results: { i },
        }),
      ),
    );
    assert.equal(results.filter(Boolean).length, 1);
    const winner = results.indexOf(true);
    assert.deepEqual((await flows.get('f-race'))?.results, { i: winner });
  });

  test('recordFinished of an unknown flow, and bad input, fail clearly', async () => {
    const finish = { status: 'succeeded' as const, finishedAt: new Date(), durationMs: 1 };
    await assert.rejects(flows.recordFinished('f-never-started', finish), (err: unknown) => {
      assert.ok(isStorageError(err, 'not_found'));
      assert.match(err.message, /f-never-started/);
      return true;
    });
    await flows.recordStarted(start('f-bad', 'acme', '2024-05-01T13:00:00Z'));
    await assert.rejects(flows.recordFinished('f-bad', { ...finish, status: 'running' as unknown as 'failed' }), (err: unknown) => isStorageError(err, 'invalid_argument'));
    await assert.rejects(flows.recordFinished('f-bad', { ...finish, durationMs: -1 }), /durationMs/);
    await assert.rejects(flows.recordFinished('f-bad', { ...finish, finishedAt: 'yesterday' }), /finishedAt/);
    await assert.rejects(flows.recordStarted(start('f-x', 'a#b', '2024-05-01T13:00:00Z')), /tenant/);
    await assert.rejects(flows.recordStarted(start('f-x', 'acme', 'not a date')), /startedAt/);
  });

  test('large results go to S3 through the claim check', async () => {
    await flows.recordStarted(start('f-big', 'acme', '2024-05-01T14:00:00Z'));
    const results = Array.from({ length: 200 }, (_, i) => ({ analyst: `a${i}`, summary: 'z'.repeat(100) }));
    const errors = [{ task: 't', code: 'terminal', message: 'small' }];
    assert.equal(await flows.recordFinished('f-big', { status: 'succeeded', finishedAt: new Date(), durationMs: 10, results, errors }), true);
    const full = await flows.get('f-big');
    assert.match(full?.resultsRef ?? '', /^s3:\/\/jetflow-flows-test\/flows\/f-big\/results\/[0-9a-f]{64}$/);
    assert.deepEqual(full?.results, results);
    assert.deepEqual(full?.errors, errors, 'small fields stay inline');
    assert.equal(full?.errorsRef, undefined);

    const lazy = await flows.get('f-big', { resolve: false });
    assert.equal(lazy?.results, undefined);
    assert.equal(lazy?.resultsRef, full?.resultsRef);
    assert.deepEqual(await objects.getJson(lazy?.resultsRef ?? ''), results);

    // Results far beyond DynamoDB's 400 KB item limit.
    await flows.recordStarted(start('f-huge', 'acme', '2024-05-01T14:00:01Z'));
    const huge = { blob: 'q'.repeat(600_000) };
    assert.equal(await flows.recordFinished('f-huge', { status: 'succeeded', finishedAt: new Date(), durationMs: 1, results: huge }), true);
    assert.deepEqual((await flows.get('f-huge'))?.results, huge);

    // A lost blob is reported as such, not as an unknown flow; the record itself stays readable.
    const { bucket, key } = parseS3Ref((await flows.get('f-huge', { resolve: false }))?.resultsRef ?? '');
    await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
    await assert.rejects(flows.get('f-huge'), (err: unknown) => isStorageError(err, 'invalid_data') && /f-huge/.test(err.message));
    assert.equal((await flows.get('f-huge', { resolve: false }))?.status, 'succeeded');
  });

  test('list: newest first, by status, paged with a cursor', async () => {
    const tenant = 'lister';
    const base = Date.UTC(2024, 0, 1);
    // Insert out of order; every third flow finishes.
    const ids = Array.from({ length: 25 }, (_, i) => i).sort((a, b) => ((a * 7) % 25) - ((b * 7) % 25));
    for (const i of ids) {
      const flowId = `L${String(i).padStart(2, '0')}`;
      await flows.recordStarted(start(flowId, tenant, new Date(base + i * 1000).toISOString()));
      if (i % 3 === 0) {
        await flows.recordFinished(flowId, { status: 'succeeded', finishedAt: new Date(base + i * 1000 + 500), durationMs: 500 });
      }
    }
    await flows.recordStarted(start('other-tenant-flow', 'someone-else', new Date(base).toISOString()));

    const expected = Array.from({ length: 25 }, (_, i) => `L${String(24 - i).padStart(2, '0')}`);
    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await flows.list({ tenant, limit: 10, ...(cursor ? { cursor } : {}) });
      pages++;
      seen.push(...page.items.map((f) => f.flowId));
      cursor = page.cursor;
    } while (cursor);
    assert.deepEqual(seen, expected);
    assert.equal(pages, 3);

    // Exactly one page's worth: no dangling cursor to an empty page.
    const exact = await flows.list({ tenant, limit: 25 });
    assert.equal(exact.items.length, 25);
    assert.equal(exact.cursor, undefined);

    const done = await flows.list({ tenant, status: 'succeeded', limit: 4 });
    assert.deepEqual(
      done.items.map((f) => f.flowId),
      ['L24', 'L21', 'L18', 'L15'],
    );
    assert.ok(done.items.every((f) => f.status === 'succeeded' && f.durationMs === 500 && f.errorCount === 0));
    const rest = await flows.list({ tenant, status: 'succeeded', limit: 100, cursor: done.cursor! });
    assert.deepEqual(
      rest.items.map((f) => f.flowId),
      ['L12', 'L09', 'L06', 'L03', 'L00'],
    );
    assert.equal(rest.cursor, undefined);

    const running = await flows.list({ tenant, status: 'running', limit: 100 });
    assert.equal(running.items.length, 16);
    assert.ok(running.items.every((f) => f.status === 'running'));
    assert.deepEqual((await flows.list({ tenant, status: 'failed' })).items, []);

    // A summary: no results in a listing.
    const [first] = (await flows.list({ tenant, limit: 1 })).items;
    assert.deepEqual(Object.keys(first ?? {}).sort(), ['durationMs', 'errorCount', 'finishedAt', 'flow', 'flowId', 'startedAt', 'status', 'tenant']);
  });

  test('list rejects cursors of another listing and bad limits', async () => {
    await flows.recordStarted(start('c1', 'cur-a', '2024-02-01T00:00:00Z'));
    await flows.recordStarted(start('c2', 'cur-a', '2024-02-01T00:00:01Z'));
    const page = await flows.list({ tenant: 'cur-a', limit: 1 });
    assert.ok(page.cursor);
    await assert.rejects(flows.list({ tenant: 'cur-b', cursor: page.cursor }), (err: unknown) => isStorageError(err, 'invalid_cursor'));
    await assert.rejects(flows.list({ tenant: 'cur-a', status: 'running', cursor: page.cursor }), (err: unknown) => isStorageError(err, 'invalid_cursor'));
    await assert.rejects(flows.list({ tenant: 'cur-a', cursor: 'garbage!' }), (err: unknown) => isStorageError(err, 'invalid_cursor'));
    await assert.rejects(flows.list({ tenant: 'cur-a', limit: 0 }), /limit/);
    await assert.rejects(flows.list({ tenant: 'cur-a', status: 'nope' as 'running' }), /status/);
    const next = await flows.list({ tenant: 'cur-a', limit: 1, cursor: page.cursor });
    assert.deepEqual(
      next.items.map((f) => f.flowId),
      ['c1'],
    );
  });
});
