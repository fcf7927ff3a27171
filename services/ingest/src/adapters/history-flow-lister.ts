import { invalid } from '@jetflow/errors';
import type { FlowRegistry } from '@jetflow/flows';
import { isStorageError, type FinalFlowStatus, type FlowRecords, type FlowSummary as HistorySummary } from '@jetflow/storage';
import { summaryFromHistory } from '../handlers/flow-history.js';
import { matchesSearch, type FlowLister, type FlowPage, type FlowSummary, type ListFlowsQuery } from '../handlers/flow-lister.js';

const FINAL: ReadonlySet<string> = new Set<FinalFlowStatus>(['succeeded', 'partial', 'failed', 'cancelled']);
/** DynamoDB pages read for one listing page when several statuses are filtered client-side. */
const MAX_QUERIES = 5;

/**
 * GET /v1/flows with the DynamoDB history:
 * - a filter of final statuses only (`?status=failed`, `?status=succeeded,partial`) reads the history:
 *   every finished flow of the tenant, also after its KV state expired, newest start first;
 * - no filter, or one that includes `running`, reads the flows KV bucket as before (flows changed in
 *   the state's retention, 24 h, running and finished, newest change first): running flows exist only
 *   there, and the history has a flow only once it has ended.
 * Cursors belong to the listing that made them; one from the other listing is a 400.
 */
export class HistoryFlowLister implements FlowLister {
  constructor(
    private readonly kv: FlowLister,
    private readonly records: Pick<FlowRecords, 'list' | 'get'>,
    private readonly registry: FlowRegistry,
  ) {}

  async list(q: ListFlowsQuery): Promise<FlowPage> {
    // Every tenant's (an operator's `*`): the history is read by tenant, the KV bucket holds them all.
    if (q.status.length === 0 || !q.status.every((s) => FINAL.has(s)) || q.tenant === '*') return this.kv.list(q);
    const statuses = [...new Set(q.status)] as FinalFlowStatus[];
    const one = statuses.length === 1 ? statuses[0] : undefined;
    const flows: FlowSummary[] = [];
    let cursor = q.cursor;
    try {
      // One status: its index answers exactly. Several: the tenant's index, filtered here, a bounded
      // number of pages per call (a short page with a cursor is allowed).
      for (let i = 0; i < MAX_QUERIES && flows.length < q.limit; i++) {
        const page = await this.records.list({ tenant: q.tenant, limit: q.limit - flows.length, ...(one ? { status: one } : {}), ...(cursor ? { cursor } : {}) });
        const wanted = page.items.filter((h) => statuses.includes(h.status as FinalFlowStatus) && matchesSearch({ ...h, submittedAt: h.startedAt }, q));
        flows.push(...(await Promise.all(wanted.map((h) => this.summary(h)))));
        cursor = page.cursor;
        if (!cursor) break;
      }
    } catch (err) {
      if (isStorageError(err, 'invalid_cursor')) throw invalid([{ path: 'cursor', message: 'not a cursor returned by this listing' }]);
      throw err;
    }
    return { flows, nextCursor: cursor ?? null };
  }

  // Task counts of a flow that did not succeed need its record; a succeeded one's follow from its definition.
  private async summary(h: HistorySummary): Promise<FlowSummary> {
    const def = this.registry.get(h.flow);
    if (h.status === 'succeeded') return summaryFromHistory(h, def);
    const record = await this.records.get(h.flowId, { resolve: false }).catch(() => undefined);
    return summaryFromHistory(h, def, record);
  }
}
