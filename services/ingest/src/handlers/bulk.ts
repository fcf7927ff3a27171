import { z } from 'zod';
import { codeOf, invalid } from '@jetflow/errors';
import type { FlowStatus } from '@jetflow/flows';
import { FlowFilterSchema, MAX_LIST_LIMIT, filterOf, type FlowFilter, type FlowLister } from './flow-lister.js';
import { DeadLetterFilterSchema, cursorOf, deadLetterFilterOf, seqOfCursor, type DeadLetterHandlers } from './deadletters.js';
import type { FlowHandlers } from './flows.js';

/** Most flows cancelled (or dead letters redriven) by one real run; `next` continues. */
export const MAX_BULK = 1_000;
/** What one real run does when the body names no `limit`. */
export const DEFAULT_BULK = 100;
/** Most flows (dead letters) a dry run counts; past it the count is a lower bound (`complete: false`). */
export const MAX_DRY_RUN_COUNT = 10_000;
/** Most ids a dry run lists, and most failures a real run lists (the counts are whole). */
export const MAX_IDS = 100;
/** Listing pages (each at most ~1,000 entries examined) one call reads before it answers with `next`. */
const MAX_PAGES = 50;
/** Cancels (redrives) in flight at once within one call. */
const PARALLEL = 8;

const CANCELLABLE: readonly FlowStatus[] = ['scheduled', 'running'];

const common = {
  dryRun: z.boolean().optional().describe('Count and list what would be acted on, and change nothing'),
  all: z.boolean().optional().describe('Required (true) for a real run whose filter names no field: act on everything the key may reach'),
  limit: z.number().int().min(1).max(MAX_BULK).optional().describe(`Most acted on by one real run (default ${DEFAULT_BULK}, at most ${MAX_BULK}); follow \`next\``),
  cursor: z.string().max(1_024).optional().describe('`next` of the previous answer: continue below where it stopped'),
};

/** The body of POST /v1/flows:cancel (the OpenAPI document is generated from it). */
export const BulkCancelSchema = z.strictObject({
  filter: FlowFilterSchema.strict().optional().describe('As the query of GET /v1/flows; status only scheduled and/or running (default both)'),
  reason: z.string().max(500).optional().describe('Recorded in each flow'),
  ...common,
});

/** The body of POST /v1/deadletters:redrive. */
export const BulkRedriveSchema = z.strictObject({
  filter: DeadLetterFilterSchema.strict().optional().describe('As the query of GET /v1/deadletters'),
  ...common,
});

export interface BulkCancelAnswer {
  dryRun: boolean;
  /** Dry run: flows that match (up to MAX_DRY_RUN_COUNT). Real run: flows this call acted on. */
  matched: number;
  /** Dry run: the count covers every matching flow (no `next`). */
  complete?: boolean;
  flowIds?: string[];
  flowIdsTruncated?: boolean;
  cancelled?: number;
  /** Ended (or expired) between the listing and the cancel. */
  alreadyFinished?: number;
  failed?: number;
  failures?: Array<{ flowId: string; code: string; message: string }>;
  /** Pass as `cursor` to go on; null when the listing reached its end. */
  next: string | null;
}

export interface BulkRedriveAnswer {
  dryRun: boolean;
  matched: number;
  complete?: boolean;
  seqs?: number[];
  seqsTruncated?: boolean;
  redriven?: number;
  /** Redriven before (the target stream had its `redrive:<seq>` id, or it was gone meanwhile): not sent again. */
  alreadyRedriven?: number;
  failed?: number;
  failures?: Array<{ seq: number; code: string; message: string }>;
  next: string | null;
}

function parse<T extends z.ZodType>(schema: T, raw: unknown): z.output<T> {
  const r = schema.safeParse(raw ?? {});
  if (r.success) return r.data;
  throw invalid(
    r.error.issues.flatMap((i) => {
      // filter.status.0 -> filter.status: the field is what the caller can fix.
      const at = i.path
        .filter((p) => typeof p !== 'number')
        .map(String)
        .join('.');
      // An unknown field is named by itself, not by the object that holds it.
      if (i.code === 'unrecognized_keys') return i.keys.map((k) => ({ path: at ? `${at}.${k}` : k, message: 'unknown field' }));
      return [{ path: at || 'body', message: i.message }];
    }),
  );
}

/** Runs fn over items, PARALLEL at a time. */
async function each<T>(items: T[], fn: (x: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(PARALLEL, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

function refuseEverything(what: string): never {
  throw invalid([{ path: 'all', message: `the filter names no field, so this would act on ${what}: name a field of filter, or send "all": true` }]);
}

export interface BulkDeps {
  lister: FlowLister;
  flows: FlowHandlers;
  deadLetters: DeadLetterHandlers;
}

/**
 * Bulk actions by filter (README, "Bulk actions"). Each item goes through its one-item path (the flow's
 * cancel, the dead letter's `redrive:<seq>`), which is idempotent, so a call cut short (a crash, a
 * timeout, `next`) is completed by running it again: it finds only what still matches.
 */
export class BulkHandlers {
  constructor(private readonly d: BulkDeps) {}

  async cancelFlows(tenant: string, operator: boolean, raw: unknown): Promise<BulkCancelAnswer> {
    const b = parse(BulkCancelSchema, raw);
    const given = b.filter ?? parse(FlowFilterSchema, {});
    const f: FlowFilter = filterOf(tenant, operator, given, 'filter.');
    const other = f.status.find((s) => !CANCELLABLE.includes(s));
    if (other) throw invalid([{ path: 'filter.status', message: `only scheduled and running flows can be cancelled (${other} has ended)` }]);
    const narrowed = f.status.length > 0 || [f.flow, f.idempotencyKey, f.metadata, f.submittedAfter, f.submittedBefore].some((v) => v !== undefined);
    if (!b.dryRun && !narrowed && b.all !== true) refuseEverything(f.tenant === '*' ? "every tenant's running and scheduled flows" : 'every running and scheduled flow');
    const status = f.status.length ? f.status : [...CANCELLABLE];
    const want = b.dryRun ? MAX_DRY_RUN_COUNT : (b.limit ?? DEFAULT_BULK);
    const reason = b.reason ?? 'cancelled by a bulk cancel';
    const out: Required<BulkCancelAnswer> = {
      dryRun: !!b.dryRun,
      matched: 0,
      complete: false,
      flowIds: [],
      flowIdsTruncated: false,
      cancelled: 0,
      alreadyFinished: 0,
      failed: 0,
      failures: [],
      next: null,
    };
    let cursor = b.cursor;
    for (let pages = 0; ;) {
      const page = await this.d.lister.list({ ...f, status, limit: Math.min(MAX_LIST_LIMIT, want - out.matched), ...(cursor ? { cursor } : {}) });
      out.matched += page.flows.length;
      if (out.dryRun) {
        for (const fl of page.flows) if (out.flowIds.length < MAX_IDS) out.flowIds.push(fl.flowId);
      } else {
        await each(page.flows, async (fl) => {
          try {
            // The flow's own tenant: an operator's `*` reaches every tenant's through the same path.
            await this.d.flows.cancel(fl.tenant, fl.flowId, reason);
            out.cancelled++;
          } catch (err) {
            const code = codeOf(err);
            if (code === 'conflict' || code === 'not_found') out.alreadyFinished++;
            else {
              out.failed++;
              if (out.failures.length < MAX_IDS) out.failures.push({ flowId: fl.flowId, code, message: (err as Error).message });
            }
          }
        });
      }
      cursor = page.nextCursor ?? undefined;
      if (!cursor || out.matched >= want || ++pages >= MAX_PAGES) break;
    }
    out.next = cursor ?? null;
    if (out.dryRun) {
      out.flowIdsTruncated = out.matched > out.flowIds.length;
      out.complete = out.next === null;
      return { dryRun: true, matched: out.matched, complete: out.complete, flowIds: out.flowIds, flowIdsTruncated: out.flowIdsTruncated, next: out.next };
    }
    return {
      dryRun: false,
      matched: out.matched,
      cancelled: out.cancelled,
      alreadyFinished: out.alreadyFinished,
      failed: out.failed,
      failures: out.failures,
      next: out.next,
    };
  }

  async redriveDeadLetters(tenant: string, operator: boolean, raw: unknown): Promise<BulkRedriveAnswer> {
    const b = parse(BulkRedriveSchema, raw);
    const given = b.filter ?? {};
    const f = deadLetterFilterOf(tenant, operator, given, 'filter.');
    const narrowed = [f.source, f.code, f.subject, f.flowId, f.after, f.before].some((v) => v !== undefined);
    if (!b.dryRun && !narrowed && b.all !== true) refuseEverything(f.tenant === '*' ? "every tenant's dead letters" : 'every dead letter');
    const want = b.dryRun ? MAX_DRY_RUN_COUNT : (b.limit ?? DEFAULT_BULK);
    const out: Required<BulkRedriveAnswer> = {
      dryRun: !!b.dryRun,
      matched: 0,
      complete: false,
      seqs: [],
      seqsTruncated: false,
      redriven: 0,
      alreadyRedriven: 0,
      failed: 0,
      failures: [],
      next: null,
    };
    let below = b.cursor ? seqOfCursor(b.cursor) : undefined;
    let exhausted = false;
    for (let scans = 0; ;) {
      const found: number[] = [];
      const r = await this.d.deadLetters.scanMatching(f, below, 1_000, (dl) => {
        found.push(dl.seq);
        return out.matched + found.length < want;
      });
      out.matched += found.length;
      if (out.dryRun) {
        for (const s of found) if (out.seqs.length < MAX_IDS) out.seqs.push(s);
      } else {
        await each(found, async (seq) => {
          try {
            const res = await this.d.deadLetters.redriveFound(seq);
            if (!res || res.duplicate) out.alreadyRedriven++;
            else out.redriven++;
          } catch (err) {
            out.failed++;
            if (out.failures.length < MAX_IDS) out.failures.push({ seq, code: codeOf(err), message: (err as Error).message });
          }
        });
      }
      below = r.below;
      exhausted = r.exhausted;
      if (exhausted || out.matched >= want || ++scans >= MAX_PAGES) break;
    }
    out.next = exhausted || below === undefined ? null : cursorOf(below);
    if (out.dryRun) {
      out.seqsTruncated = out.matched > out.seqs.length;
      out.complete = out.next === null;
      return { dryRun: true, matched: out.matched, complete: out.complete, seqs: out.seqs, seqsTruncated: out.seqsTruncated, next: out.next };
    }
    return {
      dryRun: false,
      matched: out.matched,
      redriven: out.redriven,
      alreadyRedriven: out.alreadyRedriven,
      failed: out.failed,
      failures: out.failures,
      next: out.next,
    };
  }
}
