import type { NatsConnection } from 'nats';
import { invalid } from '@jetflow/errors';
import { BUCKETS } from '@jetflow/messaging';
import type { FlowState } from '@jetflow/flows';
import { matchesSearch, summarize, type FlowLister, type FlowPage, type FlowSummary, type ListFlowsQuery } from '../handlers/flow-lister.js';
import { scanNewestFirst } from './stream-scan.js';

const dec = new TextDecoder();

/**
 * Lists flows from the flows KV bucket, most recently changed first. The bucket keeps one
 * revision per key, so its stream holds each flow once, at the sequence of its last change:
 * reading the stream backwards is reading flows by recency. Bounded by `scanBudget` entries per
 * page (the bucket is shared by all tenants): a page can be short, and `nextCursor` continues it.
 * A flow that changes between two pages moves to the top and may be seen again or missed.
 */
export class KvFlowLister implements FlowLister {
  private readonly stream = `KV_${BUCKETS.flows}`;
  private readonly prefix = `$KV.${BUCKETS.flows}.`;

  constructor(
    private readonly nc: NatsConnection,
    private readonly scanBudget = 1_000,
  ) {}

  async list(q: ListFlowsQuery): Promise<FlowPage> {
    const below = q.cursor === undefined ? undefined : decodeCursor(q.cursor);
    const flows: FlowSummary[] = [];
    const want = new Set(q.status);
    // Flow ids have no dots: "<bucket>.*" leaves the <flowId>.callback records to the server to skip.
    const scan = { stream: this.stream, filterSubject: `${this.prefix}*`, budget: this.scanBudget, window: Math.max(64, q.limit * 2), ...(below ? { below } : {}) };
    const r = await scanNewestFirst(this.nc, scan, (m) => {
      const key = m.subject.slice(this.prefix.length);
      // Deletes (and any dotted key) are not flows.
      if (key.includes('.') || !m.data.length) return true;
      const op = m.headers?.get('KV-Operation');
      if (op === 'DEL' || op === 'PURGE') return true;
      let s: FlowState;
      try {
        s = JSON.parse(dec.decode(m.data)) as FlowState;
      } catch {
        return true;
      }
      if ((q.tenant !== '*' && s.tenant !== q.tenant) || (want.size && !want.has(s.status)) || !matchesSearch(s, q)) return true;
      flows.push(summarize(s, m.info.timestampNanos / 1e6));
      return flows.length < q.limit;
    });
    return { flows, nextCursor: r.exhausted ? null : encodeCursor(r.below) };
  }
}

export const encodeCursor = (seq: number) => Buffer.from(`kv:${seq}`).toString('base64url');

export function decodeCursor(c: string): number {
  const m = /^kv:(\d{1,15})$/.exec(Buffer.from(c, 'base64url').toString('utf8'));
  if (!m) throw invalid([{ path: 'cursor', message: 'not a cursor returned by this listing' }]);
  return Number(m[1]);
}
