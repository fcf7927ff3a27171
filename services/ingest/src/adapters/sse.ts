import type { FastifyReply, FastifyRequest } from 'fastify';

export interface SseStream {
  send(event: string, data: unknown): void;
  /** Resolves when the client goes away or close() is called. */
  closed: Promise<void>;
  close(): void;
}

/** Most bytes queued for a slow client before the stream is closed (EventSource reconnects). */
const MAX_BUFFERED = 4 * 1024 * 1024;

/** Takes over the reply and opens a server-sent events stream with keep-alive comments. */
export function openSse(req: FastifyRequest, reply: FastifyReply, pingMs = 15_000): SseStream {
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' });
  res.write(': connected\n\n');
  let done = false;
  let resolve!: () => void;
  const closed = new Promise<void>((r) => (resolve = r));
  const ping = setInterval(() => res.write(': ping\n\n'), pingMs);
  const close = () => {
    if (done) return;
    done = true;
    clearInterval(ping);
    res.end();
    resolve();
  };
  req.raw.on('close', close);
  return {
    send(event, data) {
      if (done) return;
      if (res.writableLength > MAX_BUFFERED) return close();
      res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    },
    closed,
    close,
  };
}

/** Paths whose GET may authenticate with ?access_token= (EventSource cannot send headers). */
export const SSE_PATHS = [/^\/v1\/stream\/events$/, /^\/v1\/flows\/[^/]+\/events$/];
