import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { classifyDeliveries, runSoak, slopeMbPerHour, type SoakReport } from '../bench/lib/soak.js';
import { svgChart, ticks } from '../bench/lib/svg.js';
import { parseDuration, parseSoakCli } from '../bench/soak.js';

/** Well-formed XML with an <svg> root in the SVG namespace: every tag closed, in order, attributes quoted. */
function assertValidSvg(text: string) {
  const body = text.replace(/^<\?xml[^?]*\?>\s*/, '');
  assert.match(body, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  const stack: string[] = [];
  let roots = 0;
  for (const m of body.matchAll(/<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>|<|>/g)) {
    const [all, close, name, , selfClose] = m;
    if (all === '<' || all === '>') assert.fail(`stray ${all} at ${m.index}: ${body.slice(m.index, m.index + 60)}`);
    if (close) assert.equal(stack.pop(), name, `</${name}> at ${m.index}`);
    else if (!selfClose) {
      if (!stack.length) roots++;
      stack.push(name!);
    } else if (!stack.length) roots++;
  }
  assert.deepEqual(stack, [], 'unclosed tags');
  assert.equal(roots, 1, 'one root element');
}

test('soak verdict: lost, duplicated and HTTP at-least-once retries told apart', () => {
  const d = (id: string, hash: string, status = 'succeeded') => ({ deliveryId: id, hash, status });
  const c = classifyDeliveries([
    { accepted: true, deliveries: [d('dlv_f1', 'a')] },
    { accepted: true, deliveries: [] },
    { accepted: true, deliveries: [d('dlv_f3', 'a'), d('dlv_f3', 'a'), d('dlv_f3', 'a')] },
    { accepted: true, deliveries: [d('dlv_f4', 'a'), d('dlv_f4', 'b')] },
    { accepted: true, deliveries: [d('dlv_f5', 'a', 'failed')] },
    { accepted: false, deliveries: [] },
  ]);
  assert.deepEqual(c, { accepted: 5, completed: 4, lost: 1, duplicated: 1, httpRetries: { deliveries: 2, flows: 1 }, notSucceeded: 1 });
});

test('soak RSS slope: MB/hour by least squares, one intercept per process id (a restart is not a drop)', () => {
  // 36 MB/hour = 0.01 MB/s; the restart at 100 s starts low again.
  const s = [0, 20, 40, 60, 80].map((t) => ({ tS: t, pid: 1, mb: 100 + t * 0.01 }));
  const r = [100, 120, 140].map((t) => ({ tS: t, pid: 2, mb: 60 + t * 0.01 }));
  assert.ok(Math.abs(slopeMbPerHour([...s, ...r])! - 36) < 1e-9);
  assert.ok(Math.abs(slopeMbPerHour([0, 60, 120].map((t) => ({ tS: t, pid: 7, mb: 80 })))!) < 1e-9);
  assert.equal(slopeMbPerHour([{ tS: 0, pid: 1, mb: 5 }]), undefined);
});

test('soak CLI: durations need a unit, bad values are named', () => {
  assert.equal(parseDuration('10s', '--kill-every'), 10);
  assert.equal(parseDuration('3m', '--kill-every'), 180);
  assert.equal(parseDuration('0', '--kill-every'), 0);
  assert.throws(() => parseDuration('3', '--kill-every'), /--kill-every: expected a duration with a unit such as 10s, 3m or 1h, got "3"/);
  assert.deepEqual(parseSoakCli(['--rate', '20', '--minutes', '0.5', '--kill-every', '10s', '--door', 'http,nats']), {
    rate: 20,
    minutes: 0.5,
    killEverySeconds: 10,
    doors: ['http', 'nats'],
    build: true,
  });
  assert.throws(() => parseSoakCli(['--door', 'grpc']), /--door: expected http, nats or http,nats, got "grpc"/);
  assert.throws(() => parseSoakCli(['--rate=-1']), /--rate: expected a positive number, got "-1"/);
  assert.throws(() => parseSoakCli(['--grace', '0']), /--grace: must be more than 0/);
});

test('soak plot: a valid SVG document with both panels, axes and kill markers', () => {
  const svg = svgChart(
    [
      {
        title: 'latency <ms> & "quotes"',
        xLabel: 'minutes',
        yLabel: 'ms',
        series: [
          {
            name: 'p50',
            points: [
              [0, 1],
              [1, Number.NaN],
              [2, 3],
            ],
          },
        ],
        markers: [{ x: 1, label: 'kill orchestrator' }],
      },
      { title: 'RSS', xLabel: 'minutes', yLabel: 'MB', series: [] },
    ],
    'test',
  );
  assertValidSvg(svg);
  assert.match(svg, /latency &lt;ms&gt; &amp; &quot;quotes&quot;/);
  assert.match(svg, /<path d="M[\d.,]+M[\d.,]+"/, 'a gap starts a new segment');
  assert.match(svg, /stroke-dasharray/);
  assert.deepEqual(ticks(0, 10), [0, 2, 4, 6, 8, 10]);
});

// The soak's machinery, not its numbers: 30 s at 20 flows/s through HTTP and the NATS door while a
// worker or the orchestrator is SIGKILLed every 10 s. Nothing accepted may be lost or run twice.
test('soak: 30 s at 20/s with a kill every 10 s: counts add up, nothing lost or duplicated, RSS series and slopes, an SVG plot', { timeout: 240_000 }, async () => {
  const out = mkdtempSync(join(tmpdir(), 'jetflow-soak-'));
  const r: SoakReport = await runSoak({
    minutes: 0.5,
    rate: 20,
    killEverySeconds: 10,
    mode: 'noop',
    history: 'on',
    doors: ['http', 'nats'],
    graceSeconds: 90,
    sampleSeconds: 2,
    windowSeconds: 10,
    out,
    progress: false,
  });
  assert.equal(r.aborted, null, String(r.aborted));
  const c = r.counts;
  assert.equal(r.submitted, 600);
  assert.equal(c.accepted + r.refused, r.submitted);
  assert.ok(c.accepted > 0);
  assert.equal(c.completed + c.lost, c.accepted, 'completed + lost == accepted');
  assert.equal(c.lost, 0, `lost: ${r.lostFlowIds.join(' ')}`);
  assert.equal(c.duplicated, 0);
  assert.equal(c.notSucceeded, 0);
  assert.equal(r.unknownCallbacks, 0);
  assert.ok(c.httpRetries.deliveries >= 0 && c.httpRetries.flows <= c.httpRetries.deliveries);
  assert.ok(r.kills.length >= 2, `kills: ${JSON.stringify(r.kills)}`);
  for (const k of r.kills) assert.ok(['orchestrator', 'dataset-generator', 'analyst'].includes(k.service));
  const restarts = Object.values(r.restarts).reduce((a, b) => a + b, 0);
  assert.equal(restarts, r.kills.length, 'the supervisor restarted every killed service');
  assert.equal(r.windows.length, 3);
  assert.equal(
    r.windows.reduce((a, w) => a + w.n, 0),
    c.completed,
  );
  assert.equal(r.latencyMs.n, c.completed);
  for (const p of ['nats-server', 'ingest', 'orchestrator', 'dataset-generator', 'analyst']) {
    assert.ok(Number.isFinite(r.rss.slopeMbPerHour[p]), `slope of ${p}`);
    assert.ok((r.rss.lastMb[p] ?? 0) > 5, `rss of ${p}`);
  }
  assert.ok(r.rss.samples.length >= 10);
  const report = JSON.parse(readFileSync(join(out, 'soak-report.json'), 'utf8')) as SoakReport;
  assert.deepEqual(report.counts, c);
  assert.ok(existsSync(r.plot));
  const svg = readFileSync(r.plot, 'utf8');
  assertValidSvg(svg);
  assert.equal((svg.match(/class="panel"/g) ?? []).length, 2);
  assert.ok((svg.match(/stroke-dasharray/g) ?? []).length >= 2 * r.kills.length, 'kills marked on both panels');
});
