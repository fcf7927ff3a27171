import { z } from 'zod';
import { JetflowError, ErrorCodes, invalid } from '../../../../libs/errors/src/index.js';
import type { FlowState } from '../../../../libs/flows/src/index.js';

/** One dead letter as read from the dead-letter stream (parsed by the adapter). */
export interface DeadLetterRecord {
  seq: number;
  /** jetflow.dlq.<source>.<original subject> */
  subject: string;
  source: string;
  originalSubject: string;
  originalStream: string | null;
  originalSeq: number | null;
  code: string;
  reason: string;
  attempts: number | null;
  flowId: string | null;
  /** When it was dead-lettered (ISO). */
  time: string;
  size: number;
  /** The tenant named by the original subject (ingest and callback subjects carry it). */
  subjectTenant: string | null;
  /** The tenant written in the body, when the adapter could decode it (tasks, callback jobs). */
  bodyTenant: string | null;
}

export interface DeadLetterDetail extends DeadLetterRecord {
  headers: Record<string, string[]>;
  body: Uint8Array;
}

export interface RedriveResult {
  seq: number;
  subject: string;
  msgId: string;
  stream: string;
  streamSeq: number;
  duplicate: boolean;
}

/** What the dead-letter handlers need from the broker (adapters/dlq-store.ts). */
export interface DeadLetterStore {
  /** Visits dead letters newest first; the visitor returns false to stop. */
  scan(o: { source?: string; below?: number; budget: number }, visit: (d: DeadLetterRecord) => boolean | Promise<boolean>): Promise<{ exhausted: boolean; below: number }>;
  get(seq: number): Promise<DeadLetterDetail | null>;
  /** Republishes the original body and headers to the original subject with `msgId`, then deletes the dead letter. */
  redrive(d: DeadLetterDetail, msgId: string): Promise<Omit<RedriveResult, 'seq' | 'msgId'>>;
}

export interface DeadLetterDeps {
  store: DeadLetterStore;
  getState(flowId: string): Promise<FlowState | null>;
  /** Tenants that also see dead letters no tenant can be found for (poison without a flow). */
  operatorTenants: ReadonlySet<string>;
  scanBudget?: number;
}

/** The query string of GET /v1/deadletters: validates requests, and the OpenAPI document is generated from it. */
export const DeadLetterQuerySchema = z.object({
  limit: z.coerce.number().int().min(1).max(200).default(50).describe('Most dead letters on a page'),
  source: z
    .string()
    .regex(/^[a-z][a-z0-9_-]{0,31}$/, 'a dead-letter source such as task, ingest, callback or result')
    .optional()
    .describe('Only from this source: task, ingest, callback or result'),
  cursor: z.string().max(100).optional().describe('nextCursor of the previous page'),
});

const cursorOf = (seq: number) => Buffer.from(`dlq:${seq}`).toString('base64url');
function seqOfCursor(c: string): number {
  const m = /^dlq:(\d{1,15})$/.exec(Buffer.from(c, 'base64url').toString('utf8'));
  if (!m) throw invalid([{ path: 'cursor', message: 'not a cursor returned by this listing' }]);
  return Number(m[1]);
}

export function parseSeq(raw: string): number {
  if (!/^\d{1,15}$/.test(raw) || Number(raw) < 1) throw invalid([{ path: 'seq', message: 'a dead-letter sequence number (a positive integer)' }]);
  return Number(raw);
}

export const summaryOf = (d: DeadLetterRecord) => ({
  seq: d.seq,
  subject: d.subject,
  source: d.source,
  originalSubject: d.originalSubject,
  code: d.code,
  reason: d.reason,
  attempts: d.attempts,
  flowId: d.flowId,
  time: d.time,
  size: d.size,
});

/**
 * Dead letters, scoped to the tenant that owns them: the tenant in the original subject, else the
 * tenant of the flow they belong to, else the tenant in the body. Another tenant's dead letter is
 * "not found", exactly like an unknown one.
 */
export class DeadLetterHandlers {
  constructor(private readonly d: DeadLetterDeps) {}

  async list(tenant: string, rawQuery: unknown) {
    const r = DeadLetterQuerySchema.safeParse(rawQuery ?? {});
    if (!r.success) throw invalid(r.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message })));
    const q = r.data;
    const owners = new Map<string, string | null>();
    const out: Array<ReturnType<typeof summaryOf>> = [];
    const scan = await this.d.store.scan(
      { budget: this.d.scanBudget ?? 1_000, ...(q.source ? { source: q.source } : {}), ...(q.cursor ? { below: seqOfCursor(q.cursor) } : {}) },
      async (dl) => {
        if (await this.visible(dl, tenant, owners)) out.push(summaryOf(dl));
        return out.length < q.limit;
      },
    );
    return { deadLetters: out, nextCursor: scan.exhausted ? null : cursorOf(scan.below) };
  }

  async get(tenant: string, rawSeq: string) {
    const seq = parseSeq(rawSeq);
    const dl = await this.d.store.get(seq);
    if (!dl || !(await this.visible(dl, tenant, new Map()))) throw new JetflowError(ErrorCodes.NOT_FOUND, `dead letter ${seq} not found`);
    return { ...summaryOf(dl), originalStream: dl.originalStream, originalSeq: dl.originalSeq, headers: dl.headers, body: bodyView(dl.body) };
  }

  async redrive(tenant: string, rawSeq: string): Promise<RedriveResult> {
    const seq = parseSeq(rawSeq);
    const dl = await this.d.store.get(seq);
    if (!dl || !(await this.visible(dl, tenant, new Map()))) throw new JetflowError(ErrorCodes.NOT_FOUND, `dead letter ${seq} not found`);
    // The same id on every attempt: a retried redrive collapses into one message downstream.
    const msgId = `redrive:${seq}`;
    const r = await this.d.store.redrive(dl, msgId);
    return { seq, msgId, ...r };
  }

  private async visible(dl: DeadLetterRecord, tenant: string, owners: Map<string, string | null>): Promise<boolean> {
    let owner = dl.subjectTenant;
    if (!owner && dl.flowId) {
      if (!owners.has(dl.flowId)) owners.set(dl.flowId, (await this.d.getState(dl.flowId))?.tenant ?? null);
      owner = owners.get(dl.flowId) ?? null;
    }
    owner ??= dl.bodyTenant;
    return owner === tenant || (owner === null && this.d.operatorTenants.has(tenant));
  }
}

/** The body as JSON when it is JSON, as text when it is text, else base64. */
function bodyView(b: Uint8Array): { encoding: 'json' | 'text' | 'base64'; value: unknown } {
  const text = new TextDecoder('utf-8', { fatal: false }).decode(b);
  // eslint-disable-next-line no-control-regex -- control characters are what this looks for
  const printable = !/[\u0000-\u0008\u000e-\u001f\ufffd]/.test(text);
  if (printable) {
    try {
      return { encoding: 'json', value: JSON.parse(text) as unknown };
    } catch {
      return { encoding: 'text', value: text };
    }
  }
  return { encoding: 'base64', value: Buffer.from(b).toString('base64') };
}
