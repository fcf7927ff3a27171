import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { headers as natsHeaders } from 'nats';
import { deriveFlowId } from '@jetflow/flows';
import { flowTraceId } from '@jetflow/logging';
import {
  TEST_API_KEY,
  TEST_SECRET,
  sampleSubmission,
  startCallbackReceiver,
  startJetflow,
  startOtlpReceiver,
  type CallbackReceiver,
  type JetflowUnderTest,
  type OtlpReceiver,
} from '@jetflow/testing';

type Line = Record<string, unknown> & { msg?: string; flowId?: string; trace_id?: string; span_id?: string; task?: string; service?: string };

/** Every JSON line every service wrote. */
function readLogs(dir: string): { raw: string; lines: Line[] } {
  let raw = '';
  const lines: Line[] = [];
  for (const f of readdirSync(dir)) {
    const text = readFileSync(join(dir, f), 'utf8');
    raw += text;
    for (const l of text.split('\n')) {
      if (!l.startsWith('{')) continue;
      try {
        lines.push(JSON.parse(l) as Line);
      } catch {
        // a partial last line
      }
    }
  }
  return { raw, lines };
}

describe('logs: JSON lines that name their flow and trace, and never a secret or a payload', () => {
  let j: JetflowUnderTest;
  let cb: CallbackReceiver;
  let otlp: OtlpReceiver;
  const MARKER = 'zebra-marker-7731 my card 4111 1111 1111 1111';
  const WRONG_KEY = 'wrong-key-b7e1c0ffee0123456789';

  before(async () => {
    otlp = await startOtlpReceiver();
    cb = await startCallbackReceiver({ secret: TEST_SECRET });
    j = await startJetflow({
      env: {
        LOG_LEVEL: 'debug',
        OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
        OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
        OTEL_BSP_SCHEDULE_DELAY: '200',
        JETFLOW_FLOWS_FILE: resolve('test/fixtures/chaos-flows.json'),
        JETFLOW_TEST_PLUGINS: '1',
        JETFLOW_CALLBACK_BACKOFF_MS: '200',
      },
      serviceEnv: { analyst: { JETFLOW_TASK_SUBJECTS: 'jetflow.task.analyst.>,jetflow.task.test.>' } },
    });
  });
  after(async () => {
    await j?.stop();
    await cb?.close();
    await otlp?.close();
  });

  test('retries, dead letters and callback retries log flowId, task, trace_id and span_id; no API key, secret or record text anywhere', async () => {
    const traceOf = async (flowId: string) => ((await (await j.api(`/v1/flows/${flowId}/timeline`)).json()) as { traceId: string }).traceId;

    // 1. insights, with a callback receiver that is down for the first attempt.
    cb.failWith = 503;
    const sub = sampleSubmission(cb.url);
    sub.input.records[0]!.text = `Delivery was late. ${MARKER}`;
    const r1 = await j.api('/v1/flows', { method: 'POST', json: sub });
    assert.equal(r1.status, 202);
    const insights = ((await r1.json()) as { flowId: string }).flowId;
    await cb.waitFor((c) => c.deliveries.some((d) => d.body.flowId === insights), 20_000, 'the first callback attempt');
    cb.failWith = undefined;
    await cb.waitForFlows([insights]);

    // 2. chaos: a flaky task (one retry), a task that always fails (dead-lettered) and one that hangs.
    const r2 = await j.api('/v1/flows', { method: 'POST', json: { flow: 'chaos', input: { chaos: { slowMs: 10, failTimes: 1 }, note: MARKER }, callbackUrl: cb.url } });
    assert.equal(r2.status, 202, await r2.clone().text());
    const chaos = ((await r2.json()) as { flowId: string }).flowId;
    await cb.waitForFlows([chaos], 40_000);

    // 3. requests that are refused: a bad body carrying the marker, a wrong key, a wrong key over gRPC-less HTTP GET.
    const bad = await j.api('/v1/flows', { method: 'POST', json: { flow: 'insights', input: { records: [{ id: 'x', text: MARKER, fields: 'nope' }] }, callbackUrl: cb.url } });
    assert.equal(bad.status, 400);
    const wrong = await fetch(`${j.http}/v1/flows`, { method: 'POST', headers: { authorization: `Bearer ${WRONG_KEY}`, 'content-type': 'application/json' }, body: JSON.stringify(sub) });
    assert.equal(wrong.status, 401);

    const insightsTrace = await traceOf(insights);
    const chaosTrace = await traceOf(chaos);
    assert.match(insightsTrace, /^[0-9a-f]{32}$/);
    assert.match(chaosTrace, /^[0-9a-f]{32}$/);
    await j.stack.stop(); // flush every log line
    const { raw, lines } = readLogs(j.logDir);
    assert.ok(lines.length > 20, `${lines.length} JSON lines`);

    // Lines about a flow carry its trace.
    const retry = lines.filter((l) => l.msg === 'task failed; retrying' && l.flowId === chaos);
    assert.ok(
      retry.some((l) => l.task === 'flaky'),
      'the flaky retry was logged',
    );
    const forGood = lines.filter((l) => l.msg === 'task failed for good; dead-lettering' && l.flowId === chaos);
    assert.ok(
      forGood.some((l) => l.task === 'fails'),
      'the dead letter was logged',
    );
    const cbRetry = lines.filter((l) => l.msg === 'callback failed; retrying' && l.flowId === insights);
    assert.equal(cbRetry.length, 1, 'the callback retry was logged once');
    for (const l of [...retry, ...forGood, ...cbRetry]) {
      assert.equal(l.trace_id, l.flowId === chaos ? chaosTrace : insightsTrace, `${l.service}: "${l.msg}" names its flow's trace`);
      assert.match(String(l.span_id), /^[0-9a-f]{16}$/);
      assert.equal(typeof l.service, 'string');
    }
    // Every line that names one of these flows names its trace too.
    const aboutFlows = lines.filter((l) => l.flowId === chaos || l.flowId === insights);
    for (const l of aboutFlows) assert.equal(l.trace_id, l.flowId === chaos ? chaosTrace : insightsTrace, `${l.service}: "${l.msg}" has trace_id`);
    // Unexpected errors: none in a run like this.
    assert.deepEqual(
      lines.filter((l) => l.msg === 'unexpected error').map((l) => `${l.service}: ${JSON.stringify(l.err)}`),
      [],
    );

    // Never a credential or a payload.
    for (const [what, secret] of [
      ['the API key', TEST_API_KEY],
      ['a rejected API key', WRONG_KEY],
      ['the callback secret', TEST_SECRET],
      ['record text', MARKER],
      ['record text', 'Delivery was late'],
      ['record text', 'Great product, fast shipping'],
    ] as const) {
      assert.ok(!raw.includes(secret), `${what} ("${secret}") appears in the logs`);
    }
  });
});

describe('logs with tracing off: every line about a flow still names its trace', () => {
  let j: JetflowUnderTest;
  let cb: CallbackReceiver;

  before(async () => {
    cb = await startCallbackReceiver({ secret: TEST_SECRET });
    j = await startJetflow({
      env: { JETFLOW_FLOWS_FILE: resolve('test/fixtures/chaos-flows.json'), JETFLOW_TEST_PLUGINS: '1', JETFLOW_CALLBACK_BACKOFF_MS: '200' },
      serviceEnv: { analyst: { JETFLOW_TASK_SUBJECTS: 'jetflow.task.analyst.>,jetflow.task.test.>' } },
    });
  });
  after(async () => {
    await j?.stop();
    await cb?.close();
  });

  test("the caller's trace id when it sent a traceparent, else one derived from the flow id, the same in every service", async () => {
    // Each flow retries a task twice and dead-letters it (lines in the worker and the orchestrator).
    const failfast = { flow: 'failfast', input: {}, callbackUrl: cb.url };
    const callerTrace = '4bf92f3577b34da6a3ce929d0e0e4736';
    const submit = async (headers: Record<string, string> = {}) => {
      const r = await j.api('/v1/flows', { method: 'POST', json: failfast, headers });
      assert.equal(r.status, 202);
      return ((await r.json()) as { flowId: string }).flowId;
    };
    cb.failWith = 503; // the first callback attempts fail: the sender logs a retry
    const withCaller = await submit({ traceparent: `00-${callerTrace}-00f067aa0ba902b7-01` });
    const plain = await submit();
    const h = natsHeaders();
    h.set('Nats-Msg-Id', 'logs-trace-off-nats');
    await j.nc.jetstream().publish('jetflow.ingest.default.failfast', JSON.stringify(failfast), { headers: h });
    const nats = deriveFlowId('default', 'logs-trace-off-nats');
    await cb.waitFor((c) => [withCaller, plain, nats].every((id) => c.deliveries.some((d) => d.body.flowId === id)), 30_000, 'first callback attempts');
    cb.failWith = undefined;
    await cb.waitForFlows([withCaller, plain, nats], 30_000);
    // No trace of its own: nothing to link to from the timeline.
    assert.equal(((await (await j.api(`/v1/flows/${plain}/timeline`)).json()) as { traceId: string | null }).traceId, null);
    assert.equal(((await (await j.api(`/v1/flows/${withCaller}/timeline`)).json()) as { traceId: string | null }).traceId, callerTrace);

    await j.stack.stop(); // flush every log line
    const { lines } = readLogs(j.logDir);
    const want: Record<string, string> = { [withCaller]: callerTrace, [plain]: flowTraceId(plain), [nats]: flowTraceId(nats) };
    for (const [flowId, traceId] of Object.entries(want)) {
      const about = lines.filter((l) => l.flowId === flowId);
      const services = new Set(about.map((l) => l.service));
      assert.ok(services.has('analyst') && services.has('orchestrator'), `${flowId}: lines from the worker and the orchestrator (${[...services].join(', ')})`);
      assert.ok(
        about.some((l) => l.msg === 'task failed; retrying'),
        `${flowId}: the retry was logged`,
      );
      assert.ok(
        about.some((l) => l.msg === 'callback failed; retrying'),
        `${flowId}: the callback retry was logged`,
      );
      for (const l of about) assert.equal(l.trace_id, traceId, `${String(l.service)}: "${String(l.msg)}" names the trace of ${flowId}`);
    }
  });
});
