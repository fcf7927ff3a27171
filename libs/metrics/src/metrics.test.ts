import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { Registry } from 'prom-client';
import { METRICS, combinations, flowDurationHistogram, startMetricsServer, submissionsCounter, taskRetriesCounter, zeroSeries } from './index.js';

describe('metrics', () => {
  test('instruments are shared per registry, and a name cannot change type', () => {
    const r = new Registry();
    assert.equal(flowDurationHistogram(r), flowDurationHistogram(r));
    assert.notEqual(flowDurationHistogram(r), flowDurationHistogram(new Registry()));
    const r2 = new Registry();
    submissionsCounter(r2);
    assert.equal(r2.getSingleMetric(METRICS.submissions)?.constructor.name, 'Counter');
  });

  test('zeroSeries creates every label combination at zero, so the first event is a rise', async () => {
    assert.deepEqual(combinations({ a: ['1', '2'], b: ['x'] }), [
      { a: '1', b: 'x' },
      { a: '2', b: 'x' },
    ]);
    assert.deepEqual(combinations({ a: [] }), []);
    const r = new Registry();
    const h = flowDurationHistogram(r);
    zeroSeries(h, { flow: ['insights'], status: ['succeeded', 'partial'] });
    const c = taskRetriesCounter(r);
    zeroSeries(c, { task: ['text', 'sentiment'] });
    const text = await r.metrics();
    assert.match(text, /^jetflow_flow_duration_seconds_count\{flow="insights",status="partial"\} 0$/m);
    assert.match(text, /^jetflow_flow_duration_seconds_bucket\{le="\+Inf",flow="insights",status="succeeded"\} 0$/m);
    assert.match(text, /^jetflow_task_retries_total\{task="sentiment"\} 0$/m);
    c.inc({ task: 'text' });
    assert.match(await r.metrics(), /^jetflow_task_retries_total\{task="text"\} 1$/m);
  });

  test('GET /metrics serves the registry in Prometheus text; other paths are 404; a taken port moves to a free one', async () => {
    const r = new Registry();
    flowDurationHistogram(r).observe({ flow: 'insights', status: 'succeeded' }, 0.42);
    const blocker = createServer();
    await new Promise<void>((res) => blocker.listen(0, '127.0.0.1', () => res()));
    const taken = (blocker.address() as { port: number }).port;
    const s = await startMetricsServer({ port: taken, host: '127.0.0.1', registry: r });
    try {
      assert.equal(s.movedFrom, taken);
      assert.notEqual(s.port, taken);
      const res = await fetch(`http://127.0.0.1:${s.port}/metrics`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
      const text = await res.text();
      assert.match(text, /^jetflow_flow_duration_seconds_count\{flow="insights",status="succeeded"\} 1$/m);
      assert.match(text, /^jetflow_flow_duration_seconds_bucket\{le="0\.5",flow="insights",status="succeeded"\} 1$/m);
      assert.equal((await fetch(`http://127.0.0.1:${s.port}/other`)).status, 404);
      assert.equal((await fetch(`http://127.0.0.1:${s.port}/healthz`)).status, 200);
    } finally {
      await s.close();
      blocker.close();
    }
  });
});
