import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { addErrorSink, createLogger, flowLogger, flowTraceId, flowTraceparent, noteFlowTrace, reportError, traceIdOfTraceparent, type ErrorReport } from './index.js';

function capture() {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { lines, stream };
}

describe('logging', () => {
  test('JSON lines with the service; children bind flowId and task; no trace fields outside a span', () => {
    const { lines, stream } = capture();
    const log = createLogger('svc', 'info', stream);
    log.child({ flowId: 'f1', task: 't1' }).warn({ code: 'x' }, 'task failed; retrying');
    log.info('plain');
    assert.equal(lines.length, 2);
    assert.equal(lines[0]!.service, 'svc');
    assert.equal(lines[0]!.flowId, 'f1');
    assert.equal(lines[0]!.task, 't1');
    assert.equal(lines[0]!.msg, 'task failed; retrying');
    assert.equal(lines[0]!.trace_id, undefined);
    assert.equal(lines[1]!.msg, 'plain');
  });

  test("a line about a flow names its trace without a span: the message's traceparent, the one noted, or one derived from the flow id", () => {
    const { lines, stream } = capture();
    const log = createLogger('svc', 'info', stream);
    const caller = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    flowLogger(log, { flowId: 'fa', task: 't' }, caller).warn('from the message');
    flowLogger(log, { flowId: 'fb' }).child({ attempt: 2 }).info('derived, and kept by children');
    noteFlowTrace('fc', caller);
    log.info({ flowId: 'fc' }, 'noted');
    log.info({ flowId: 'fd' }, 'derived for a field');
    log.info('no flow');
    assert.deepEqual(
      lines.map((l) => [l.msg, l.trace_id]),
      [
        ['from the message', '4bf92f3577b34da6a3ce929d0e0e4736'],
        ['derived, and kept by children', flowTraceId('fb')],
        ['noted', '4bf92f3577b34da6a3ce929d0e0e4736'],
        ['derived for a field', flowTraceId('fd')],
        ['no flow', undefined],
      ],
    );
    assert.equal(lines[1]!.attempt, 2);
    assert.match(flowTraceId('fb'), /^[0-9a-f]{32}$/);
    assert.notEqual(flowTraceId('fb'), flowTraceId('fd'));
    // The derived traceparent is valid W3C, not sampled, and carries the derived trace id.
    assert.match(flowTraceparent('fb'), /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
    assert.equal(traceIdOfTraceparent(flowTraceparent('fb')), flowTraceId('fb'));
    assert.equal(traceIdOfTraceparent('00-00000000000000000000000000000000-00f067aa0ba902b7-01'), undefined);
    assert.equal(traceIdOfTraceparent('garbage'), undefined);
  });

  test('credentials and payload bodies are censored wherever they are passed', () => {
    const { lines, stream } = capture();
    const log = createLogger('svc', 'info', stream);
    log.info(
      { apiKey: 'k-123', secret: 's-456', input: { records: ['text-789'] }, body: 'b-000', headers: { authorization: 'Bearer a-111' }, job: { bodyJson: 'j-222', secret: 's-333' } },
      'oops',
    );
    const raw = JSON.stringify(lines);
    for (const s of ['k-123', 's-456', 'text-789', 'b-000', 'a-111', 'j-222', 's-333']) assert.ok(!raw.includes(s), `${s} censored`);
    assert.equal(lines[0]!.apiKey, '[redacted]');
  });

  test('reportError logs, and hands the error with the logger bindings and context to every sink; a failing sink is contained', () => {
    const { lines, stream } = capture();
    const log = createLogger('svc', 'info', stream).child({ flowId: 'f9' });
    const got: Array<{ err: unknown; report: ErrorReport }> = [];
    const removeBad = addErrorSink(() => {
      throw new Error('sink down');
    });
    const remove = addErrorSink((err, report) => got.push({ err, report }));
    const boom = new Error('boom');
    reportError(log, boom, { where: 'test' });
    remove();
    removeBad();
    reportError(log, new Error('after removal'));
    assert.equal(got.length, 1);
    assert.equal(got[0]!.err, boom);
    assert.equal(got[0]!.report.bindings.flowId, 'f9');
    assert.equal(got[0]!.report.bindings.service, 'svc');
    assert.deepEqual(got[0]!.report.context, { where: 'test' });
    assert.equal(lines.filter((l) => l.msg === 'unexpected error').length, 2);
    assert.equal((lines[0]!.err as { message: string }).message, 'boom');
  });
});
