import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deriveFlowId, flowIdForSequence, idempotencyClaimKey, idProblem, isValidId, randomFlowId } from './index.js';

test('ids that would break a subject or a KV key are refused, naming the rule; what Jetflow makes passes', () => {
  for (const bad of ['', 'a b', 'x*', 'y>', 'a.b', 'x'.repeat(5_000), 'Ünï', '-lead', 'tab\t', 42, undefined]) {
    for (const kind of ['tenant', 'flow', 'task', 'flowId'] as const) {
      const why = idProblem(kind, bad);
      assert.ok(why, `${kind} ${String(bad).slice(0, 10)} refused`);
      assert.ok(why.length < 200, 'a 5,000-character id is shortened in the message');
      assert.equal(isValidId(kind, bad), false);
    }
  }
  assert.match(idProblem('flowId', 'x'.repeat(5_000))!, /^flow id "x{40}"… \(5000 characters\) is not valid \(lowercase letters and digits, 2 to 64 characters\)$/);
  assert.match(idProblem('tenant', 'a b')!, /^tenant "a b" is not valid/);
  for (const id of [deriveFlowId('default', 'k'), randomFlowId(), flowIdForSequence(12)]) assert.equal(idProblem('flowId', id), undefined, id);
  for (const t of ['default', 'acme-2', 'a_b', '0day']) assert.equal(idProblem('tenant', t), undefined, t);
  for (const f of ['insights', 'fail-fast', 'a']) assert.equal(idProblem('flow', f), undefined, f);
  assert.notEqual(idProblem('flow', 'Insights'), undefined);
});

test('the idempotency claim key is the tenant and a hash of the key: one bucket for every door, never a bad KV key', () => {
  assert.equal(idempotencyClaimKey('default', 'order-1'), idempotencyClaimKey('default', 'order-1'));
  assert.notEqual(idempotencyClaimKey('default', 'order-1'), idempotencyClaimKey('other', 'order-1'));
  assert.match(idempotencyClaimKey('default', 'a b*>.'), /^default\.[0-9a-f]{40}$/);
});
