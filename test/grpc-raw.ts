import * as grpc from '@grpc/grpc-js';
import { create, toBinary } from '@bufbuild/protobuf';
import { CancelFlowRequestSchema, GetFlowRequestSchema, IngestService, SubmitFlowRequestSchema, WatchFlowRequestSchema } from '@jetflow/proto';
import type { Rng } from '@jetflow/random';

/** Long enough for a status on a busy 2-core box; far shorter than "hangs until the deadline". */
export const PROMPT_MS = 5_000;

/** A client that sends raw bytes and receives raw bytes: what a buggy or hostile peer can put on the wire. */
export function rawClient(address: string) {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  const id = (b: Buffer) => b;
  const md = (key: string) => {
    const m = new grpc.Metadata();
    m.set('authorization', `Bearer ${key}`);
    return m;
  };
  // No client deadline: a call without a status after PROMPT_MS is cancelled and counted as UNKNOWN (always wrong).
  const answer = (start: (done: (s: { code: grpc.status; details: string; response?: Buffer }) => void) => grpc.Call) =>
    new Promise<{ code: grpc.status; details: string; response?: Buffer }>((resolve) => {
      const timer = setTimeout(() => {
        resolve({ code: grpc.status.UNKNOWN, details: `no status within ${PROMPT_MS} ms` });
        call.cancel();
      }, PROMPT_MS);
      const call = start((s) => {
        clearTimeout(timer);
        resolve(s);
      });
    });
  return {
    unary: (method: string, bytes: Buffer, key: string) =>
      answer((done) =>
        // An answer's own bytes come back too (a SubmitFlowResponse names the flow it accepted).
        client.makeUnaryRequest(`/${IngestService.typeName}/${method}`, id, id, bytes, md(key), {}, (err, response) =>
          done(err ? { code: err.code, details: err.details } : { code: grpc.status.OK, details: 'OK', ...(response ? { response } : {}) }),
        ),
      ),
    stream: (method: string, bytes: Buffer, key: string) =>
      answer((done) => {
        const call = client.makeServerStreamRequest(`/${IngestService.typeName}/${method}`, id, id, bytes, md(key), {});
        call.on('data', () => undefined);
        call.on('status', (s: grpc.StatusObject) => done({ code: s.code, details: s.details }));
        call.on('error', () => undefined);
        return call;
      }),
    close: () => client.close(),
  };
}

/** Random bytes, or a valid message with bytes flipped, inserted, dropped or cut off. */
export function malformed(rng: Rng, valid: Uint8Array): Buffer {
  const byte = () => Math.floor(rng() * 256);
  if (rng() < 0.5) return Buffer.from(Array.from({ length: 1 + Math.floor(rng() * 64) }, byte));
  const b = Array.from(valid);
  const edits = 1 + Math.floor(rng() * 4);
  for (let i = 0; i < edits; i++) {
    const at = Math.floor(rng() * b.length);
    const r = rng();
    if (r < 0.4) b[at] = byte();
    else if (r < 0.6) b.splice(at, 0, byte());
    else if (r < 0.8) b.splice(at, 1);
    else b.length = Math.max(1, at);
  }
  return Buffer.from(b);
}

/** The request schema of each IngestService method. */
export const REQUEST_SCHEMAS = { SubmitFlow: SubmitFlowRequestSchema, GetFlow: GetFlowRequestSchema, CancelFlow: CancelFlowRequestSchema, WatchFlow: WatchFlowRequestSchema };

/** One valid request per IngestService method, encoded: the seeds that malformed() mutates. */
export function validRequests(flowId: string, idempotencyKey: string): Record<keyof typeof REQUEST_SCHEMAS, Uint8Array> {
  return {
    SubmitFlow: toBinary(
      SubmitFlowRequestSchema,
      create(SubmitFlowRequestSchema, {
        flow: 'insights',
        input: { records: [{ id: 'r1', text: 'late and damaged', fields: { rating: 2 } }] },
        idempotencyKey,
        deadlineMs: 5_000,
        metadata: { a: 'b' },
      }),
    ),
    GetFlow: toBinary(GetFlowRequestSchema, create(GetFlowRequestSchema, { flowId })),
    CancelFlow: toBinary(CancelFlowRequestSchema, create(CancelFlowRequestSchema, { flowId, reason: 'test' })),
    WatchFlow: toBinary(WatchFlowRequestSchema, create(WatchFlowRequestSchema, { flowId })),
  };
}
