import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DefinitionError, validateDefinitions } from './definitions.js';
import { planOf } from './plan.js';
import { MISSING_KEY_VALUE, keyNeedsInput, resolveLimitKey } from './task-limits.js';

const limits = { softLimitMs: 1_000, hardLimitMs: 2_000, maxAttempts: 2, backoff: { initialMs: 10, maxMs: 20, multiplier: 2 } };
const dag = (task: Record<string, unknown>) => ({ name: 'lim', version: 1, deadlineMs: 60_000, tasks: [{ name: 'score', subject: 'jetflow.task.custom.score', ...task }] });
const stage = (task: Record<string, unknown>) => ({
  name: 'lims',
  version: 1,
  deadlineMs: 60_000,
  stages: [{ name: 'only', onFailure: 'fail_flow', tasks: [{ name: 'score', subject: 'jetflow.task.custom.score', ...limits, ...task }] }],
});
const refusal = (def: unknown) => {
  try {
    validateDefinitions([def]);
  } catch (e) {
    assert.ok(e instanceof DefinitionError, String(e));
    return e.message;
  }
  assert.fail('accepted');
};

test('resolveLimitKey: tenant, flow and input paths (strings as they are, others as JSON, missing shared), prefixed by the key', () => {
  const flow = { tenant: 'acme', flowId: 'f123', input: { customerId: 'c-7', n: 3, nested: { region: 'eu' }, obj: { a: 1 }, nil: null } };
  assert.equal(resolveLimitKey('tenant', flow), 'tenant=acme');
  assert.equal(resolveLimitKey('flow', flow), 'flow=f123');
  assert.equal(resolveLimitKey('input.customerId', flow), 'input.customerId=c-7');
  assert.equal(resolveLimitKey('input.n', flow), 'input.n=3');
  assert.equal(resolveLimitKey('input.nested.region', flow), 'input.nested.region=eu');
  assert.equal(resolveLimitKey('input.obj', flow), 'input.obj={"a":1}');
  assert.equal(resolveLimitKey('input.nil', flow), `input.nil=${MISSING_KEY_VALUE}`);
  assert.equal(resolveLimitKey('input.absent', flow), `input.absent=${MISSING_KEY_VALUE}`);
  assert.equal(resolveLimitKey('input.customerId.deeper', flow), `input.customerId.deeper=${MISSING_KEY_VALUE}`);
  assert.equal(resolveLimitKey('input.customerId', { tenant: 'acme', flowId: 'f', input: undefined }), `input.customerId=${MISSING_KEY_VALUE}`);
  // Inherited properties are no values.
  assert.equal(resolveLimitKey('input.toString', flow), `input.toString=${MISSING_KEY_VALUE}`);
  // The same text under two keys is two values.
  assert.notEqual(resolveLimitKey('tenant', { tenant: 'x', flowId: 'x' }), resolveLimitKey('flow', { tenant: 'x', flowId: 'x' }));
  // A long value travels as its hash; two long values that share a prefix stay apart.
  const a = resolveLimitKey('input.k', { tenant: 't', flowId: 'f', input: { k: 'x'.repeat(400) + 'a' } });
  const b = resolveLimitKey('input.k', { tenant: 't', flowId: 'f', input: { k: 'x'.repeat(400) + 'b' } });
  assert.match(a, /^input\.k=#[0-9a-f]{64}$/);
  assert.notEqual(a, b);
  assert.deepEqual([keyNeedsInput('tenant'), keyNeedsInput('flow'), keyNeedsInput('input.a'), keyNeedsInput(undefined)], [false, false, true, false]);
});

test('concurrency and rateLimit validate on DAG and stage tasks, the path named on error', () => {
  const [d] = validateDefinitions([dag({ concurrency: { limit: 2, key: 'tenant' }, rateLimit: { perSecond: 5, key: 'input.customerId' } })]);
  const pt = planOf(d!).byName.get('score')!;
  assert.deepEqual(pt.concurrency, { limit: 2, key: 'tenant' });
  assert.deepEqual(pt.rateLimit, { perSecond: 5, key: 'input.customerId' });
  // The key defaults to the tenant.
  const [s] = validateDefinitions([stage({ concurrency: { limit: 1 } })]);
  assert.deepEqual(planOf(s!).byName.get('score')!.concurrency, { limit: 1, key: 'tenant' });
  assert.equal(planOf(s!).byName.get('score')!.rateLimit, undefined);

  assert.match(refusal(dag({ concurrency: { limit: 0 } })), /at tasks\.0\.concurrency\.limit/);
  assert.match(refusal(dag({ concurrency: { limit: 1.5 } })), /at tasks\.0\.concurrency\.limit/);
  assert.match(refusal(dag({ concurrency: { limit: 2, key: 'customer' } })), /at tasks\.0\.concurrency\.key: must be "tenant", "flow" or a dot path into the input/);
  assert.match(refusal(dag({ concurrency: { limit: 2, key: 'input.' } })), /at tasks\.0\.concurrency\.key/);
  assert.match(refusal(dag({ concurrency: { limit: 2, key: 'input.a b' } })), /at tasks\.0\.concurrency\.key/);
  assert.match(refusal(dag({ rateLimit: { perSecond: 0 } })), /at tasks\.0\.rateLimit\.perSecond/);
  assert.match(refusal(dag({ rateLimit: { key: 'tenant' } })), /at tasks\.0\.rateLimit\.perSecond/);
  assert.match(refusal(stage({ rateLimit: { perSecond: 5, key: 'records' } })), /at stages\.0\.tasks\.0\.rateLimit\.key/);
  assert.match(refusal(stage({ concurrency: { limit: 257 } })), /at stages\.0\.tasks\.0\.concurrency\.limit/);
  // A child-flow task runs in no worker: nothing would enforce its limit.
  assert.match(
    refusal({ name: 'par', version: 1, deadlineMs: 60_000, tasks: [{ name: 'kid', flow: 'other', concurrency: { limit: 1 } }] }),
    /par\.tasks\[0\] \(kid\) concurrency: only a task with a subject/,
  );
});
