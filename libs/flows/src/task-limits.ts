import { createHash } from 'node:crypto';
import { z } from 'zod';

/**
 * Concurrency and rate limits of a task type, by key (README "Flow definitions"): at most `limit` tasks
 * with the same key value run at once across every replica of its workers, and no more than `perSecond`
 * start per second. The key is `tenant`, `flow` (the flow id: a mapped task's chunks of one flow), or a
 * dot path into the submission's input, `input.<path>` (e.g. `input.customerId`). The orchestrator
 * resolves the key's value into each Task message; the worker runtime enforces the limit (worker.ts,
 * task-limiter.ts).
 */
export const LIMIT_KEY_PATH_RE = /^input(\.[A-Za-z_$][A-Za-z0-9_$-]{0,63}){1,8}$/;

export const LimitKeySchema = z
  .string()
  .max(600)
  .refine((k) => k === 'tenant' || k === 'flow' || LIMIT_KEY_PATH_RE.test(k), {
    message: 'must be "tenant", "flow" or a dot path into the input such as "input.customerId" (keys of letters, digits, _, $ or -)',
  });

export const ConcurrencySchema = z.object({
  /** Tasks with one key value running at once, across every worker. */
  limit: z.number().int().min(1).max(256),
  key: LimitKeySchema.default('tenant'),
});
export const RateLimitSchema = z.object({
  /** Starts per second per key value (evenly spaced: one every 1000/perSecond ms). */
  perSecond: z.number().min(0.01).max(10_000),
  key: LimitKeySchema.default('tenant'),
});
export type ConcurrencySpec = z.infer<typeof ConcurrencySchema>;
export type RateLimitSpec = z.infer<typeof RateLimitSchema>;

/** Longest key value carried in a Task as it is (a longer one travels as its sha256). */
export const MAX_KEY_VALUE = 256;
/** The value of an input path the input does not have: such flows share one key value. */
export const MISSING_KEY_VALUE = '\u0000missing';

/**
 * The value of a limit key for one flow: the tenant, the flow id, or the input's value at the path
 * (a string as it is, anything else as its JSON; absent: MISSING_KEY_VALUE). Always prefixed with the
 * key itself, so `tenant` "a" and `input.x` "a" are different values.
 */
export function resolveLimitKey(key: string, flow: { tenant: string; flowId: string; input?: unknown }): string {
  let v: string;
  if (key === 'tenant') v = flow.tenant;
  else if (key === 'flow') v = flow.flowId;
  else {
    let cur: unknown = flow.input;
    for (const k of key.split('.').slice(1)) {
      if (!cur || typeof cur !== 'object' || Array.isArray(cur) || !Object.prototype.hasOwnProperty.call(cur, k)) {
        cur = undefined;
        break;
      }
      cur = (cur as Record<string, unknown>)[k];
    }
    v = cur === undefined || cur === null ? MISSING_KEY_VALUE : typeof cur === 'string' ? cur : JSON.stringify(cur);
  }
  const out = `${key}=${v}`;
  return out.length <= MAX_KEY_VALUE ? out : `${key}=#${createHash('sha256').update(v).digest('hex')}`;
}

/** Whether resolving the key needs the flow's input (an `input.` path). */
export const keyNeedsInput = (key: string | undefined) => key !== undefined && key.startsWith('input.');
