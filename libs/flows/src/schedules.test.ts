import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadFlowRegistry } from './index.js';
import {
  CATCH_UP_GRACE_MS,
  MAX_COUNTED_MISSES,
  fireKey,
  newScheduleRecord,
  nextFireTime,
  parseScheduleRecord,
  planFirings,
  scheduleView,
  setPaused,
  validateSchedule,
  type ScheduleRecord,
} from './schedules.js';

const registry = loadFlowRegistry({});
const NOW = Date.parse('2026-03-01T12:00:00.300Z');
const submission = { flow: 'insights', input: { records: [{ id: 'a', text: 'hi' }] } };
const spec = { id: 'every-5s', cron: '*/5 * * * * *', timezone: 'UTC', submission };

function refusedPaths(body: unknown): string[] {
  try {
    validateSchedule(body, { registry, now: NOW });
  } catch (err) {
    const e = err as { code?: string; details?: Array<{ path: string }> };
    assert.equal(e.code, 'invalid_argument');
    return (e.details ?? []).map((d) => d.path).sort();
  }
  assert.fail('accepted');
}

test('a schedule is validated field by field: cron, timezone, id, overlap and the submission inside', () => {
  const ok = validateSchedule(spec, { registry, now: NOW });
  assert.equal(ok.overlap, 'allow');
  assert.equal(validateSchedule({ ...spec, cron: '0 9 * * 1-5', timezone: 'Europe/Berlin', overlap: 'skip' }, { registry, now: NOW }).overlap, 'skip');
  assert.deepEqual(refusedPaths({ ...spec, cron: 'every minute' }), ['cron']);
  assert.deepEqual(refusedPaths({ ...spec, cron: '61 * * * *' }), ['cron']);
  assert.deepEqual(refusedPaths({ ...spec, cron: '* * * * * * 2030' }), ['cron'], 'no year field');
  assert.deepEqual(refusedPaths({ ...spec, cron: '0 0 30 2 *' }), ['cron'], 'never fires');
  assert.deepEqual(refusedPaths({ ...spec, timezone: 'Mars/Olympus' }), ['timezone']);
  assert.deepEqual(refusedPaths({ ...spec, id: 'Has Space' }), ['id']);
  assert.deepEqual(refusedPaths({ ...spec, overlap: 'queue' }), ['overlap']);
  assert.deepEqual(refusedPaths({ ...spec, extra: 1 }), ['']);
  assert.deepEqual(refusedPaths({ ...spec, submission: { flow: 'nope', input: {} } }), ['submission.flow']);
  assert.deepEqual(refusedPaths({ ...spec, submission: { ...submission, idempotencyKey: 'k' } }), ['submission.idempotencyKey']);
  assert.deepEqual(refusedPaths({ ...spec, submission: { ...submission, delayMs: 5 } }), ['submission.delayMs']);
  assert.deepEqual(refusedPaths({ id: 'x' }), ['cron', 'submission']);
});

test('next fire times: seconds field optional, time zones honoured', () => {
  assert.equal(nextFireTime('*/5 * * * * *', 'UTC', NOW), Date.parse('2026-03-01T12:00:05Z'));
  assert.equal(nextFireTime('*/5 * * * *', 'UTC', NOW), Date.parse('2026-03-01T12:05:00Z'));
  // 09:00 in Berlin (UTC+1 in March before the switch) is 08:00 UTC.
  assert.equal(nextFireTime('0 9 * * *', 'Europe/Berlin', NOW), Date.parse('2026-03-02T08:00:00Z'));
  const r = newScheduleRecord('t', validateSchedule(spec, { registry, now: NOW }), NOW);
  assert.equal(r.nextFireAt, Date.parse('2026-03-01T12:00:05Z'));
  assert.equal(fireKey('every-5s', r.nextFireAt), 'every-5s:2026-03-01T12:00:05.000Z');
});

const rec = (over: Partial<ScheduleRecord> = {}): ScheduleRecord => ({ ...newScheduleRecord('t', validateSchedule(spec, { registry, now: NOW }), NOW), ...over });

test('planFirings: nothing before the fire time; the due one at its time, and the next after it', () => {
  const r = rec();
  assert.deepEqual(planFirings(r, NOW, { previousRunning: false }).fire, []);
  const at = r.nextFireAt!;
  const p = planFirings(r, at + 200, { previousRunning: false });
  assert.deepEqual(p, { fire: [at], skipped: 0, missed: 0, next: at + 5_000 });
});

test('catch-up: fire times within the grace all fire; of older ones only the newest, once, the rest counted missed', () => {
  const first = Date.parse('2026-03-01T12:00:05Z');
  // A slow tick: three fire times due within the grace, all fire.
  const slow = planFirings(rec({ nextFireAt: first }), first + 10_100, { previousRunning: false });
  assert.deepEqual(slow.fire, [first, first + 5_000, first + 10_000]);
  assert.equal(slow.missed, 0);
  // Down for an hour: the fire times older than the grace are missed, the recent ones fire.
  const now = first + 3_600_000 + 100;
  const down = planFirings(rec({ nextFireAt: first }), now, { previousRunning: false });
  // Within the grace (30 s before now, now = first + 1 h + 100 ms): first + 1 h − 25 s … first + 1 h.
  const recent = CATCH_UP_GRACE_MS / 5_000;
  assert.equal(down.fire.length, recent);
  assert.equal(down.fire.at(-1), first + 3_600_000);
  assert.equal(down.missed, 3_600_000 / 5_000 + 1 - recent);
  assert.equal(down.next, first + 3_605_000);
  // An hourly schedule down for three hours: nothing recent, so the most recent missed one fires once.
  const hourly = rec({ cron: '0 * * * *', nextFireAt: Date.parse('2026-03-01T13:00:00Z') });
  const h = planFirings(hourly, Date.parse('2026-03-01T15:20:00Z'), { previousRunning: false });
  assert.deepEqual(h.fire, [Date.parse('2026-03-01T15:00:00Z')]);
  assert.equal(h.missed, 2);
  assert.equal(h.next, Date.parse('2026-03-01T16:00:00Z'));
});

test('catch-up after a very long outage counts up to the cap and still fires the newest', () => {
  const r = rec({ cron: '* * * * * *', nextFireAt: Date.parse('2026-02-01T00:00:00Z') });
  const p = planFirings(r, NOW, { previousRunning: false });
  assert.ok(p.missed >= MAX_COUNTED_MISSES - 1 && p.missed <= MAX_COUNTED_MISSES);
  assert.equal(p.fire.at(-1), Date.parse('2026-03-01T12:00:00Z'));
  assert.equal(p.next, Date.parse('2026-03-01T12:00:01Z'));
});

test('overlap skip: nothing fires while the previous flow runs (each due time counted), one fires after', () => {
  const first = Date.parse('2026-03-01T12:00:05Z');
  const r = rec({ overlap: 'skip', nextFireAt: first });
  const busy = planFirings(r, first + 10_100, { previousRunning: true });
  assert.deepEqual(busy, { fire: [], skipped: 3, missed: 0, next: first + 15_000 });
  const free = planFirings(r, first + 10_100, { previousRunning: false });
  assert.deepEqual(free, { fire: [first + 10_000], skipped: 2, missed: 0, next: first + 15_000 });
});

test('paused: no fire time; resumed: the next one after now, the paused time not caught up', () => {
  const r = setPaused(rec(), true, NOW);
  assert.equal(r.nextFireAt, null);
  assert.deepEqual(planFirings(r, NOW + 60_000, { previousRunning: false }).fire, []);
  const back = setPaused(r, false, NOW + 60_000);
  assert.equal(back.nextFireAt, Date.parse('2026-03-01T12:01:05Z'));
});

test('records from KV are checked; the view shows times as ISO', () => {
  const r = rec();
  assert.deepEqual(parseScheduleRecord(JSON.stringify(r)), r);
  assert.equal(parseScheduleRecord('{'), undefined);
  assert.equal(parseScheduleRecord(JSON.stringify({ ...r, fired: 'x' })), undefined);
  assert.equal(parseScheduleRecord(JSON.stringify({ ...r, id: '../x' })), undefined);
  const v = scheduleView(r);
  assert.equal(v.nextFireAt, '2026-03-01T12:00:05.000Z');
  assert.equal(v.lastFireAt, null);
});
