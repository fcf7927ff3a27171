import { createServer, type Server } from 'node:http';
import { performance } from 'node:perf_hooks';

export interface Arrival {
  /** performance.now() when the request body was complete. */
  at: number;
  deliveryId: string;
  status: string;
}

/**
 * A lean callback receiver for the benchmark: answers 200 at once and records, per flow id, when
 * each delivery arrived and its Jetflow-Delivery-Id. The flow id and status are pulled out of the
 * body with a cheap scan (the report starts with "flowId"), not a full JSON parse, so the driver
 * spends as little CPU as it can per callback.
 */
export class BenchReceiver {
  readonly byFlow = new Map<string, Arrival[]>();
  total = 0;
  unparsable = 0;
  onArrival: ((flowId: string, a: Arrival) => void) | undefined;
  private server: Server | undefined;
  url = '';

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const at = performance.now();
        res.writeHead(200, { 'content-length': '2' }).end('ok');
        const raw = Buffer.concat(chunks).toString('utf8');
        const flowId = field(raw, 'flowId');
        if (!flowId) {
          this.unparsable++;
          return;
        }
        const a: Arrival = { at, deliveryId: String(req.headers['jetflow-delivery-id'] ?? ''), status: field(raw, 'status') ?? '' };
        this.total++;
        let list = this.byFlow.get(flowId);
        if (!list) this.byFlow.set(flowId, (list = []));
        list.push(a);
        this.onArrival?.(flowId, a);
      });
    });
    this.server.keepAliveTimeout = 60_000;
    this.server.headersTimeout = 65_000;
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', () => r()));
    const addr = this.server.address();
    this.url = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}/hook`;
    return this;
  }

  async close(): Promise<void> {
    const s = this.server;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }
}

/** The string value of the first top-level-looking "name":"value" in a JSON text. */
function field(raw: string, name: string): string | undefined {
  const key = `"${name}":"`;
  const i = raw.indexOf(key);
  if (i < 0) return undefined;
  const j = raw.indexOf('"', i + key.length);
  return j < 0 ? undefined : raw.slice(i + key.length, j);
}
