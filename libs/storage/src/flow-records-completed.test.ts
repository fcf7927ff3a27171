import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startFlowRecords, type FlowRecordsFixture } from './flow-records-fixture.js';
import type { FlowRecords } from './flow-records.js';

describe('FlowRecords.recordCompleted (start and end in one write)', () => {
  let fx: FlowRecordsFixture;
  let flows: FlowRecords;

  before(async () => {
    fx = await startFlowRecords({ bucket: 'jetflow-completed-test', table: 'completed-test', inlineLimitBytes: 2048 });
    ({ flows } = fx);
  });
  after(async () => {
    await fx?.stop();
  });

  const start = (flowId: string, startedAt: string) => ({ flowId, flow: 'insights', tenant: 'acme', startedAt, idempotencyKey: `k-${flowId}`, metadata: { source: 'crm' } });
  const finish = (status: 'succeeded' | 'failed', results: unknown = { sentiment: { headline: 'ok' } }) => ({
    status,
    finishedAt: '2024-06-01T10:00:02Z',
    durationMs: 2000,
    results,
    datasets: { text: { ref: 's3://b/k', rows: 3 } },
    errors: status === 'failed' ? [{ task: 'text', code: 'terminal', message: 'bad' }] : [],
  });

  test('records a finished flow once: readable, listed under its final status, and a replay changes nothing', async () => {
    assert.equal(await flows.recordCompleted(start('c1', '2024-06-01T10:00:00Z'), finish('succeeded')), true);
    assert.equal(await flows.recordCompleted(start('c1', '2024-06-01T10:00:00Z'), finish('failed')), false, 'the first outcome stands');
    const rec = await flows.get('c1');
    assert.equal(rec?.status, 'succeeded');
    assert.equal(rec?.durationMs, 2000);
    assert.equal(rec?.errorCount, 0);
    assert.equal(rec?.idempotencyKey, 'k-c1');
    assert.deepEqual(rec?.results, { sentiment: { headline: 'ok' } });
    assert.deepEqual(rec?.datasets, { text: { ref: 's3://b/k', rows: 3 } });
    const listed = await flows.list({ tenant: 'acme', status: 'succeeded' });
    assert.deepEqual(
      listed.items.map((i) => i.flowId),
      ['c1'],
    );
    assert.deepEqual((await flows.list({ tenant: 'acme', status: 'running' })).items, []);
  });

  test('finishes a flow whose start alone was recorded; large results go to S3', async () => {
    await flows.recordStarted(start('c2', '2024-06-01T11:00:00Z'));
    const big = { sentiment: { perRecord: 'x'.repeat(5000) } };
    assert.equal(await flows.recordCompleted(start('c2', '2024-06-01T11:00:00Z'), finish('failed', big)), true);
    const rec = await flows.get('c2');
    assert.equal(rec?.status, 'failed');
    assert.equal(rec?.errorCount, 1);
    assert.match(rec?.resultsRef ?? '', /^s3:\/\/jetflow-completed-test\/flows\/c2\/results\//);
    assert.deepEqual(rec?.results, big);
    assert.deepEqual(
      (await flows.list({ tenant: 'acme', status: 'failed' })).items.map((i) => i.flowId),
      ['c2'],
    );
  });
});
