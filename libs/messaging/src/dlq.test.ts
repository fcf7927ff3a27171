import { test, mock } from 'node:test';
import assert from 'node:assert/strict';
import { backoffDelay } from './dlq.js';

/** backoffDelay with Math.random pinned at r (0 = the low end of the jitter band, ~1 = the top). */
function at(r: number, ...args: Parameters<typeof backoffDelay>): number {
  const m = mock.method(Math, 'random', () => r);
  try {
    return backoffDelay(...args);
  } finally {
    m.mock.restore();
  }
}

test('backoffDelay grows by the multiplier per attempt, jittered within [base/2, base], capped at maxMs', () => {
  // initial 200, x5: bases 200, 1000, 5000, 25000 -> capped at 20000
  assert.deepEqual(
    [1, 2, 3, 4, 5].map((a) => at(0, a, 200, 20_000, 5)),
    [100, 500, 2_500, 10_000, 10_000],
  );
  assert.deepEqual(
    [1, 2, 3, 4, 5].map((a) => at(0.999999, a, 200, 20_000, 5)),
    [200, 1_000, 5_000, 20_000, 20_000],
  );
  // x1: constant; x1.5: fractional growth
  assert.deepEqual(
    [1, 2, 3].map((a) => at(0.999999, a, 300, 10_000, 1)),
    [300, 300, 300],
  );
  assert.deepEqual(
    [1, 2, 3].map((a) => at(0.999999, a, 400, 10_000, 1.5)),
    [400, 600, 900],
  );
  for (let i = 0; i < 1_000; i++) {
    const d = backoffDelay(3, 200, 60_000, 5);
    assert.ok(d >= 2_500 && d <= 5_000, String(d));
  }
});

test('backoffDelay: a missing or invalid multiplier (0 from an old message, NaN, below 1) means x2; above 10 is capped at 10', () => {
  for (const m of [undefined, 0, Number.NaN, 0.5, -3, Number.POSITIVE_INFINITY]) {
    const args: Parameters<typeof backoffDelay> = m === undefined ? [3, 100, 60_000] : [3, 100, 60_000, m];
    assert.equal(at(0.999999, ...args), 400, `multiplier ${m}`);
  }
  assert.equal(at(0.999999, 3, 100, 1_000_000, 1_000), 10_000);
});
