import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from '@jetflow/logging';
import type { ClientLimits } from '../config.js';

export interface SseStream {
  send(event: string, data: unknown): void;
  /** Resolves when the client goes away, the stream is dropped, or close() is called. */
  closed: Promise<void>;
  close(): void;
}

export interface SseBounds {
  /** Keep-alive comment interval (below the connection's idle timeout). */
  pingMs: number;
  /** A client that has not taken what was written for this long is dropped. */
  stallMs: number;
  /** Most bytes queued for a slow client before it is dropped at once. */
  maxBufferedBytes?: number;
  /** End the stream after this long without an event (pings do not count); unset: no such bound. */
  idleMs?: number;
  /** Told when a stream is dropped or ended by a bound. */
  onBound?: (why: 'stalled' | 'buffer' | 'idle') => void;
}

const MAX_BUFFERED = 4 * 1024 * 1024;

/**
 * Takes over the reply and opens a server-sent events stream with keep-alive comments. A reader that
 * never reads would make every write queue in memory: once a write is refused (backpressure) the
 * client has `stallMs` to drain it, and is dropped (socket destroyed: ending would wait for the
 * unread bytes) when it does not, or at once past `maxBufferedBytes`. EventSource reconnects.
 */
export function openSse(req: FastifyRequest, reply: FastifyReply, b: SseBounds): SseStream {
  reply.hijack();
  const res = reply.raw;
  const maxBuffered = b.maxBufferedBytes ?? MAX_BUFFERED;
  let done = false;
  let stall: NodeJS.Timeout | undefined;
  let idle: NodeJS.Timeout | undefined;
  let ping: NodeJS.Timeout | undefined;
  let resolve!: () => void;
  const closed = new Promise<void>((r) => (resolve = r));
  const finish = (how: 'end' | 'destroy') => {
    if (done) return;
    done = true;
    clearInterval(ping);
    clearTimeout(stall);
    clearTimeout(idle);
    if (how === 'end') res.end();
    else res.destroy();
    resolve();
  };
  const bound = (why: 'stalled' | 'buffer' | 'idle') => {
    b.onBound?.(why);
    finish(why === 'idle' ? 'end' : 'destroy');
  };
  const write = (chunk: string) => {
    if (done) return;
    if (res.writableLength > maxBuffered) return bound('buffer');
    if (!res.write(chunk) && !stall) {
      stall = setTimeout(() => bound('stalled'), b.stallMs);
      res.once('drain', () => {
        clearTimeout(stall);
        stall = undefined;
      });
    }
  };
  const armIdle = () => {
    if (b.idleMs === undefined) return;
    clearTimeout(idle);
    idle = setTimeout(() => bound('idle'), b.idleMs);
  };
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' });
  write(': connected\n\n');
  ping = setInterval(() => write(': ping\n\n'), b.pingMs);
  armIdle();
  req.raw.on('close', () => finish('end'));
  res.on('close', () => finish('end'));
  return {
    send(event, data) {
      write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
      armIdle();
    },
    closed,
    close: () => finish('end'),
  };
}

/**
 * The bounds of an SSE route from the configured limits: pings well inside the connection's idle
 * timeout, the stall bound, and for routes that follow one flow the watch idle bound.
 */
export function sseBounds(l: Pick<ClientLimits, 'idleTimeoutMs' | 'streamStallMs' | 'watchIdleMs'>, log: Logger, route: string, o: { watch: boolean }): SseBounds {
  return {
    pingMs: Math.max(50, Math.min(15_000, Math.floor(l.idleTimeoutMs / 3))),
    stallMs: l.streamStallMs,
    ...(o.watch ? { idleMs: l.watchIdleMs } : {}),
    onBound: (why) => {
      if (why === 'idle') log.debug({ route, idleMs: l.watchIdleMs }, 'event stream ended: no event within the watch idle bound');
      else log.warn({ route, why, stallMs: l.streamStallMs }, 'event stream dropped: the client is not reading');
    },
  };
}

/** Paths whose GET may authenticate with ?access_token= (EventSource cannot send headers). */
export const SSE_PATHS = [/^\/v1\/stream\/events$/, /^\/v1\/flows\/[^/]+\/events$/];
