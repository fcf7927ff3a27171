import { afterEach, beforeEach, describe, it, mock } from 'node:test';
import assert from 'node:assert/strict';
import { HardLimitError, TaskCancelledError, TaskLimits } from './limits.js';

/** Advances the mocked clock in 10 ms steps (timers see the time they fire at). */
function advance(ms: number) {
  for (let t = 0; t < ms; t += 10) mock.timers.tick(10);
}

describe('task limits: the clocks count running time only', () => {
  const T0 = 1_000_000;
  let hardErrors: Error[];
  const limits = (o: Partial<{ softMs: number; hardMs: number; deadlineAt: number }> = {}) =>
    new TaskLimits({ softMs: 500, hardMs: 1_000, deadlineAt: 0, ...o, onHard: (e) => hardErrors.push(e) });

  beforeEach(() => {
    hardErrors = [];
    mock.timers.enable({ apis: ['setTimeout', 'Date'], now: T0 });
  });
  afterEach(() => mock.timers.reset());

  it('no clock runs before start(): a task waiting for a slot cannot time out', () => {
    const l = limits();
    advance(5_000);
    assert.equal(l.signal.aborted, false);
    assert.equal(l.hardSignal.aborted, false);
    assert.equal(l.softDeadlineAt, 0);
  });

  it('the soft limit fires softMs after start, the hard limit hardMs after start', () => {
    advance(2_000); // waited 2 s for a slot
    const l = limits();
    l.start();
    assert.equal(l.softDeadlineAt, T0 + 2_000 + 500);
    advance(490);
    assert.equal(l.signal.aborted, false);
    advance(20);
    assert.equal(l.signal.aborted, true);
    assert.equal((l.signal.reason as DOMException).name, 'TimeoutError');
    advance(470);
    assert.equal(l.hardSignal.aborted, false);
    advance(30);
    assert.equal(l.hardSignal.aborted, true);
    assert.equal(hardErrors.length, 1);
    assert.ok(hardErrors[0] instanceof HardLimitError);
    assert.equal(hardErrors[0].code, 'timeout');
  });

  it('pause() stops both clocks while the task waits for a thread; resume moves the limits by the wait', () => {
    const l = limits();
    l.start();
    advance(300);
    const resume = l.pause();
    advance(3_000); // queued behind busy threads, far past both limits
    assert.equal(l.signal.aborted, false);
    assert.equal(l.hardSignal.aborted, false);
    resume();
    resume(); // idempotent
    assert.equal(l.softDeadlineAt, T0 + 500 + 3_000);
    advance(190);
    assert.equal(l.signal.aborted, false, '200 ms of running time were left');
    advance(20);
    assert.equal(l.signal.aborted, true);
    advance(490);
    assert.equal(l.hardSignal.aborted, true);
  });

  it('a wait for a thread is bounded by the flow deadline', () => {
    const l = limits({ deadlineAt: T0 + 2_000 });
    l.start();
    l.pause();
    advance(1_990);
    assert.equal(l.hardSignal.aborted, false);
    advance(20);
    assert.equal(l.hardSignal.aborted, true);
    assert.match(hardErrors[0]!.message, /deadline passed while the task waited/);
  });

  it('cancel: the soft signal fires at once, the hard one after the grace', () => {
    const l = limits({ softMs: 5_000, hardMs: 8_000 });
    l.start();
    advance(100);
    l.cancel(300);
    assert.equal(l.signal.aborted, true);
    assert.ok(l.signal.reason instanceof TaskCancelledError);
    assert.equal(l.cancelled, true);
    advance(290);
    assert.equal(l.hardSignal.aborted, false);
    advance(20);
    assert.equal(l.hardSignal.aborted, true);
    assert.ok(hardErrors[0] instanceof TaskCancelledError);
    advance(10_000);
    assert.equal(hardErrors.length, 1, 'the limits do not fire again');
  });

  it('cancel past the soft limit, or while waiting for a thread, fires the hard signal at once', () => {
    const late = limits();
    late.start();
    advance(600);
    assert.equal(late.signal.aborted, true);
    late.cancel(300);
    assert.equal(late.hardSignal.aborted, true);

    const queued = limits();
    queued.start();
    queued.pause();
    queued.cancel(300);
    assert.equal(queued.hardSignal.aborted, true);
    assert.equal(hardErrors.length, 2);
  });

  it('dispose() clears the timer: nothing fires after the task ended', () => {
    const l = limits();
    l.start();
    l.dispose();
    advance(5_000);
    assert.equal(l.signal.aborted, false);
    assert.equal(hardErrors.length, 0);
  });
});
