// The delayed start of `jetflow submit` (scripts/cli/start.ts): --delay's units, --start-at's form, and
// how they replace the submission's own start.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseDelay, parseStartAt, withStart } from '../scripts/cli/start.js';
import { UsageError } from '../scripts/cli/exit.js';

test('--delay: milliseconds, or whole units largest first', () => {
  assert.equal(parseDelay('1500'), 1_500);
  assert.equal(parseDelay('250ms'), 250);
  assert.equal(parseDelay('90s'), 90_000);
  assert.equal(parseDelay('5m'), 300_000);
  assert.equal(parseDelay('1h30m'), 5_400_000);
  assert.equal(parseDelay('2d'), 172_800_000);
  for (const bad of ['', '5 minutes', '1.5h', '-1', 'h', '10x', '5m ago'])
    assert.throws(
      () => parseDelay(bad),
      (e: unknown) => e instanceof UsageError && e.message.includes(`got "${bad}"`),
      bad,
    );
});

test('--start-at: an RFC 3339 time with an offset', () => {
  assert.equal(parseStartAt('2030-01-31T12:00:00Z'), '2030-01-31T12:00:00Z');
  assert.equal(parseStartAt('2030-01-31T12:00:00.250+02:00'), '2030-01-31T12:00:00.250+02:00');
  for (const bad of ['2030-01-31', '2030-01-31T12:00:00', 'tomorrow', '2030-13-45T99:00:00Z']) assert.throws(() => parseStartAt(bad), UsageError, bad);
});

test("each replaces the submission's own start; both together are refused", () => {
  assert.deepEqual(withStart({ flow: 'f', startAt: '2030-01-01T00:00:00Z' }, { delay: '5s' }), { flow: 'f', delayMs: 5_000 });
  assert.deepEqual(withStart({ flow: 'f', delayMs: 10 }, { startAt: '2030-01-01T00:00:00Z' }), { flow: 'f', startAt: '2030-01-01T00:00:00Z' });
  assert.deepEqual(withStart({ flow: 'f', delayMs: 10 }, {}), { flow: 'f', delayMs: 10 });
  assert.throws(() => withStart({ flow: 'f' }, { delay: '5s', startAt: '2030-01-01T00:00:00Z' }), /--delay and --start-at exclude each other/);
});
