import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AckPolicy, headers as natsHeaders } from 'nats';
import { deriveFlowId } from '@jetflow/flows';
import { METRICS } from '@jetflow/metrics';
import { freePort, sampleSubmission, startCallbackReceiver, startJetflow, type CallbackReceiver, type JetflowUnderTest } from '@jetflow/testing';
import { ingestClient } from './grpc-client.js';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Prometheus text format → samples (enough of the format for prom-client's output). */
function parseProm(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

const pick = (samples: Sample[], name: string, labels: Record<string, string> = {}) => samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
const sum = (samples: Sample[], name: string, labels: Record<string, string> = {}) => pick(samples, name, labels).reduce((a, s) => a + s.value, 0);

describe('Prometheus metrics on every service', () => {
  let j: JetflowUnderTest;
  let cb: CallbackReceiver;
  const ports = { orchestrator: 0, 'dataset-generator': 0, analyst: 0 };
  const scrape = async (url: string) => {
    const r = await fetch(url);
    assert.equal(r.status, 200, url);
    assert.match(r.headers.get('content-type') ?? '', /^text\/plain/);
    return parseProm(await r.text());
  };
  const urls = () => ({
    ingest: `${j.http}/metrics`,
    orchestrator: `http://127.0.0.1:${ports.orchestrator}/metrics`,
    'dataset-generator': `http://127.0.0.1:${ports['dataset-generator']}/metrics`,
    analyst: `http://127.0.0.1:${ports.analyst}/metrics`,
  });

  before(async () => {
    cb = await startCallbackReceiver({ secret: 'test-callback-secret' });
    ports.orchestrator = await freePort();
    ports['dataset-generator'] = await freePort();
    j = await startJetflow({
      serviceEnv: {
        orchestrator: { JETFLOW_METRICS_PORT: String(ports.orchestrator) },
        'dataset-generator': { JETFLOW_METRICS_PORT: String(ports['dataset-generator']) },
        // The analyst keeps the harness's port 0 and logs the port it bound.
      },
    });
    const log = readFileSync(join(j.logDir, 'analyst-0.log'), 'utf8');
    const line = log.split('\n').find((l) => l.includes('"metrics listening"'));
    assert.ok(line, 'the analyst logs its metrics port');
    ports.analyst = (JSON.parse(line) as { metricsPort: number }).metricsPort;
    assert.ok(ports.analyst > 0);
  });
  after(async () => {
    await j?.stop();
    await cb?.close();
  });

  test('after flows through every door: flow latency, task durations, callbacks, submissions, dead letters and consumer gauges', async () => {
    // One flow per door, a rejected HTTP submission, and a NATS submission that is dead-lettered.
    const ids: string[] = [];
    const http = await j.api('/v1/flows', { method: 'POST', json: sampleSubmission(cb.url) });
    assert.equal(http.status, 202);
    ids.push(((await http.json()) as { flowId: string }).flowId);
    const bad = await j.api('/v1/flows', { method: 'POST', json: { flow: 'insights', input: { records: 'not a list' } } });
    assert.equal(bad.status, 400);
    const client = ingestClient(j.grpc, j.apiKey);
    ids.push((await client.submit({ flow: 'insights', input: sampleSubmission(cb.url).input, callbackUrl: cb.url })).flowId);
    client.close();
    const js = j.nc.jetstream();
    const h = natsHeaders();
    h.set('Nats-Msg-Id', 'metrics-nats-1');
    await js.publish('jetflow.ingest.default.insights', JSON.stringify(sampleSubmission(cb.url)), { headers: h });
    ids.push(deriveFlowId('default', 'metrics-nats-1'));
    await js.publish('jetflow.ingest.default.insights', 'this is not json');
    await cb.waitForFlows(ids);

    const u = urls();
    // The flow histogram is observed when the orchestrator ends the flow, before the callback is sent.
    const orch = await scrape(u.orchestrator);
    assert.ok(sum(orch, `${METRICS.flowDuration}_count`, { flow: 'insights', status: 'succeeded' }) >= 3, 'three flows observed');
    const le10 = sum(orch, `${METRICS.flowDuration}_bucket`, { flow: 'insights', status: 'succeeded', le: '10' });
    assert.ok(le10 >= 3, 'each ended within its 10 s deadline');
    assert.ok(sum(orch, `${METRICS.flowDuration}_sum`, { flow: 'insights', status: 'succeeded' }) > 0);
    assert.ok(sum(orch, METRICS.callbackAttempts, { outcome: 'delivered' }) >= 3, 'callbacks delivered');
    assert.equal(sum(orch, METRICS.submissions, { door: 'nats', result: 'accepted' }), 1, 'the NATS door, counted where it is first seen');
    assert.equal(sum(orch, METRICS.submissions, { door: 'nats', result: 'rejected' }), 1);
    assert.equal(sum(orch, METRICS.deadLetters, { source: 'ingest', code: 'invalid_argument' }), 1, 'the bad NATS submission was dead-lettered');
    for (const consumer of ['orchestrator-ingest-default', 'callback-sender', 'orchestrator-p0', 'orchestrator-p7']) {
      assert.equal(pick(orch, METRICS.consumerPending, { consumer }).length, 1, `pending of ${consumer}`);
      assert.equal(pick(orch, METRICS.consumerAckPending, { consumer }).length, 1, `ack pending of ${consumer}`);
    }
    assert.ok(pick(orch, 'process_cpu_user_seconds_total', { service: 'orchestrator' }).length === 1, 'default process metrics, labelled by service');
    assert.ok(pick(orch, 'nodejs_eventloop_lag_p99_seconds').length === 1);

    for (const [svc, tasks] of [
      ['dataset-generator', ['text', 'features', 'embeddings']],
      ['analyst', ['sentiment', 'anomaly', 'keywords']],
    ] as const) {
      const m = await scrape(u[svc]);
      for (const task of tasks) {
        assert.ok(sum(m, `${METRICS.taskDuration}_count`, { task, outcome: 'succeeded', service: svc }) >= 3, `${svc}: ${task} counted`);
        const kind = svc === 'analyst' ? 'analyst' : 'dataset';
        const gauge = pick(m, METRICS.consumerPending, { stream: 'JETFLOW_TASKS', consumer: `task-${kind}-${task}` });
        assert.equal(gauge.length, 1, `${svc}: pending gauge of ${task}`);
        assert.equal(gauge[0]!.value, 0, 'nothing left in the backlog');
        assert.equal(pick(m, METRICS.consumerAckPending, { consumer: `task-${kind}-${task}` }).length, 1);
      }
      assert.equal(pick(m, METRICS.consumerPending, { consumer: 'orchestrator-ingest-default' }).length, 0, 'a worker reports only its own consumers');
    }

    const ing = await scrape(u.ingest);
    assert.ok(sum(ing, METRICS.submissions, { door: 'http', result: 'accepted' }) >= 1);
    assert.ok(sum(ing, METRICS.submissions, { door: 'http', result: 'rejected' }) >= 1);
    assert.ok(sum(ing, METRICS.submissions, { door: 'grpc', result: 'accepted' }) >= 1);
    // The ingest service shows every consumer (the operator's overview).
    const consumers = new Set(pick(ing, METRICS.consumerPending).map((s) => s.labels.consumer));
    for (const c of ['orchestrator-ingest-default', 'callback-sender', 'orchestrator-p3', 'task-dataset-text', 'task-analyst-keywords']) assert.ok(consumers.has(c), `ingest shows ${c}`);
  });

  test('the pending gauge is a live backlog: messages nobody consumes show up on the next scrape', async () => {
    const jsm = await j.nc.jetstreamManager();
    // A consumer no service pulls from, on the events stream (limits retention, so nothing else is disturbed).
    await jsm.consumers.add('JETFLOW_EVENTS', { durable_name: 'metrics-probe', ack_policy: AckPolicy.Explicit, filter_subject: 'jetflow.event.metrics-probe.>' });
    for (let i = 0; i < 5; i++) await j.nc.jetstream().publish('jetflow.event.metrics-probe.x', new Uint8Array());
    await new Promise((r) => setTimeout(r, 1_100)); // past the one-second cache
    const ing = await scrape(urls().ingest);
    const g = pick(ing, METRICS.consumerPending, { stream: 'JETFLOW_EVENTS', consumer: 'metrics-probe' });
    assert.equal(g.length, 1);
    assert.equal(g[0]!.value, 5);
  });

  test('the Grafana dashboard queries only metrics the services export', async () => {
    const dash = JSON.parse(readFileSync('deploy/grafana/jetflow.json', 'utf8')) as { panels: Array<{ title: string; targets?: Array<{ expr: string }> }> };
    const exprs = dash.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr })));
    assert.ok(exprs.length >= 8, `${exprs.length} queries`);
    // Declared by some service (a counter nobody has incremented yet has no sample, only its TYPE line).
    const exported = new Set<string>();
    for (const url of Object.values(urls())) {
      const text = await (await fetch(url)).text();
      for (const [, name, type] of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
        exported.add(name!);
        if (type === 'histogram') for (const suffix of ['_bucket', '_count', '_sum']) exported.add(`${name}${suffix}`);
      }
    }
    const known = new Set<string>(Object.values(METRICS));
    for (const { panel, expr } of exprs) {
      for (const [name] of expr.matchAll(/\bjetflow_[a-z_]+/g)) {
        const base = name.replace(/_(bucket|count|sum)$/, '');
        assert.ok(known.has(base), `${panel}: ${name} is a Jetflow metric`);
        assert.ok(exported.has(name), `${panel}: ${name} is exported by some service`);
      }
    }
    for (const want of [
      METRICS.flowDuration,
      METRICS.taskDuration,
      METRICS.taskRetries,
      METRICS.deadLetters,
      METRICS.callbackAttempts,
      METRICS.consumerPending,
      METRICS.consumerAckPending,
    ]) {
      assert.ok(
        exprs.some((e) => e.expr.includes(want)),
        `a panel shows ${want}`,
      );
    }
  });
});
