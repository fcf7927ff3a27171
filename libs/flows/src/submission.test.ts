import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CallbackPolicy, loadFlowRegistry, validateSubmission } from './index.js';

const registry = loadFlowRegistry({});
const policy = new CallbackPolicy([]);

/** The paths an invalid_argument names, or 'accepted'. */
function paths(body: unknown): string[] | 'accepted' {
  try {
    validateSubmission(body, { registry, checkCallbackUrl: (u) => policy.checkUrl(u) });
    return 'accepted';
  } catch (err) {
    const e = err as { code?: string; details?: Array<{ path: string }> };
    assert.equal(e.code, 'invalid_argument');
    return (e.details ?? []).map((d) => d.path).sort();
  }
}

test('one answer names every bad field: schema errors do not hide the callbackUrl, flow or input checks', () => {
  // Schema errors (deadlineMs, an unknown field) beside a callback to a private address and a bad record.
  assert.deepEqual(paths({ flow: 'insights', input: { records: [{ id: 'a', text: 1 }] }, deadlineMs: -5, colour: 'red', callbackUrl: 'http://10.1.2.3/hook' }), [
    '',
    'callbackUrl',
    'deadlineMs',
    'input.records[0].text',
  ]);
  // An unknown flow beside a schema error and a callback that is not http.
  assert.deepEqual(paths({ flow: 'nope', input: {}, idempotencyKey: 'has space', callbackUrl: 'ftp://example.com/x' }), ['callbackUrl', 'flow', 'idempotencyKey']);
  // A callback URL that is not a URL, beside a missing input.
  assert.deepEqual(paths({ flow: 'insights', callbackUrl: 'not a url' }), ['callbackUrl', 'input']);
  // A callback URL the schema refuses (too long) is named once.
  const long = paths({ flow: 'insights', input: { records: [{ id: 'a', text: 'x' }] }, callbackUrl: `http://10.0.0.1/${'x'.repeat(3_000)}` });
  assert.deepEqual(long, ['callbackUrl']);
  assert.equal(paths({ flow: 'insights', input: { records: [{ id: 'a', text: 'x' }] }, callbackUrl: 'https://example.com/hook' }), 'accepted');
});

test('priority: an integer 1..10, optional; anything else is named', () => {
  const sub = (priority: unknown) => paths({ flow: 'insights', input: { records: [{ id: 'a', text: 'x' }] }, priority });
  for (const ok of [1, 5, 10]) assert.equal(sub(ok), 'accepted', String(ok));
  assert.equal(paths({ flow: 'insights', input: { records: [{ id: 'a', text: 'x' }] } }), 'accepted', 'none: the default');
  for (const bad of [0, 11, 2.5, -1, '9', null, true]) assert.deepEqual(sub(bad), ['priority'], JSON.stringify(bad));
});
