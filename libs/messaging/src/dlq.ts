import { headers as natsHeaders, type JsMsg, type MsgHdrs } from 'nats';
import { dlqSubject } from './topology.js';
import type { JetStreamPublisher } from './publisher.js';

export const DLQ_HEADERS = {
  reason: 'Jetflow-Dlq-Reason',
  code: 'Jetflow-Dlq-Code',
  attempts: 'Jetflow-Dlq-Attempts',
  source: 'Jetflow-Dlq-Source',
  originalSubject: 'Jetflow-Original-Subject',
  originalStream: 'Jetflow-Original-Stream',
  originalSeq: 'Jetflow-Original-Seq',
  at: 'Jetflow-Dlq-At',
  flowId: 'Jetflow-Flow-Id',
} as const;

/** Told of every message dead-lettered in this process (metrics). */
export type DeadLetterObserver = (source: string, code: string, m: JsMsg) => void;
const observers = new Set<DeadLetterObserver>();

/** Observes dead letters from any part of this process; returns the removal. */
export function onDeadLetter(observer: DeadLetterObserver): () => void {
  observers.add(observer);
  return () => observers.delete(observer);
}

/**
 * Dead-letters a JetStream message: the original body and headers, plus the reason, the attempts and
 * where it came from, so it can be read and redriven. Deduplicated on the original stream sequence.
 */
export async function deadLetter(pub: JetStreamPublisher, m: JsMsg, source: string, reason: { code: string; message: string; flowId?: string; attempts?: number }): Promise<void> {
  const h: MsgHdrs = natsHeaders();
  if (m.headers) for (const [k, vs] of m.headers) if (k !== 'Nats-Msg-Id') for (const v of vs) h.append(k, v);
  h.set(DLQ_HEADERS.reason, reason.message.slice(0, 1_000).replace(/[\r\n]+/g, ' '));
  h.set(DLQ_HEADERS.code, reason.code);
  h.set(DLQ_HEADERS.attempts, String(reason.attempts ?? m.info.deliveryCount));
  h.set(DLQ_HEADERS.source, source);
  h.set(DLQ_HEADERS.originalSubject, m.subject);
  h.set(DLQ_HEADERS.originalStream, m.info.stream);
  h.set(DLQ_HEADERS.originalSeq, String(m.info.streamSequence));
  h.set(DLQ_HEADERS.at, new Date().toISOString());
  if (reason.flowId) h.set(DLQ_HEADERS.flowId, reason.flowId);
  await pub.publish(dlqSubject(source, m.subject), m.data, { headers: h, msgId: `dlq:${m.info.stream}:${m.info.streamSequence}` });
  for (const o of observers) o(source, reason.code, m);
}

/**
 * The delay before retrying after failed attempt `attempt` (1-based): exponential backoff with jitter,
 *   base = min(maxMs, initialMs × multiplier^(attempt-1)),  delay uniform in [base/2, base].
 * The jitter spreads retries of tasks that failed together. `multiplier` comes off the wire (a Task's
 * backoff_multiplier): 0 (a message from before the field), NaN or below 1 mean 2, and it is capped at
 * 10 like a definition's.
 */
export function backoffDelay(attempt: number, initialMs: number, maxMs: number, multiplier = 2): number {
  const m = Number.isFinite(multiplier) && multiplier >= 1 ? Math.min(multiplier, 10) : 2;
  const base = Math.min(maxMs, initialMs * m ** Math.max(0, attempt - 1));
  return Math.round(base / 2 + (Math.random() * base) / 2);
}
