import { createServer, type Server } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';

type AnyValue = { stringValue?: string; intValue?: string | number; boolValue?: boolean; doubleValue?: number; arrayValue?: { values?: AnyValue[] } };
type KeyValue = { key: string; value?: AnyValue };

/** One span as an OTLP collector received it. */
export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  /** '' for a root span. */
  parentSpanId: string;
  name: string;
  /** OTLP SpanKind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  kind: number;
  /** service.name of the resource that sent it. */
  service: string;
  attributes: Record<string, unknown>;
  status: { code?: number; message?: string };
  events: string[];
}

export const SPAN_KIND = { internal: 1, server: 2, client: 3, producer: 4, consumer: 5 } as const;

export interface OtlpReceiver {
  /** The base URL to put in OTEL_EXPORTER_OTLP_ENDPOINT. */
  url: string;
  spans: ReceivedSpan[];
  /** Export requests that were not OTLP/JSON (set OTEL_EXPORTER_OTLP_PROTOCOL=http/json). */
  rejected: number;
  trace(traceId: string): ReceivedSpan[];
  waitFor<T>(find: (r: OtlpReceiver) => T | undefined | false, timeoutMs?: number, what?: string): Promise<T>;
  close(): Promise<void>;
}

function value(v: AnyValue | undefined): unknown {
  if (!v) return undefined;
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.intValue !== undefined) return Number(v.intValue);
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.doubleValue !== undefined) return v.doubleValue;
  if (v.arrayValue) return (v.arrayValue.values ?? []).map(value);
  return undefined;
}

const attrs = (kvs: KeyValue[] | undefined) => Object.fromEntries((kvs ?? []).map((kv) => [kv.key, value(kv.value)]));

/**
 * A real OTLP/HTTP trace receiver on loopback (POST /v1/traces, JSON encoding): what Jaeger's OTLP
 * port would get, kept in memory for assertions.
 */
export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  let server: Server;
  const r: OtlpReceiver = {
    url: '',
    spans: [],
    rejected: 0,
    trace: (id) => r.spans.filter((s) => s.traceId === id),
    async waitFor(find, timeoutMs = 30_000, what = 'spans') {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const got = find(r);
        if (got) return got;
        if (Date.now() > until) throw new Error(`OTLP receiver: timed out waiting for ${what} (${r.spans.length} spans received)`);
        await sleep(50);
      }
    },
    close: () => new Promise((res) => server.close(() => res())),
  };
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method !== 'POST' || req.url !== '/v1/traces' || !String(req.headers['content-type']).startsWith('application/json')) {
        r.rejected++;
        res.writeHead(415).end();
        return;
      }
      try {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
          resourceSpans?: Array<{
            resource?: { attributes?: KeyValue[] };
            scopeSpans?: Array<{
              spans?: Array<{
                traceId: string;
                spanId: string;
                parentSpanId?: string;
                name: string;
                kind: number;
                attributes?: KeyValue[];
                status?: { code?: number; message?: string };
                events?: Array<{ name: string }>;
              }>;
            }>;
          }>;
        };
        for (const rs of body.resourceSpans ?? []) {
          const name = attrs(rs.resource?.attributes)['service.name'];
          const service = typeof name === 'string' ? name : '';
          for (const ss of rs.scopeSpans ?? []) {
            for (const s of ss.spans ?? []) {
              r.spans.push({
                traceId: s.traceId,
                spanId: s.spanId,
                parentSpanId: s.parentSpanId ?? '',
                name: s.name,
                kind: s.kind,
                service,
                attributes: attrs(s.attributes),
                status: s.status ?? {},
                events: (s.events ?? []).map((e) => e.name),
              });
            }
          }
        }
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      } catch {
        r.rejected++;
        res.writeHead(400).end();
      }
    });
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', () => res()));
  const addr = server.address();
  r.url = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
  return r;
}
