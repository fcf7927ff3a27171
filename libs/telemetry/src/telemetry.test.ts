import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { headers as natsHeaders, type JsMsg } from 'nats';
import { activeTraceparent, formatTraceparent, natsHeaderGetter, subjectTemplate, telemetryConfig, tracingEnabled } from './index.js';
import { traceMessages } from '@jetflow/messaging';

describe('telemetry', () => {
  test('tracing starts only with somewhere to send spans, and OTEL_SDK_DISABLED / none win', () => {
    assert.equal(telemetryConfig({}).tracing, false);
    assert.equal(telemetryConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://jaeger:4318' }).tracing, true);
    assert.equal(telemetryConfig({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://jaeger:4318/v1/traces' }).tracing, true);
    assert.equal(telemetryConfig({ OTEL_TRACES_EXPORTER: 'console' }).tracing, true);
    assert.equal(telemetryConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://x', OTEL_SDK_DISABLED: 'true' }).tracing, false);
    assert.equal(telemetryConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://x', OTEL_TRACES_EXPORTER: 'none' }).tracing, false);
    assert.equal(telemetryConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: '  ' }).tracing, false, 'blank means unset');
    assert.throws(() => telemetryConfig({ OTEL_SDK_DISABLED: 'maybe' }), /OTEL_SDK_DISABLED/);
  });

  test('span names stay low-cardinality: tasks by subject, the rest by their first two tokens', () => {
    assert.equal(subjectTemplate('jetflow.task.analyst.sentiment'), 'jetflow.task.analyst.sentiment');
    assert.equal(subjectTemplate('jetflow.result.3.f0123456789'), 'jetflow.result');
    assert.equal(subjectTemplate('jetflow.ingest.acme.insights'), 'jetflow.ingest');
    assert.equal(subjectTemplate('jetflow.callback.acme'), 'jetflow.callback');
    assert.equal(subjectTemplate('jetflow.dlq.task.jetflow.task.test.fail'), 'jetflow.dlq.task');
    assert.equal(subjectTemplate('other'), 'other');
  });

  test('the NATS header getter finds traceparent whatever its case', () => {
    const h = natsHeaders();
    h.set('Traceparent', '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
    assert.equal(natsHeaderGetter.get(h, 'traceparent'), '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
    assert.equal(natsHeaderGetter.get(h, 'tracestate'), undefined);
    assert.deepEqual(natsHeaderGetter.keys(h), ['Traceparent']);
  });

  test('formats a W3C traceparent', () => {
    assert.equal(formatTraceparent({ traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', traceFlags: 1 }), '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
  });

  test('with tracing off nothing is added to the hot path: the handler is returned as is', () => {
    assert.equal(tracingEnabled(), false);
    const handle = async (_m: JsMsg) => undefined;
    assert.equal(traceMessages(handle, { stream: 'S', consumer: 'c', root: true }), handle);
    assert.equal(activeTraceparent(), undefined);
  });
});
