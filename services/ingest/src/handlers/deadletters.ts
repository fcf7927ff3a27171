import { z } from 'zod';
import { JetflowError, ErrorCodes, invalid } from '@jetflow/errors';
import { FLOW_ID_RE, ID_RULES, subjectMatches, type FlowState } from '@jetflow/flows';

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

const time = (what: string) =>
  z
    .string()
    .max(64)
    .refine((v) => !Number.isNaN(Date.parse(v)) && /^\d{4}-\d\d-\d\dT/.test(v), 'expected an RFC 3339 time, e.g. 2026-03-01T12:00:00Z')
    .optional()
    .describe(what);

/**
 * What selects dead letters: the listing's query string (GET /v1/deadletters) and the filter of a bulk
 * redrive (POST /v1/deadletters:redrive) are parsed by this one schema.
 */
export const DeadLetterFilterSchema = z.object({
  source: z
    .string()
    .regex(/^[a-z][a-z0-9_-]{0,31}$/, 'a dead-letter source such as task, ingest, callback or result')
    .optional()
    .describe('Only from this source: task, ingest, callback or result'),
  code: z
    .string()
    .regex(/^[a-z][a-z0-9_]{0,63}$/, 'a dead-letter code such as callback_failed or max_attempts (lowercase letters, digits and _)')
    .optional()
    .describe('Only with this code (Jetflow-Dlq-Code), e.g. callback_failed'),
  subject: z
    .string()
    .max(256)
    .regex(/^jetflow(\.([a-z0-9_-]+|\*))*(\.>)?$/, 'a subject or pattern under jetflow (* one token, > the rest), e.g. jetflow.task.analyst.>')
    .optional()
    .describe('Only whose original subject matches this subject or pattern (* one token, > the rest), e.g. jetflow.task.analyst.>'),
  flowId: z.string().regex(FLOW_ID_RE, 'a flow id').optional().describe('Only of this flow'),
  after: time('Only dead-lettered at or after this time (RFC 3339)'),
  before: time('Only dead-lettered before this time (RFC 3339)'),
  tenant: z
    .string()
    .max(64)
    .refine((t) => t === '*' || ID_RULES.tenant.re.test(t), 'a tenant name, or * for every tenant')
    .optional()
    .describe("Another tenant's dead letters (operator keys only), or * for every tenant's"),
});

/** The query string of GET /v1/deadletters: validates requests, and the OpenAPI document is generated from it. */
export const DeadLetterQuerySchema = DeadLetterFilterSchema.extend({
  limit: z.coerce.number().int().min(1).max(200).default(50).describe('Most dead letters on a page'),
  cursor: z.string().max(100).optional().describe('nextCursor of the previous page'),
});

/** A filter, parsed: whose dead letters (`*`: everyone's) and what they must match. */
export interface DeadLetterFilter {
  tenant: string;
  source?: string;
  code?: string;
  subject?: string;
  flowId?: string;
  after?: number;
  before?: number;
}

/** The parsed fields of a filter for the key's tenant; a tenant key naming another tenant is refused (403). */
export function deadLetterFilterOf(tenant: string, operator: boolean, d: z.output<typeof DeadLetterFilterSchema>, at = ''): DeadLetterFilter {
  const f: DeadLetterFilter = { tenant };
  if (d.tenant !== undefined && d.tenant !== tenant) {
    if (!operator)
      throw new JetflowError(ErrorCodes.PERMISSION_DENIED, `${at}tenant: another tenant's dead letters need an operator API key; this key belongs to tenant "${tenant}"`, {
        details: [{ path: `${at}tenant`, message: 'needs an operator key' }],
      });
    f.tenant = d.tenant;
  }
  if (d.source !== undefined) f.source = d.source;
  if (d.code !== undefined) f.code = d.code;
  if (d.subject !== undefined) f.subject = d.subject;
  if (d.flowId !== undefined) f.flowId = d.flowId;
  if (d.after !== undefined) f.after = Date.parse(d.after);
  if (d.before !== undefined) f.before = Date.parse(d.before);
  return f;
}

/** Whether a dead letter matches a filter's fields (its tenant is checked apart: it may need a read). */
export function deadLetterMatches(dl: DeadLetterRecord, f: DeadLetterFilter): boolean {
  if (f.source !== undefined && dl.source !== f.source) return false;
  if (f.code !== undefined && dl.code !== f.code) return false;
  if (f.subject !== undefined && !subjectMatches(f.subject, dl.originalSubject)) return false;
  if (f.flowId !== undefined && dl.flowId !== f.flowId) return false;
  const at = Date.parse(dl.time);
  if (f.after !== undefined && !(at >= f.after)) return false;
  if (f.before !== undefined && !(at < f.before)) return false;
  return true;
}

export const cursorOf = (seq: number) => Buffer.from(`dlq:${seq}`).toString('base64url');
export function seqOfCursor(c: string): number {
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

  async list(tenant: string, rawQuery: unknown, operator = false) {
    const r = DeadLetterQuerySchema.safeParse(rawQuery ?? {});
    if (!r.success) throw invalid(r.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message })));
    const q = r.data;
    const filter = deadLetterFilterOf(tenant, operator, q);
    const out: Array<ReturnType<typeof summaryOf>> = [];
    const scan = await this.scanMatching(filter, q.cursor ? seqOfCursor(q.cursor) : undefined, this.d.scanBudget ?? 1_000, (dl) => {
      out.push(summaryOf(dl));
      return out.length < q.limit;
    });
    return { deadLetters: out, nextCursor: scan.exhausted ? null : cursorOf(scan.below) };
  }

  /**
   * Visits the dead letters a filter selects (visible to its tenant, matching its fields), newest first,
   * below `below`, examining at most `budget`; the visitor returns false to stop. The answer says where
   * to continue.
   */
  async scanMatching(f: DeadLetterFilter, below: number | undefined, budget: number, visit: (d: DeadLetterRecord) => boolean | Promise<boolean>) {
    const owners = new Map<string, string | null>();
    return this.d.store.scan({ budget, ...(f.source ? { source: f.source } : {}), ...(below ? { below } : {}) }, async (dl) => {
      if (!deadLetterMatches(dl, f) || !(await this.visible(dl, f.tenant, owners))) return true;
      return visit(dl);
    });
  }

  /** Redrives one dead letter found by a scan (its tenant already checked); null when it is gone meanwhile. */
  async redriveFound(seq: number): Promise<RedriveResult | null> {
    const dl = await this.d.store.get(seq);
    if (!dl) return null;
    const msgId = `redrive:${seq}`;
    return { seq, msgId, ...(await this.d.store.redrive(dl, msgId)) };
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
    // `*`: an operator acting on every tenant's.
    if (tenant === '*') return true;
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
