import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RetryableError } from '../../errors/src/index.js';
import { isTransientNatsError } from './transient.js';

test('a broker that does not answer is transient; a refusal is not', () => {
  const nats = (code: string, message = code) => Object.assign(new Error(message), { code });
  assert.ok(isTransientNatsError(nats('TIMEOUT')));
  assert.ok(isTransientNatsError(nats('503')));
  assert.ok(isTransientNatsError(Object.assign(new Error('JetStream system temporarily unavailable'), { code: '503', api_error: { code: 503 } })));
  assert.ok(isTransientNatsError(new RetryableError('publish to jetflow.result.1.f not acknowledged after 40 attempts: no responders')));
  assert.ok(isTransientNatsError(new RetryableError('publish to jetflow.task.a.b not acknowledged after 3 attempts: PubAck timeout')));
  assert.ok(!isTransientNatsError(new RetryableError('JetStream rejected publish to $KV.jetflow_flows.f: wrong last sequence: 503 (400)')));
  assert.ok(!isTransientNatsError(nats('404', 'stream not found')));
  assert.ok(!isTransientNatsError(new SyntaxError('Unexpected token')));
  assert.ok(!isTransientNatsError(undefined));
});
