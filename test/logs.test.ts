import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { TEST_API_KEY, TEST_SECRET, sampleSubmission, startCallbackReceiver, startJetflow, startOtlpReceiver, type CallbackReceiver, type JetflowUnderTest, type OtlpReceiver } from '../libs/testing/src/index.js';

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
    assert.ok(retry.some((l) => l.task === 'flaky'), 'the flaky retry was logged');
    const forGood = lines.filter((l) => l.msg === 'task failed for good; dead-lettering' && l.flowId === chaos);
    assert.ok(forGood.some((l) => l.task === 'fails'), 'the dead letter was logged');
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
