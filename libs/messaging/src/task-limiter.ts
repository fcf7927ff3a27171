import { createHash } from 'node:crypto';
import type { KV, KvEntry, NatsConnection } from 'nats';
import { BUCKETS } from './topology.js';
import { openKv } from './kv-view.js';
import { isCasConflict } from './js-errors.js';
import { encodeUtf8 } from './utf8.js';

/**
 * Concurrency and rate limits by key, shared by every replica of every worker through KV jetflow_limits
 * (ARCHITECTURE.md, "Limits by key"). Keys, for a task subject `jetflow.task.<kind>.<name>` and a key
 * value's hash `<h>` (the first 16 hex of the sha256 of the value the orchestrator resolved):
 *
 * - `<kind>.<name>.c.<h>.<slot>`, slot 0…limit-1: a **lease**. Taken with create (compare-and-set on "no
 *   such key"), renewed with a compare-and-set on its revision while the task runs, deleted (on its revision)
 *   when it ends. A lease whose last renewal is older than its TTL by the server's clock (the entry's
 *   timestamp) belongs to a dead worker: anyone may take it with a compare-and-set on that revision.
 * - `<kind>.<name>.r.<h>`: the next start time (ms) of a rate limit (GCRA with a burst of one: starts are
 *   spaced 1000/perSecond ms apart). A start reserves its time with a compare-and-set and waits until then.
 * - `<kind>.<name>.w.<flowId>.<task>[.<chunk>]`: a task **waiting** for its limit (what the flow view shows as
 *   `waitingForLimit`): put when it has to wait, renewed with its lease's rhythm, deleted when it may start.
 *   An entry older than its `ttlMs` (a killed worker's) is not shown.
 *
 * The keys start with the served subject's tokens so a worker's NATS identity may write only the limits of
 * the subjects it serves.
 */
export interface LimitLease {
  readonly key: string;
  /** Renews the lease (a compare-and-set); false when it was lost (its TTL passed and another took it). */
  renew(): Promise<boolean>;
  /** Deletes the lease (only if it is still ours). */
  release(): Promise<void>;
  /** When it was last renewed (ms, local clock). */
  readonly renewedAt: number;
}

export interface TaskLimiterOptions {
  nc: NatsConnection;
  workerId: string;
  /** A lease not renewed for this long is free for others (the holder was killed). Default 10 s. */
  leaseMs?: number;
}

export const DEFAULT_LIMIT_LEASE_MS = 10_000;
/** Slots one acquisition try probes at most. */
export const MAX_PROBES = 16;

/** The key value's hash used in KV keys (never the value itself: it is any string from a message). */
export const limitKeyHash = (value: string) => createHash('sha256').update(value).digest('hex').slice(0, 16);

/** `<kind>.<name>` of a task subject, or undefined for a subject outside jetflow.task.<kind>.<name>. */
export function limitPrefix(subject: string): string | undefined {
  const m = /^jetflow\.task\.([a-z0-9_-]+)\.([a-z0-9_-]+)$/.exec(subject);
  return m ? `${m[1]}.${m[2]}` : undefined;
}

/** What a task waits for (KV jetflow_limits `<kind>.<name>.w.…`, the flow view's `waitingForLimit`). */
export interface WaitingForLimit {
  kind: 'concurrency' | 'rate';
  /** The key's name (`tenant`, `input.customer`), never its value. */
  key: string;
  /** At most this many at once (concurrency), or starts per second (rate). */
  limit: number;
  /** When it began to wait (ms since epoch). */
  since: number;
}

/** The KV key marking a task (or a mapped task's chunk) of `subject` as waiting for its limit; undefined off jetflow.task.<kind>.<name>. */
export function waitingKey(subject: string, t: { flowId: string; task: string; chunk?: number }): string | undefined {
  const prefix = limitPrefix(subject);
  return prefix && `${prefix}.w.${t.flowId}.${t.task}${t.chunk !== undefined ? `.${t.chunk}` : ''}`;
}

/**
 * A waiting mark read back (the flow view): what it waits for, or undefined when it is deleted, not ours, or
 * older than its TTL by the server's timestamp (its worker was killed).
 */
export function waitingOf(e: KvEntry | null | undefined, now = Date.now()): WaitingForLimit | undefined {
  if (!e || e.operation !== 'PUT') return undefined;
  try {
    const v = JSON.parse(e.string()) as Partial<WaitingForLimit> & { ttlMs?: unknown };
    const ttl = typeof v.ttlMs === 'number' && Number.isFinite(v.ttlMs) ? Math.min(Math.max(v.ttlMs, 500), 300_000) : DEFAULT_LIMIT_LEASE_MS;
    if (e.created.getTime() + ttl < now) return undefined;
    if ((v.kind !== 'concurrency' && v.kind !== 'rate') || typeof v.key !== 'string' || typeof v.limit !== 'number' || typeof v.since !== 'number') return undefined;
    return { kind: v.kind, key: v.key.slice(0, 200), limit: v.limit, since: v.since };
  } catch {
    return undefined;
  }
}

/** A compare-and-set lost (wrong last sequence). */
const isWrongLast = (err: unknown) => isCasConflict(err);

export class TaskLimiter {
  readonly leaseMs: number;
  private kv?: Promise<KV>;
  constructor(private readonly o: TaskLimiterOptions) {
    this.leaseMs = Math.max(500, o.leaseMs ?? DEFAULT_LIMIT_LEASE_MS);
  }

  private bucket(): Promise<KV> {
    // Reads feed compare-and-sets: from the stream leader (kv-view.ts).
    this.kv ??= openKv(this.o.nc, BUCKETS.limits, { leader: true }).catch((e: unknown) => {
      this.kv = undefined;
      throw e;
    });
    return this.kv;
  }

  /**
   * Tries the slots of the key from a random one on (so workers spread over the slots), at most
   * MAX_PROBES of them per call (every slot when the limit is no larger), and returns the lease of the
   * first free (or expired) one; undefined when those are held. A larger limit is covered over a few
   * calls instead of costing 2 × limit KV requests each time it is full.
   */
  async tryAcquire(subject: string, keyValue: string, limit: number, holder: { flowId: string; task: string; chunk?: number }): Promise<LimitLease | undefined> {
    const prefix = limitPrefix(subject);
    if (!prefix) throw new Error(`subject ${subject} is not a task subject`);
    const kv = await this.bucket();
    const base = `${prefix}.c.${limitKeyHash(keyValue)}`;
    const value = () => encodeUtf8(JSON.stringify({ worker: this.o.workerId, ...holder, ttlMs: this.leaseMs, at: Date.now() }));
    const first = Math.floor(Math.random() * limit);
    for (let i = 0; i < Math.min(limit, MAX_PROBES); i++) {
      const key = `${base}.${(first + i) % limit}`;
      let rev: number | undefined;
      try {
        rev = await kv.create(key, value());
      } catch (err) {
        if (!isWrongLast(err)) throw err;
        const e = await kv.get(key);
        if (e && this.expired(e)) {
          try {
            rev = await kv.update(key, value(), e.revision);
          } catch (err2) {
            if (!isWrongLast(err2)) throw err2;
          }
        }
      }
      if (rev !== undefined) return this.lease(kv, key, rev, value);
    }
    return undefined;
  }

  /** A lease entry is free when deleted, or not renewed within its TTL (judged by the server's timestamp). */
  private expired(e: KvEntry): boolean {
    if (e.operation !== 'PUT') return true;
    let ttl = this.leaseMs;
    try {
      const v = JSON.parse(e.string()) as { ttlMs?: unknown };
      if (typeof v.ttlMs === 'number' && Number.isFinite(v.ttlMs)) ttl = Math.min(Math.max(v.ttlMs, 500), 300_000);
    } catch {
      // not ours: judged by our TTL
    }
    return e.created.getTime() + ttl < Date.now();
  }

  private lease(kv: KV, key: string, rev: number, value: () => Uint8Array): LimitLease {
    let revision = rev;
    let renewedAt = Date.now();
    let lost = false;
    return {
      key,
      get renewedAt() {
        return renewedAt;
      },
      async renew() {
        if (lost) return false;
        renewedAt = Date.now();
        try {
          revision = await kv.update(key, value(), revision);
          return true;
        } catch (err) {
          if (!isWrongLast(err)) throw err;
          lost = true;
          return false;
        }
      },
      async release() {
        if (lost) return;
        lost = true;
        try {
          await kv.delete(key, { previousSeq: revision });
        } catch (err) {
          if (!isWrongLast(err)) throw err;
        }
      },
    };
  }

  /**
   * Marks a task as waiting for its limit (the flow view's `waitingForLimit`); put again to renew it.
   * `waiting.key` is the key's name (`tenant`, `input.customer`), never its value. Returns the KV key.
   */
  async markWaiting(subject: string, holder: { flowId: string; task: string; chunk?: number }, waiting: WaitingForLimit): Promise<string> {
    const prefix = limitPrefix(subject);
    if (!prefix) throw new Error(`subject ${subject} is not a task subject`);
    const kv = await this.bucket();
    const key = waitingKey(subject, holder)!;
    await kv.put(key, encodeUtf8(JSON.stringify({ ...waiting, worker: this.o.workerId, ttlMs: this.leaseMs, at: Date.now() })));
    return key;
  }

  /** The task no longer waits for its limit. */
  async clearWaiting(key: string): Promise<void> {
    await (await this.bucket()).delete(key);
  }

  /**
   * Reserves the next start of a rate limit: the ms to wait before the task may start (0: now). Each
   * start moves the key's next time by 1000/perSecond; a lost compare-and-set reads again.
   */
  async reserveStart(subject: string, keyValue: string, perSecond: number): Promise<number> {
    const prefix = limitPrefix(subject);
    if (!prefix) throw new Error(`subject ${subject} is not a task subject`);
    const kv = await this.bucket();
    const key = `${prefix}.r.${limitKeyHash(keyValue)}`;
    const interval = 1000 / Math.min(Math.max(perSecond, 0.01), 10_000);
    for (let i = 0; i < 20; i++) {
      const e = await kv.get(key);
      const now = Date.now();
      let next = 0;
      if (e?.operation === 'PUT') {
        try {
          const v = Number((JSON.parse(e.string()) as { next?: unknown }).next);
          // A time beyond what a sane backlog of reservations reaches is not trusted.
          if (Number.isFinite(v) && v < now + Math.max(120_000, interval * 1_000)) next = v;
        } catch {
          // garbage: start from now
        }
      }
      const start = Math.max(next, now);
      const body = encodeUtf8(JSON.stringify({ next: start + interval, worker: this.o.workerId }));
      try {
        if (e) await kv.update(key, body, e.revision);
        else await kv.create(key, body);
        return start - now;
      } catch (err) {
        if (!isWrongLast(err)) throw err;
      }
    }
    throw new Error(`rate limit ${key}: too much contention`);
  }
}
