import { constants as h2 } from 'node:http2';
import type * as grpc from '@grpc/grpc-js';

export interface StreamBounds {
  /** A client that has not taken what was written for this long is dropped. */
  stallMs: number;
  /** Called when nothing was written for this long (the stream stays open: the caller ends it). */
  idleMs: number;
  /** Most messages queued for a slow client before it is dropped at once. */
  maxQueued?: number;
  onStall: () => void;
  onIdle: () => void;
}

/**
 * Writes to a server stream within bounds. grpc-js queues every write whatever the client reads, and a
 * status (trailers) would wait behind the unread messages: a client that stops reading is reset
 * (RST_STREAM CANCEL) after `stallMs` with its write refused, and the caller learns of it by onStall.
 */
export function boundedWriter<T>(call: grpc.ServerWritableStream<unknown, T>, b: StreamBounds) {
  const maxQueued = b.maxQueued ?? 256;
  let stall: NodeJS.Timeout | undefined;
  let idle: NodeJS.Timeout | undefined;
  let over = false;
  const stop = () => {
    over = true;
    clearTimeout(stall);
    clearTimeout(idle);
  };
  const drop = () => {
    if (over) return;
    stop();
    resetStream(call);
    b.onStall();
  };
  const armIdle = () => {
    clearTimeout(idle);
    idle = setTimeout(() => {
      if (!over) b.onIdle();
    }, b.idleMs);
  };
  call.once('cancelled', stop);
  call.once('finish', stop);
  armIdle();
  return {
    write(msg: T): void {
      if (over) return;
      if (call.writableLength >= maxQueued) return drop();
      armIdle();
      if (!call.write(msg) && !stall) {
        stall = setTimeout(drop, b.stallMs);
        call.once('drain', () => {
          clearTimeout(stall);
          stall = undefined;
        });
      }
    },
    /** No more writes or timers (the caller ends the call). */
    stop,
  };
}

interface Http2StreamLike {
  close(code?: number): void;
  rstCode?: number;
}

/**
 * Resets the HTTP/2 stream under a grpc-js server call. grpc-js has no public way to abort a server
 * stream, so this follows its interceptor chain (`call.call`, then each `nextCall`) to the base call's
 * `stream` (library internals, checked). If that shape changes, the call is ended instead, which stops
 * further writes but leaves the stream to its connection's own bounds.
 */
export function resetStream(call: object): boolean {
  let c: unknown = (call as { call?: unknown }).call;
  for (let i = 0; i < 32 && c && typeof c === 'object'; i++) {
    const s = (c as { stream?: unknown }).stream as Partial<Http2StreamLike> | undefined;
    if (s && typeof s.close === 'function' && 'rstCode' in s) {
      s.close(h2.NGHTTP2_CANCEL);
      return true;
    }
    c = (c as { nextCall?: unknown }).nextCall;
  }
  (call as { end?: () => void }).end?.();
  return false;
}
