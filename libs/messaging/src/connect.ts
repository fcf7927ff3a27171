import { connect as natsConnect, type NatsConnection } from 'nats';
import type { Logger } from '../../logging/src/index.js';

/** Connects with reconnect-forever semantics: a broker restart must never take a service down. */
export async function connectNats(opts: { servers: string[]; name: string; log?: Logger; waitOnFirstConnect?: boolean }): Promise<NatsConnection> {
  const nc = await natsConnect({
    servers: opts.servers,
    name: opts.name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    reconnectJitter: 100,
    pingInterval: 10_000,
    waitOnFirstConnect: opts.waitOnFirstConnect ?? true,
    timeout: 5_000,
  });
  if (opts.log) {
    const log = opts.log;
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === 'disconnect' || s.type === 'reconnect' || s.type === 'error') log.warn({ nats: s.type, data: String(s.data) }, 'nats connection status');
      }
    })();
  }
  return nc;
}
