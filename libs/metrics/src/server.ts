import { createServer } from 'node:http';
import { register as globalRegistry, type Registry } from 'prom-client';

export interface MetricsServer {
  port: number;
  /** True when the configured port was taken and a free one was bound instead. */
  movedFrom: number | undefined;
  close(): Promise<void>;
}

/**
 * A tiny HTTP server for services without one: GET /metrics in Prometheus text format. Port 0 picks a
 * free port; so does a configured port already taken (two replicas on one laptop), rather than the
 * service failing over its metrics endpoint — the bound port is in the start log either way.
 */
export async function startMetricsServer(o: { port: number; host?: string; registry?: Registry }): Promise<MetricsServer> {
  const registry = o.registry ?? globalRegistry;
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' || (path !== '/metrics' && path !== '/healthz')) {
      res.writeHead(404).end();
      return;
    }
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
      return;
    }
    registry.metrics().then(
      (body) => res.writeHead(200, { 'content-type': registry.contentType }).end(body),
      (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`# metrics collection failed: ${err.message}\n`),
    );
  });
  server.keepAliveTimeout = 65_000;
  const listen = (port: number) =>
    new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      server.once('error', onError);
      server.listen(port, o.host ?? '0.0.0.0', () => {
        server.off('error', onError);
        resolve();
      });
    });
  let movedFrom: number | undefined;
  try {
    await listen(o.port);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || o.port === 0) throw err;
    movedFrom = o.port;
    await listen(0);
  }
  const addr = server.address();
  return {
    port: typeof addr === 'object' && addr ? addr.port : o.port,
    movedFrom,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}
