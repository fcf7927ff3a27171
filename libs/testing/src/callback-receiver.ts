import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';

export interface Delivery {
  headers: IncomingHttpHeaders;
  raw: string;
  body: Record<string, unknown> & { flowId: string; status: string };
  at: number;
  signatureValid: boolean | undefined;
}

/** A real HTTP callback receiver on loopback, recording every delivery it gets. */
export interface CallbackReceiver {
  url: string;
  deliveries: Delivery[];
  /** Deliveries answered 2xx (what the next system would have accepted). */
  accepted: Delivery[];
  /** Respond with this status (e.g. 503 to simulate the receiver being down); undefined = 200. */
  failWith: number | undefined;
  /** Delay each response (ms), e.g. to provoke callback timeouts. */
  delayMs: number;
  byFlow(flowId: string): Delivery[];
  waitFor(pred: (r: CallbackReceiver) => boolean, timeoutMs?: number, what?: string): Promise<void>;
  waitForFlows(flowIds: string[], timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

export function verifySignature(secret: string, header: string | undefined, raw: string): boolean {
  const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header ?? '');
  if (!m) return false;
  const want = createHmac('sha256', secret).update(`${m[1]}.${raw}`).digest();
  return timingSafeEqual(want, Buffer.from(m[2]!, 'hex'));
}

export async function startCallbackReceiver(opts: { secret?: string; port?: number } = {}): Promise<CallbackReceiver> {
  let server: Server;
  const r: CallbackReceiver = {
    url: '',
    deliveries: [],
    accepted: [],
    failWith: undefined,
    delayMs: 0,
    byFlow: (id) => r.accepted.filter((d) => d.body.flowId === id),
    async waitFor(pred, timeoutMs = 30_000, what = 'condition') {
      const until = Date.now() + timeoutMs;
      while (!pred(r)) {
        if (Date.now() > until) throw new Error(`callback receiver: timed out waiting for ${what} (${r.accepted.length} accepted, ${r.deliveries.length} received)`);
        await sleep(20);
      }
    },
    async waitForFlows(ids, timeoutMs = 30_000) {
      await r.waitFor((x) => ids.every((id) => x.byFlow(id).length > 0), timeoutMs, `callbacks of ${ids.length} flows`);
    },
    close: () => new Promise((res) => server.close(() => res())),
  };
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    const onEnd = async () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      let body: Delivery['body'];
      try {
        body = JSON.parse(raw) as Delivery['body'];
      } catch {
        res.statusCode = 400;
        res.end();
        return;
      }
      const d: Delivery = {
        headers: req.headers,
        raw,
        body,
        at: Date.now(),
        signatureValid: opts.secret ? verifySignature(opts.secret, req.headers['jetflow-signature'] as string | undefined, raw) : undefined,
      };
      r.deliveries.push(d);
      if (r.delayMs) await sleep(r.delayMs);
      if (r.failWith) {
        res.statusCode = r.failWith;
        res.end('down');
        return;
      }
      r.accepted.push(d);
      res.statusCode = 200;
      res.end('ok');
    };
    // A throw in the handler answers 500 instead of being an unhandled rejection that ends the test run.
    req.on('end', () => void onEnd().catch((err: Error) => (res.headersSent ? res.destroy() : res.writeHead(500).end(err.message))));
  });
  await new Promise<void>((res) => server.listen(opts.port ?? 0, '127.0.0.1', () => res()));
  const addr = server.address();
  r.url = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}/hook`;
  return r;
}
