import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { headers as natsHeaders } from 'nats';
import { repoRoot } from '@jetflow/stack';
import { freePort, sampleSubmission, startCallbackReceiver, startJetflow, waitForConsumers, type CallbackReceiver, type JetflowUnderTest } from '@jetflow/testing';
import { ingestClient } from './grpc-client.js';

// Prometheus's own tools against Jetflow: promtool checks and unit-tests the rules in
// deploy/prometheus and lints each service's real /metrics; then a real Prometheus server (Debian's
// package, like promtool) scrapes a running stack every second while it runs succeeded, failed,
// partial and cancelled flows, retries and dead letters, and every query of the Grafana dashboard is
// evaluated on what it scraped, as Grafana would ask it.

const ROOT = repoRoot();
const PROMTOOL = 'promtool';
const PROMETHEUS = 'prometheus';

function run(cmd: string, args: string[], input?: string) {
  const r = spawnSync(cmd, args, { cwd: ROOT, input, encoding: 'utf8', timeout: 60_000 });
  if (r.error) throw new Error(`${cmd} ${args.join(' ')}: ${r.error.message} (Debian: apt-get install prometheus)`);
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

interface Series {
  metric: Record<string, string>;
  values: Array<[number, string]>;
}

describe('Prometheus: rules, metrics and the Grafana dashboard', () => {
  test('promtool check rules and promtool test rules pass for deploy/prometheus', () => {
    const rules = readdirSync(join(ROOT, 'deploy/prometheus/rules'))
      .filter((f) => f.endsWith('.yml'))
      .map((f) => `deploy/prometheus/rules/${f}`);
    assert.ok(rules.length > 0);
    const check = run(PROMTOOL, ['check', 'rules', ...rules]);
    assert.equal(check.code, 0, check.out);
    assert.doesNotMatch(check.out, /FAILED|WARNING/);
    const tests = readdirSync(join(ROOT, 'deploy/prometheus/tests'))
      .filter((f) => f.endsWith('.yml'))
      .map((f) => `deploy/prometheus/tests/${f}`);
    assert.ok(tests.length > 0);
    const unit = run(PROMTOOL, ['test', 'rules', ...tests]);
    assert.equal(unit.code, 0, unit.out);
    assert.match(unit.out, /SUCCESS/);
    // The alerts the operations docs promise exist.
    const text = rules.map((f) => readFileSync(join(ROOT, f), 'utf8')).join('\n');
    for (const a of ['JetflowFlowsFailing', 'JetflowCallbackDeadLetters', 'JetflowConsumerLag', 'JetflowDeadlineMisses', 'JetflowNoLiveWorker'])
      assert.match(text, new RegExp(`alert: ${a}\\b`));
    const cfg = run(PROMTOOL, ['check', 'config', 'deploy/prometheus/prometheus.yml']);
    assert.equal(cfg.code, 0, cfg.out);
    assert.match(cfg.out, /SUCCESS: 1 rule files found/);
  });

  describe('on a running stack', () => {
    let j: JetflowUnderTest;
    let cb: CallbackReceiver;
    let prom: ChildProcess | undefined;
    let promUrl = '';
    const ports = { orchestrator: 0, 'dataset-generator': 0, analyst: 0 };
    const targets = () => ({
      ingest: j.http.replace('http://', ''),
      orchestrator: `127.0.0.1:${ports.orchestrator}`,
      'dataset-generator': `127.0.0.1:${ports['dataset-generator']}`,
      analyst: `127.0.0.1:${ports.analyst}`,
    });
    let scenarioStart = 0;

    const api = async <T>(path: string): Promise<T> => {
      const r = await fetch(`${promUrl}${path}`);
      const body = (await r.json()) as { status: string; data: T; error?: string };
      assert.equal(body.status, 'success', `${path}: ${body.error}`);
      return body.data;
    };
    const range = (expr: string) =>
      api<{ result: Series[] }>(`/api/v1/query_range?query=${encodeURIComponent(expr)}&start=${scenarioStart / 1000}&end=${Date.now() / 1000}&step=1`).then((d) => d.result);

    before(async () => {
      cb = await startCallbackReceiver({ secret: 'test-callback-secret' });
      for (const k of Object.keys(ports) as Array<keyof typeof ports>) ports[k] = await freePort();
      j = await startJetflow({
        env: {
          JETFLOW_FLOWS_FILE: resolve('test/fixtures/chaos-flows.json'),
          JETFLOW_TEST_PLUGINS: '1',
          JETFLOW_CALLBACK_MAX_ATTEMPTS: '2',
          JETFLOW_CALLBACK_BACKOFF_MS: '50',
          JETFLOW_CALLBACK_BACKOFF_MAX_MS: '100',
        },
        serviceEnv: {
          orchestrator: { JETFLOW_METRICS_PORT: String(ports.orchestrator) },
          'dataset-generator': { JETFLOW_METRICS_PORT: String(ports['dataset-generator']) },
          analyst: { JETFLOW_METRICS_PORT: String(ports.analyst), JETFLOW_TASK_SUBJECTS: 'jetflow.task.analyst.>,jetflow.task.test.>' },
        },
      });
      // A real Prometheus scraping every service each second and evaluating the repository's rules.
      const dir = mkdtempSync(join(tmpdir(), 'jetflow-prometheus-'));
      const port = await freePort();
      promUrl = `http://127.0.0.1:${port}`;
      const jobs = Object.entries(targets())
        .map(([job, t]) => `  - job_name: ${job}\n    static_configs: [{ targets: ['${t}'] }]`)
        .join('\n');
      writeFileSync(
        join(dir, 'prometheus.yml'),
        `global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - ${join(ROOT, 'deploy/prometheus/rules')}/*.yml\nscrape_configs:\n${jobs}\n`,
      );
      prom = spawn(PROMETHEUS, [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let promLog = '';
      prom.stderr!.on('data', (d: Buffer) => (promLog = (promLog + d.toString()).slice(-4_000)));
      const until = Date.now() + 30_000;
      for (;;) {
        const ok = await fetch(`${promUrl}/-/ready`).then(
          (r) => r.ok,
          () => false,
        );
        if (ok) break;
        if (Date.now() > until || prom.exitCode !== null) throw new Error(`prometheus did not become ready: ${promLog}`);
        await new Promise((r) => setTimeout(r, 200));
      }
      for (;;) {
        const t = await api<{ activeTargets: Array<{ labels: { job: string }; health: string; lastError: string }> }>('/api/v1/targets');
        if (t.activeTargets.length === 4 && t.activeTargets.every((x) => x.health === 'up')) break;
        if (Date.now() > until) throw new Error(`targets not up: ${JSON.stringify(t.activeTargets.map((x) => [x.labels.job, x.health, x.lastError]))}`);
        await new Promise((r) => setTimeout(r, 250));
      }
    });
    after(async () => {
      if (prom && prom.exitCode === null) {
        prom.kill('SIGTERM');
        await new Promise((r) => prom!.once('exit', r));
      }
      await j?.stop();
      await cb?.close();
    });

    test('a scenario with every outcome, then each Grafana panel query returns data showing it, and the rules see it', async () => {
      scenarioStart = Date.now() - 2_000;
      // Give Prometheus a few scrapes of the services as they started: every series at zero.
      await new Promise((r) => setTimeout(r, 3_000));
      const submit = async (body: unknown) => {
        const r = await j.api('/v1/flows', { method: 'POST', json: body });
        assert.equal(r.status, 202, await r.clone().text());
        return ((await r.json()) as { flowId: string }).flowId;
      };

      // Succeeded through every door, refused at two; a flow whose fail_flow task is retried, then dead-lettered (failed).
      const ok = [await submit(sampleSubmission(cb.url)), await submit(sampleSubmission(cb.url))];
      assert.equal((await j.api('/v1/flows', { method: 'POST', json: { flow: 'insights', input: { records: 'not a list' } } })).status, 400);
      const client = ingestClient(j.grpc, j.apiKey);
      ok.push((await client.submit({ flow: 'insights', input: sampleSubmission(cb.url).input, callbackUrl: cb.url })).flowId);
      client.close();
      const h = natsHeaders();
      h.set('Nats-Msg-Id', 'prometheus-nats-1');
      await j.nc.jetstream().publish('jetflow.ingest.default.insights', JSON.stringify(sampleSubmission(cb.url)), { headers: h });
      await j.nc.jetstream().publish('jetflow.ingest.default.insights', 'not json');
      const failed = await submit({ flow: 'failfast', input: {}, callbackUrl: cb.url });
      await cb.waitForFlows([...ok, failed]);
      assert.equal(cb.byFlow(failed)[0]!.body.status, 'failed');

      // A callback the receiver refuses until it is dead-lettered.
      cb.failWith = 503;
      try {
        const id = await submit(sampleSubmission(cb.url));
        const end = Date.now() + 20_000;
        for (;;) {
          const dl = (await (await j.api('/v1/deadletters?source=callback')).json()) as { deadLetters: Array<{ flowId: string }> };
          if (dl.deadLetters.some((d) => d.flowId === id)) break;
          assert.ok(Date.now() < end, 'callback dead-lettered');
          await new Promise((r) => setTimeout(r, 200));
        }
      } finally {
        cb.failWith = undefined;
      }

      // No dataset workers for a while: a backlog builds, one flow misses its deadline, one is cancelled.
      await j.stack.kill('dataset-generator');
      try {
        const partial = await submit(sampleSubmission(cb.url, { deadlineMs: 1_500 }));
        const cancelled = await submit(sampleSubmission(cb.url, { deadlineMs: 30_000 }));
        for (let i = 0; ; i++) {
          const r = await j.api(`/v1/flows/${cancelled}/cancel`, { method: 'POST', json: {} });
          if (r.status === 202) break;
          assert.ok(r.status === 503 && i < 100, `cancel: ${r.status}`);
          await new Promise((res) => setTimeout(res, 100));
        }
        await cb.waitForFlows([partial, cancelled]);
        assert.equal(cb.byFlow(partial)[0]!.body.status, 'partial');
        assert.equal(cb.byFlow(cancelled)[0]!.body.status, 'cancelled');
        // Let Prometheus scrape the backlog.
        await new Promise((r) => setTimeout(r, 2_500));
      } finally {
        j.stack.restart('dataset-generator');
        await waitForConsumers(j.nc);
      }
      await new Promise((r) => setTimeout(r, 4_000));

      // Every query of every panel, as Grafana sends it ($flow = All, $__rate_interval for a 1 s scrape).
      const dash = JSON.parse(readFileSync(join(ROOT, 'deploy/grafana/jetflow.json'), 'utf8')) as { panels: Array<{ title: string; targets?: Array<{ expr: string; refId: string }> }> };
      const byPanel = new Map<string, Series[]>();
      for (const p of dash.panels) {
        for (const t of p.targets ?? []) {
          const expr = t.expr.replaceAll('$__rate_interval', '20s').replaceAll('$flow', '.*');
          const result = await range(expr);
          const finite = result.filter((s) => s.values.some(([, v]) => Number.isFinite(Number(v))));
          assert.ok(finite.length > 0, `panel "${p.title}" (${t.refId}) returns no data: ${expr}`);
          byPanel.set(`${p.title}/${t.refId}`, result);
        }
      }
      const max = (s: Series) => Math.max(...s.values.map(([, v]) => Number(v)).filter(Number.isFinite));
      const min = (s: Series) => Math.min(...s.values.map(([, v]) => Number(v)).filter(Number.isFinite));
      /** Some series of the panel's query `refId` whose labels include `labels` rose above zero during the scenario. */
      const rose = (panel: string, labels: Record<string, string> = {}, refId = 'A') => {
        const all = byPanel.get(`${panel}/${refId}`);
        assert.ok(all, `panel ${panel} ${refId}`);
        const match = all.filter((s) => Object.entries(labels).every(([k, v]) => s.metric[k] === v));
        assert.ok(
          match.some((s) => max(s) > 0),
          `${panel} ${JSON.stringify(labels)} never above 0: ${JSON.stringify(match.map((s) => [s.metric, max(s)]))}`,
        );
      };
      rose('Flows finished / s');
      rose('p99 flow latency');
      rose('Dead letters / s');
      for (const status of ['succeeded', 'failed', 'partial', 'cancelled']) rose('Flows / s by status', { flow: status === 'failed' ? 'failfast' : 'insights', status });
      for (const q of ['A', 'B', 'C']) rose('Flow latency p50 / p95 / p99', {}, q);
      for (const [door, result] of [
        ['http', 'accepted'],
        ['http', 'rejected'],
        ['grpc', 'accepted'],
        ['nats', 'accepted'],
        ['nats', 'rejected'],
      ])
        rose('Submissions / s by door and result', { door: door!, result: result! });
      for (const outcome of ['delivered', 'retry', 'dead_lettered']) rose('Callback attempts / s by outcome', { outcome });
      rose('Task duration p95 by task');
      for (const outcome of ['succeeded', 'retried', 'dead_lettered']) rose('Task attempts / s by task and outcome', { outcome });
      rose('Retries / s by task', { task: 'doomed' });
      for (const [source, code] of [
        ['task', 'retryable'],
        ['callback', 'callback_failed'],
        ['ingest', 'invalid_argument'],
      ])
        rose('Dead letters / s by source and code', { source: source!, code: code! });
      // insights v2 starts with prepare (dataset generator, mapped) and score (analyst): with the dataset workers down, prepare's chunks wait.
      rose('Pending (backlog) by consumer', { consumer: 'task-dataset-prepare' });
      rose('Waiting pulls by consumer');
      rose('Deliveries / s by consumer', { consumer: 'orchestrator-ingest-default' });
      rose('Publishes / s and stored messages by stream', { stream: 'JETFLOW_INGEST' });
      rose('Publishes / s and stored messages by stream', { stream: 'JETFLOW_DLQ' }, 'B');
      rose('CPU by service', { service: 'orchestrator' });
      rose('Event-loop lag p99 by service');
      // The share of succeeded flows dropped below 100 % once the first flow did not succeed.
      const share = byPanel.get('Succeeded share/A')!;
      assert.ok(
        share.some((s) => min(s) < 1 && max(s) > 0),
        `Succeeded share: ${JSON.stringify(share.map((s) => [min(s), max(s)]))}`,
      );

      // The rules loaded, evaluate without error, and see the same events.
      const groups = await api<{ groups: Array<{ name: string; rules: Array<{ name: string; health: string; lastError?: string }> }> }>('/api/v1/rules');
      const rules = groups.groups.flatMap((g) => g.rules);
      assert.ok(rules.length >= 11, `${rules.length} rules loaded`);
      for (const r of rules) assert.equal(r.health, 'ok', `${r.name}: ${r.lastError}`);
      const finished = await range('jetflow:flows_finished:rate5m');
      for (const status of ['partial', 'cancelled', 'failed'])
        assert.ok(
          finished.some((s) => s.metric.status === status && max(s) > 0),
          `recorded ${status}`,
        );
      const alerts = await api<{ alerts: Array<{ labels: Record<string, string>; state: string }> }>('/api/v1/alerts');
      const state = (name: string) => alerts.alerts.filter((a) => a.labels.alertname === name).map((a) => a.state);
      assert.deepEqual(state('JetflowCallbackDeadLetters'), ['firing'], 'a dead-lettered callback alerts at once');
      // Conditions true for seconds, not yet for their 5 minutes: pending.
      assert.ok(state('JetflowFlowsFailing').includes('pending'), JSON.stringify(alerts.alerts));
      assert.ok(state('JetflowDeadlineMisses').includes('pending'), JSON.stringify(alerts.alerts));
    });

    test("promtool check metrics finds nothing to fix in any service's /metrics", async () => {
      for (const [svc, t] of Object.entries(targets())) {
        const text = await (await fetch(`http://${t}/metrics`)).text();
        assert.match(text, /^# TYPE jetflow_/m, `${svc} exports Jetflow metrics`);
        const r = run(PROMTOOL, ['check', 'metrics'], text);
        assert.equal(r.code, 0, `${svc}: ${r.out}`);
        assert.equal(r.out.trim(), '', `${svc}: ${r.out}`);
      }
    });

    test('every status, retry and dead-letter series exists at zero before anything happened', async () => {
      /** The value of the sample `name{labels}` (labels in any order), or undefined. */
      const value = (text: string, name: string, labels: Record<string, string>): number | undefined => {
        for (const line of text.split('\n')) {
          const m = /^([a-zA-Z_:][\w:]*)\{(.*)\} (\S+)$/.exec(line);
          if (!m || m[1] !== name) continue;
          const got = Object.fromEntries([...m[2]!.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1] ?? '', x[2] ?? ''] as const));
          if (Object.keys(got).length === Object.keys(labels).length && Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(m[3]);
        }
        return undefined;
      };
      // The dataset worker restarted above: its series are there at 0 before it failed or retried anything.
      const ds = await (await fetch(`http://${targets()['dataset-generator']}/metrics`)).text();
      const service = 'dataset-generator';
      assert.equal(value(ds, 'jetflow_task_retries_total', { task: 'text', service }), 0);
      assert.equal(value(ds, 'jetflow_dead_letters_total', { source: 'task', code: 'timeout', service }), 0);
      // (Tasks of the flows that ended while it was down were delivered to it after the restart: some outcomes moved.)
      for (const outcome of ['succeeded', 'failed', 'cancelled'])
        assert.notEqual(value(ds, 'jetflow_task_duration_seconds_count', { task: 'features', outcome, service }), undefined, `features ${outcome}`);
      for (const outcome of ['retried', 'dead_lettered']) assert.equal(value(ds, 'jetflow_task_duration_seconds_count', { task: 'features', outcome, service }), 0, `features ${outcome}`);
      assert.equal(value(ds, 'jetflow_task_duration_seconds_bucket', { task: 'features', outcome: 'retried', le: '+Inf', service }), 0);
      const orch = await (await fetch(`http://${targets().orchestrator}/metrics`)).text();
      for (const status of ['succeeded', 'partial', 'failed', 'cancelled'])
        assert.equal(value(orch, 'jetflow_flow_duration_seconds_count', { flow: 'chaos', status, service: 'orchestrator' }), 0, `chaos ${status} at 0`);
      assert.equal(value(orch, 'jetflow_dead_letters_total', { source: 'result', code: 'unknown_flow', service: 'orchestrator' }), 0);
      assert.equal(value(orch, 'jetflow_submissions_total', { door: 'nats', result: 'accepted', service: 'orchestrator' }), 1);
      const ing = await (await fetch(`${j.http}/metrics`)).text();
      assert.equal(value(ing, 'jetflow_submissions_total', { door: 'grpc', result: 'overloaded', service: 'ingest' }), 0);
      assert.equal(value(ing, 'jetflow_unexpected_errors_total', { where: 'http request', service: 'ingest' }), 0);
      // JetStream stream and consumer metrics: stored and published messages, deliveries, lag, in flight, redelivered.
      assert.ok(value(ing, 'jetflow_stream_messages', { stream: 'JETFLOW_TASKS', service: 'ingest' })! >= 0);
      assert.ok(value(ing, 'jetflow_stream_bytes', { stream: 'JETFLOW_DLQ', service: 'ingest' })! > 0, 'dead letters are stored');
      assert.ok(value(ing, 'jetflow_stream_published_messages_total', { stream: 'JETFLOW_INGEST', service: 'ingest' })! >= 8);
      // The tenant's two ingest consumers: its NATS-door submissions and those through ingest.
      const delivered = (consumer: string) => value(ing, 'jetflow_consumer_delivered_messages_total', { stream: 'JETFLOW_INGEST', consumer, service: 'ingest' }) ?? 0;
      assert.ok(delivered('orchestrator-ingest-default') + delivered('orchestrator-submit-default') >= 8);
      for (const m of ['jetflow_consumer_pending_messages', 'jetflow_consumer_ack_pending_messages', 'jetflow_consumer_redelivered_messages', 'jetflow_consumer_waiting_pulls']) {
        assert.notEqual(value(ing, m, { stream: 'JETFLOW_TASKS', consumer: 'task-test-fail', service: 'ingest' }), undefined, m);
      }
    });
  });
});
