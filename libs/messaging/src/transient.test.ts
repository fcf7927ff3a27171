import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RetryableError } from '@jetflow/errors';
import { isTransientNatsError, markTransient } from './transient.js';

test('a broker that does not answer is transient; a refusal is not (by code, whatever the message says)', () => {
  const nats = (code: string, message = code) => Object.assign(new Error(message), { code });
  const api = (code: number, err_code: number, description: string) => Object.assign(nats(String(code), description), { api_error: { code, err_code, description } });
  assert.ok(isTransientNatsError(nats('TIMEOUT')));
  assert.ok(isTransientNatsError(nats('503')), 'no responders');
  assert.ok(isTransientNatsError(api(503, 10008, 'JetStream system temporarily unavailable')));
  assert.ok(isTransientNatsError(markTransient(new RetryableError('publish to jetflow.result.1.f not acknowledged after 40 attempts: no responders'))));
  assert.ok(!isTransientNatsError(new RetryableError('publish to jetflow.task.a.b not acknowledged after 3 attempts: PubAck timeout')), 'text alone proves nothing');
  assert.ok(!isTransientNatsError(new Error('JetStream system temporarily unavailable')));
  assert.ok(!isTransientNatsError(api(400, 10071, 'wrong last sequence: 503')));
  assert.ok(!isTransientNatsError(api(503, 10077, 'maximum bytes exceeded')), 'a full stream');
  assert.ok(!isTransientNatsError(api(404, 10059, 'stream not found')));
  assert.ok(!isTransientNatsError(new SyntaxError('Unexpected token')));
  assert.ok(!isTransientNatsError(undefined));
});
