import { createInbox, headers as natsHeaders, type MsgHdrs, type NatsConnection, type Subscription } from 'nats';
import { CasConflictError, RetryableError } from '@jetflow/errors';
import { tracingEnabled } from '@jetflow/telemetry';
import { JetStreamApiCodes, parseJsApiError, type JsApiError } from './js-errors.js';
import { endPublishSpan, startPublishSpan } from './tracing.js';
import { markTransient } from './transient.js';

export interface PubAck {
  stream: string;
  seq: number;
  duplicate: boolean;
}

export interface PublishOptions {
  /** Nats-Msg-Id: JetStream drops a second message with the same id inside the stream's duplicate window. */
  msgId?: string;
  headers?: Record<string, string> | MsgHdrs;
  /** How long to keep retrying (same msg id, so retries never duplicate). */
  timeoutMs?: number;
}

interface Pending {
  resolve: (a: PubAck) => void;
  reject: (e: Error) => void;
  subject: string;
  data: Uint8Array;
  hdrs: MsgHdrs;
  attempt: number;
  deadline: number;
  /** The last refusal JetStream answered with, kept on the error if retries run out. */
  lastError?: JsApiError;
  timer: NodeJS.Timeout;
}

const ATTEMPT_TIMEOUT_MS = 2_000;

/**
 * Durable publishing to JetStream with a plain nc.publish whose reply goes to one shared inbox
 * subscription that matches the PubAcks. Same durable, deduplicated result as js.publish() at a
 * fraction of its client CPU (measured on nats 2.29 with 1 KB messages: ~10 µs vs ~45 µs; docs/PERFORMANCE.md). Publishes without an ack within
 * ATTEMPT_TIMEOUT_MS, or answered "no responders" (stream leader moving, server restarting), are
 * retried with the same Nats-Msg-Id until timeoutMs, so they are neither lost nor duplicated.
 */
export class JetStreamPublisher {
  private readonly prefix: string;
  private readonly sub: Subscription;
  private readonly pending = new Map<number, Pending>();
  private next = 0;
  private closed = false;

  constructor(private readonly nc: NatsConnection) {
    // The connection's inbox prefix (the field nats.js's own JetStream code reads): an identity may
    // subscribe only to its own inboxes.
    this.prefix = createInbox((nc as { options?: { inboxPrefix?: string } }).options?.inboxPrefix);
    this.sub = nc.subscribe(`${this.prefix}.*`, {
      callback: (_err, m) => {
        const id = Number(m.subject.slice(this.prefix.length + 1));
        const p = this.pending.get(id);
        if (!p) return;
        const code = m.headers?.code;
        if (code === 503) {
          // No stream answered: retry after a short pause.
          this.retryLater(id, p, 'no responders');
          return;
        }
        let ack: { stream?: unknown; seq?: unknown; duplicate?: unknown; error?: unknown };
        try {
          ack = JSON.parse(new TextDecoder().decode(m.data)) as typeof ack;
          if (typeof ack !== 'object' || ack === null || Array.isArray(ack)) throw new Error('not an object');
        } catch {
          this.finish(id, p, undefined, new Error(`bad PubAck for ${p.subject}`));
          return;
        }
        if (ack.error !== undefined && ack.error !== null) {
          const api = parseJsApiError(ack.error) ?? { code: 0, description: 'malformed error' };
          // 503-class errors are transient (e.g. stream leader not elected); others are not. A full
          // stream (discard new) also answers 503, but with "store failed": retrying cannot help.
          if (api.code === 503 && api.err_code !== JetStreamApiCodes.StreamStoreFailed) {
            p.lastError = api;
            this.retryLater(id, p, api.description);
          } else this.finish(id, p, undefined, rejected(p.subject, api));
          return;
        }
        this.finish(id, p, { stream: typeof ack.stream === 'string' ? ack.stream : '', seq: typeof ack.seq === 'number' ? ack.seq : 0, duplicate: ack.duplicate === true });
      },
    });
  }

  publish(subject: string, data: Uint8Array, opts: PublishOptions = {}): Promise<PubAck> {
    if (this.closed) return Promise.reject(new RetryableError('publisher closed'));
    let hdrs: MsgHdrs;
    if (opts.headers && typeof (opts.headers as MsgHdrs).set === 'function') hdrs = opts.headers as MsgHdrs;
    else {
      hdrs = natsHeaders();
      for (const [k, v] of Object.entries((opts.headers as Record<string, string> | undefined) ?? {})) hdrs.set(k, v);
    }
    if (opts.msgId) hdrs.set('Nats-Msg-Id', opts.msgId);
    // The PRODUCER span covers retries until the PubAck; its context goes out in the headers.
    const span = tracingEnabled() ? startPublishSpan(subject, hdrs, opts.msgId, data.length) : undefined;
    const id = ++this.next;
    const acked = new Promise<PubAck>((resolve, reject) => {
      const p: Pending = {
        resolve,
        reject,
        subject,
        data,
        hdrs,
        attempt: 0,
        deadline: Date.now() + (opts.timeoutMs ?? 30_000),
        timer: undefined as unknown as NodeJS.Timeout,
      };
      this.pending.set(id, p);
      this.send(id, p);
    });
    return span ? endPublishSpan(span, acked) : acked;
  }

  private send(id: number, p: Pending) {
    p.attempt++;
    p.timer = setTimeout(() => this.retryLater(id, p, 'PubAck timeout'), ATTEMPT_TIMEOUT_MS);
    try {
      this.nc.publish(p.subject, p.data, { reply: `${this.prefix}.${id}`, headers: p.hdrs });
    } catch (err) {
      clearTimeout(p.timer);
      this.retryLater(id, p, (err as Error).message);
    }
  }

  private retryLater(id: number, p: Pending, why: string) {
    clearTimeout(p.timer);
    if (!this.pending.has(id)) return;
    if (this.closed || Date.now() > p.deadline) {
      const e = new RetryableError(`publish to ${p.subject} not acknowledged after ${p.attempt} attempts: ${why}`);
      if (p.lastError) Object.assign(e, { api_error: p.lastError });
      this.finish(id, p, undefined, markTransient(e));
      return;
    }
    const delay = Math.min(1_000, 25 * 2 ** Math.min(p.attempt, 6)) * (0.5 + Math.random() / 2);
    p.timer = setTimeout(() => this.send(id, p), delay);
  }

  private finish(id: number, p: Pending, ack?: PubAck, err?: Error) {
    clearTimeout(p.timer);
    this.pending.delete(id);
    if (err) p.reject(err);
    else p.resolve(ack!);
  }

  get inFlight(): number {
    return this.pending.size;
  }

  close(): void {
    this.closed = true;
    this.sub.unsubscribe();
    for (const [id, p] of this.pending) this.finish(id, p, undefined, new RetryableError('publisher closed'));
  }
}

/**
 * The error of a publish JetStream refused, carrying the server's `api_error` (code and err_code) as
 * nats.js errors do, so callers match on JetStreamApiCodes. A lost compare-and-set is a conflict.
 */
function rejected(subject: string, api: JsApiError): Error {
  const msg = `JetStream rejected publish to ${subject}: ${api.description} (${api.code})`;
  const e = api.err_code === JetStreamApiCodes.StreamWrongLastSequence ? new CasConflictError(msg) : new RetryableError(msg);
  return Object.assign(e, { api_error: api });
}
