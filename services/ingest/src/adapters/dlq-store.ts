import { fromBinary } from '@bufbuild/protobuf';
import { headers as natsHeaders, type MsgHdrs, type NatsConnection } from 'nats';
import { CallbackJobSchema, TaskSchema } from '@jetflow/proto';
import { JetflowError, ErrorCodes } from '@jetflow/errors';
import { DLQ_HEADERS, JetStreamApiCodes, STREAMS, SUBJECTS, isJsError, type JetStreamPublisher } from '@jetflow/messaging';
import type { DeadLetterDetail, DeadLetterRecord, DeadLetterStore } from '../handlers/deadletters.js';
import { scanNewestFirst } from './stream-scan.js';

/** Headers the dead-lettering added: dropped on redrive (Jetflow-Flow-Id stays: originals carry it too). */
const ADDED = new Set(
  Object.values(DLQ_HEADERS)
    .filter((h) => h !== DLQ_HEADERS.flowId)
    .map((h) => h.toLowerCase()),
);
const isAdded = (h: string) => ADDED.has(h.toLowerCase()) || /^jetflow-dlq-/i.test(h) || /^nats-/i.test(h);

interface RawMsg {
  seq: number;
  subject: string;
  headers: MsgHdrs | undefined;
  data: Uint8Array;
  timeMs: number;
}

/** The dead-letter stream (JETFLOW_DLQ) read and redriven over JetStream. */
export class JetStreamDeadLetterStore implements DeadLetterStore {
  constructor(
    private readonly nc: NatsConnection,
    private readonly pub: JetStreamPublisher,
    private readonly publishTimeoutMs = 5_000,
  ) {}

  async scan(o: { source?: string; below?: number; budget: number }, visit: (d: DeadLetterRecord) => boolean | Promise<boolean>) {
    return scanNewestFirst(
      this.nc,
      { stream: STREAMS.dlq, budget: o.budget, window: 256, ...(o.source ? { filterSubject: `${SUBJECTS.dlq}.${o.source}.>` } : {}), ...(o.below ? { below: o.below } : {}) },
      (m) => visit(parse({ seq: m.seq, subject: m.subject, headers: m.headers, data: m.data, timeMs: m.info.timestampNanos / 1e6 })),
    );
  }

  async get(seq: number): Promise<DeadLetterDetail | null> {
    const jsm = await this.nc.jetstreamManager();
    let sm;
    try {
      sm = await jsm.streams.getMessage(STREAMS.dlq, { seq });
    } catch (err) {
      if (isGone(err)) return null;
      throw unavailable(err);
    }
    const rec = parse({ seq: sm.seq, subject: sm.subject, headers: sm.header, data: sm.data, timeMs: sm.time.getTime() });
    const headers: Record<string, string[]> = {};
    if (sm.header) for (const [k, vs] of sm.header) headers[k] = [...vs];
    return { ...rec, headers, body: sm.data };
  }

  async redrive(d: DeadLetterDetail, msgId: string) {
    const target = d.originalSubject;
    // Only back into Jetflow's own streams, and never into the dead-letter stream itself.
    if (
      !target.startsWith(`${SUBJECTS.ingest}.`) &&
      !target.startsWith(`${SUBJECTS.submit}.`) &&
      !target.startsWith(`${SUBJECTS.task}.`) &&
      !target.startsWith(`${SUBJECTS.result}.`) &&
      !target.startsWith(`${SUBJECTS.callback}.`)
    ) {
      throw new JetflowError(ErrorCodes.INVALID_ARGUMENT, `dead letter ${d.seq} names original subject "${target}", which is not a Jetflow work subject; it cannot be redriven`, {
        details: [{ path: 'seq', message: 'not redrivable' }],
      });
    }
    const h = natsHeaders();
    for (const [k, vs] of Object.entries(d.headers)) if (!isAdded(k)) for (const v of vs) h.append(k, v);
    h.set('Jetflow-Redrive-Of', String(d.seq));
    let ack;
    try {
      ack = await this.pub.publish(target, d.body, { msgId, headers: h, timeoutMs: this.publishTimeoutMs });
    } catch (err) {
      throw unavailable(err);
    }
    const jsm = await this.nc.jetstreamManager();
    // A concurrent redrive may have deleted it already: that is the outcome we want.
    await jsm.streams.deleteMessage(STREAMS.dlq, d.seq, false).catch((err: Error) => {
      if (!isGone(err)) throw unavailable(err);
    });
    return { subject: target, stream: ack.stream, streamSeq: ack.seq, duplicate: ack.duplicate };
  }
}

function parse(m: RawMsg): DeadLetterRecord {
  const h = (k: string) => m.headers?.get(k) || '';
  const rest = m.subject.slice(SUBJECTS.dlq.length + 1);
  const dot = rest.indexOf('.');
  const source = h(DLQ_HEADERS.source) || (dot > 0 ? rest.slice(0, dot) : rest);
  const originalSubject = h(DLQ_HEADERS.originalSubject) || (dot > 0 ? rest.slice(dot + 1) : '');
  const tokens = originalSubject.split('.');
  const kind = tokens[1];
  const subjectTenant = (kind === 'ingest' || kind === 'submit' || kind === 'callback') && tokens[2] ? tokens[2] : null;
  const flowId = h(DLQ_HEADERS.flowId) || ((kind === 'result' || kind === 'submit') && tokens[3] ? tokens[3] : '') || null;
  const attempts = Number(h(DLQ_HEADERS.attempts));
  const origSeq = Number(h(DLQ_HEADERS.originalSeq));
  const at = Date.parse(h(DLQ_HEADERS.at));
  return {
    seq: m.seq,
    subject: m.subject,
    source,
    originalSubject,
    originalStream: h(DLQ_HEADERS.originalStream) || null,
    originalSeq: Number.isFinite(origSeq) && origSeq > 0 ? origSeq : null,
    code: h(DLQ_HEADERS.code) || 'unknown',
    reason: h(DLQ_HEADERS.reason),
    attempts: Number.isFinite(attempts) && attempts > 0 ? attempts : null,
    flowId,
    time: new Date(Number.isFinite(at) ? at : m.timeMs).toISOString(),
    size: m.data.length,
    subjectTenant,
    bodyTenant: subjectTenant ? null : bodyTenant(kind, m.data),
  };
}

/** Tasks and callback jobs carry their tenant in the body (protobuf). */
function bodyTenant(kind: string | undefined, data: Uint8Array): string | null {
  try {
    if (kind === 'task') return fromBinary(TaskSchema, data).tenant || null;
    if (kind === 'callback') return fromBinary(CallbackJobSchema, data).tenant || null;
  } catch {
    // Undecodable: the reason it was dead-lettered, most likely.
  }
  return null;
}

/** The message (or the whole dead-letter stream) is not there: "no message found", "sequence n not found", "stream not found". */
const isGone = (err: unknown) => isJsError(err, JetStreamApiCodes.NoMessageFound, JetStreamApiCodes.SequenceNotFound, JetStreamApiCodes.StreamNotFound);

function unavailable(err: unknown) {
  if (err instanceof JetflowError) return err;
  return new JetflowError(ErrorCodes.UNAVAILABLE, `the broker is unavailable: ${(err as Error).message}`, { retryAfterMs: 1_000, cause: err });
}
