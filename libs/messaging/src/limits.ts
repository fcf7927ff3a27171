import { ErrorCodes } from '@jetflow/errors';

/**
 * A task's soft and hard time limits, and its cancellation. The clocks count running time only: they
 * start at start() (the task got a slot), stop while the task waits for a worker thread (pause()), and a
 * wait is bounded by the flow's deadline instead. One timer per task at a time.
 */

/** Node fires a longer setTimeout after 1 ms (TimeoutOverflowWarning): a huge limit off the wire must not. */
const MAX_TIMER_MS = 2 ** 31 - 1;

interface LazyAbort {
  readonly signal: AbortSignal;
  readonly aborted: boolean;
  abort(reason: unknown): void;
}

/** An AbortController made on first use of its signal (creating one per task was ~4 % of a worker's CPU). */
function lazyAbort(): LazyAbort {
  let c: AbortController | undefined;
  let aborted = false;
  let reason: unknown;
  return {
    get signal() {
      if (!c) {
        c = new AbortController();
        if (aborted) c.abort(reason);
      }
      return c.signal;
    },
    get aborted() {
      return aborted;
    },
    abort(r: unknown) {
      if (aborted) return;
      aborted = true;
      reason = r;
      c?.abort(r);
    },
  };
}

/** The hard limit, or the flow deadline passing while the task waited for a thread. Named like AbortSignal.timeout's reason. */
export class HardLimitError extends Error {
  readonly code = ErrorCodes.TIMEOUT;
  override readonly name = 'TimeoutError';
}

/** The task's flow was cancelled while it ran. */
export class TaskCancelledError extends Error {
  readonly code = ErrorCodes.CANCELLED;
  override readonly name = 'AbortError';
}

export interface TaskLimitsOptions {
  softMs: number;
  hardMs: number;
  /** The flow's deadline (ms since epoch; 0 = none): bounds a wait for a thread. */
  deadlineAt: number;
  /** Called once when the hard signal fires (limit, deadline while waiting, or cancel after its grace). */
  onHard: (err: Error) => void;
}

export class TaskLimits {
  private readonly soft = lazyAbort();
  private readonly hard = lazyAbort();
  private timer: NodeJS.Timeout | undefined;
  private softAt = 0;
  private hardAt = 0;
  private pauses = 0;
  private pausedAt = 0;
  private cancelling = false;
  /** When the task got its slot (0 before). */
  startedAt = 0;

  constructor(private readonly o: TaskLimitsOptions) {}

  /** Aborted at the soft limit, or at once when the flow is cancelled. */
  get signal(): AbortSignal {
    return this.soft.signal;
  }
  /** Aborted at the hard limit, or a short grace after a cancel. */
  get hardSignal(): AbortSignal {
    return this.hard.signal;
  }
  get hardAborted(): boolean {
    return this.hard.aborted;
  }
  /** Absolute time of the soft limit, later by every pause so far (0 before start). */
  get softDeadlineAt(): number {
    return this.softAt;
  }

  /** The task starts running: the clocks start now. */
  start(now = Date.now()): void {
    if (this.startedAt) return;
    this.startedAt = now;
    // A soft limit past the hard one (refused in definitions, possible off the wire) fires with the hard one.
    this.softAt = now + Math.min(this.o.softMs, this.o.hardMs);
    this.hardAt = now + this.o.hardMs;
    this.arm(now);
  }

  /**
   * Stops the clocks while the task waits for something that is not its work (a free pool thread);
   * the flow deadline bounds the wait. Call the returned function when the work starts (idempotent).
   */
  pause(): () => void {
    let resumed = false;
    if (this.pauses++ === 0) {
      this.pausedAt = Date.now();
      if (!this.cancelling) this.armDeadline(this.pausedAt);
    }
    return () => {
      if (resumed) return;
      resumed = true;
      if (--this.pauses > 0) return;
      const now = Date.now();
      const shift = now - this.pausedAt;
      this.softAt += shift;
      this.hardAt += shift;
      if (!this.cancelling) this.arm(now);
    };
  }

  /**
   * The flow was cancelled: the soft signal fires now; the hard one (a pool thread is terminated) after
   * graceMs, or now when the task is past its soft limit or is only waiting for a thread.
   */
  cancel(graceMs: number): void {
    if (this.cancelling || this.hard.aborted) return;
    this.cancelling = true;
    const err = new TaskCancelledError('the flow was cancelled');
    const pastSoft = this.soft.aborted;
    this.soft.abort(err);
    this.clear();
    if (pastSoft || this.pauses > 0 || graceMs <= 0) this.fireHard(err);
    else this.timer = setTimeout(() => this.fireHard(err), Math.min(graceMs, MAX_TIMER_MS));
  }

  get cancelled(): boolean {
    return this.cancelling;
  }

  /** Fires the hard signal now (the worker is shutting down and hands the task back). */
  abortHard(err: Error): void {
    this.fireHard(err);
  }

  dispose(): void {
    this.clear();
  }

  private clear() {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** The next limit due: the soft one, which then arms the hard one. */
  private arm(now: number) {
    this.clear();
    if (this.hard.aborted || !this.startedAt) return;
    if (!this.soft.aborted) {
      this.timer = setTimeout(
        () => {
          this.soft.abort(new DOMException('soft time limit reached', 'TimeoutError'));
          this.arm(Date.now());
        },
        Math.min(MAX_TIMER_MS, Math.max(0, this.softAt - now)),
      );
      return;
    }
    this.timer = setTimeout(() => this.fireHard(new HardLimitError(`hard time limit of ${this.o.hardMs} ms exceeded`)), Math.min(MAX_TIMER_MS, Math.max(0, this.hardAt - now)));
  }

  private armDeadline(now: number) {
    this.clear();
    if (!this.o.deadlineAt) return;
    this.timer = setTimeout(
      () => this.fireHard(new HardLimitError('the flow deadline passed while the task waited for a worker thread')),
      Math.min(MAX_TIMER_MS, Math.max(0, this.o.deadlineAt - now)),
    );
  }

  private fireHard(err: Error) {
    this.clear();
    if (this.hard.aborted) return;
    this.hard.abort(err);
    this.o.onHard(err);
  }
}
