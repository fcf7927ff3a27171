import { Events, connect as natsConnect, credsAuthenticator, type ConnectionOptions, type NatsConnection } from 'nats';
import type { NatsAuth } from '@jetflow/config';
import type { Logger } from '@jetflow/logging';
import { encodeUtf8, installFastUtf8 } from './utf8.js';

/**
 * Connects with reconnect-forever semantics: a broker restart must never take a service down. `auth`
 * (from the service's config, the standard NATS_* variables) gives the identity and its inbox prefix;
 * refused credentials fail the first connect with the server's "Authorization Violation".
 */
export async function connectNats(opts: { servers: string[]; name: string; log?: Logger; waitOnFirstConnect?: boolean; auth?: NatsAuth }): Promise<NatsConnection> {
  installFastUtf8();
  const nc = await natsConnect({
    servers: opts.servers,
    name: opts.name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    reconnectJitter: 100,
    pingInterval: 10_000,
    waitOnFirstConnect: opts.waitOnFirstConnect ?? true,
    timeout: 5_000,
    ...authOptions(opts.auth),
  });
  coalesceWrites(nc);
  if (opts.log) {
    const log = opts.log;
    void (async () => {
      for await (const s of nc.status()) {
        // A refused publish or subscribe names its subject: a role missing a permission shows here.
        const ctx = (s as { permissionContext?: { operation: string; subject: string } }).permissionContext;
        if (ctx) log.error({ nats: s.type, data: s.data, operation: ctx.operation, subject: ctx.subject }, 'NATS refused an operation: permissions violation');
        else if (s.type === Events.Disconnect || s.type === Events.Reconnect || s.type === Events.Error) log.warn({ nats: s.type, data: s.data }, 'nats connection status');
      }
    })();
  }
  return nc;
}

/** nats.js connection options for an identity: its inbox prefix and one kind of credentials. */
export function authOptions(auth: NatsAuth | undefined): Partial<ConnectionOptions> {
  if (!auth) return {};
  const c = auth.credentials;
  const creds: Partial<ConnectionOptions> = !c
    ? {}
    : c.kind === 'user'
      ? { user: c.user, pass: c.password }
      : c.kind === 'token'
        ? { token: c.token }
        : { authenticator: credsAuthenticator(c.contents) };
  return { inboxPrefix: auth.inboxPrefix, ...creds };
}

/**
 * nats.js flushes its outbound buffer in a microtask after the first command of a burst. Under load a
 * service's async handlers interleave with those microtasks, so nearly every publish, ack and pull request
 * became its own socket write (~10 % of the orchestrator's CPU in `writeBuffer` alone, and as many reads on
 * the server). Deferring the flush to `setImmediate` sends everything one event-loop turn produced in one
 * write, a fraction of a millisecond later. The size-triggered inline flush of nats.js stays as it is.
 * Set JETFLOW_NATS_FLUSH=microtask to keep the library's own behaviour.
 */
export function coalesceWrites(nc: NatsConnection): void {
  if (process.env.JETFLOW_NATS_FLUSH === 'microtask') return;
  const proto = (nc as unknown as { protocol?: ProtocolInternals }).protocol;
  if (!proto || typeof proto.sendCommand !== 'function' || typeof proto.flushPending !== 'function' || !proto.outbound) return;
  let scheduled = false;
  const flush = () => {
    scheduled = false;
    proto.flushPending();
  };
  proto.sendCommand = function sendCommand(cmd: string | Uint8Array, ...payloads: Uint8Array[]) {
    proto.outbound.fill(typeof cmd === 'string' ? encodeUtf8(cmd) : cmd, ...payloads);
    if (proto.outbound.size() >= proto.pendingLimit) proto.flushPending();
    else if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
  };
}

interface ProtocolInternals {
  outbound: { fill(buf: Uint8Array, ...payloads: Uint8Array[]): void; size(): number };
  pendingLimit: number;
  flushPending(): void;
  sendCommand(cmd: string | Uint8Array, ...payloads: Uint8Array[]): void;
}
