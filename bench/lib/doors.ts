import { Agent, request } from 'node:http';
import * as grpc from '@grpc/grpc-js';
import { create, toBinary, type JsonObject } from '@bufbuild/protobuf';
import { headers as natsHeaders, type NatsConnection } from 'nats';
import { IngestService, SubmitFlowRequestSchema } from '@jetflow/proto';
import { JetStreamPublisher } from '@jetflow/messaging';
import type { Door } from './options.js';

/** How a driver reports one submission: accepted (PubAck, 202/200, gRPC OK) or refused with why. */
export type Outcome = (accepted: boolean, why?: string) => void;

export interface Submitter {
  readonly door: Door;
  /** Sends one submission with this idempotency key (the flow id is deriveFlowId(tenant, key) on every door). */
  submit(key: string, done: Outcome): void;
  close(): Promise<void>;
}

export interface DoorTargets {
  tenant: string;
  apiKey: string;
  /** A connection as the tenant's own NATS identity (or anonymous without identities). */
  tenantNc: NatsConnection;
  http: string;
  grpc: string;
}

/**
 * The flow the bench submits: in noop mode `bench-stages` (bench/flows.json: insights v1's shape, two stages
 * of three tasks, the shape earlier figures and the BullMQ peer have), in real mode `insights` itself.
 */
export const benchFlow = (mode: string) => (mode === 'noop' ? 'bench-stages' : 'insights');
export const BENCH_FLOWS_FILE = 'bench/flows.json';

/** The bench's submission: `flow` (benchFlow) over `records` review-like records. */
export function submissionBody(
  callbackUrl: string,
  records: number,
  flow = 'insights',
): { flow: string; input: { records: Array<Record<string, unknown>> }; callbackUrl: string; metadata: Record<string, string> } {
  const words = [
    'delivery',
    'late',
    'box',
    'damaged',
    'great',
    'product',
    'fast',
    'shipping',
    'happy',
    'support',
    'solved',
    'problem',
    'quickly',
    'refund',
    'slow',
    'price',
    'quality',
    'excellent',
    'broken',
    'again',
  ];
  const recs = Array.from({ length: records }, (_, i) => ({
    id: `r${i + 1}`,
    text: Array.from({ length: 8 + (i % 5) }, (_, j) => words[(i * 7 + j * 3) % words.length]).join(' '),
    fields: { rating: 1 + (i % 5), amount: Math.round((10 + i * 3.7) * 100) / 100 },
  }));
  return { flow, input: { records: recs }, callbackUrl, metadata: { source: 'bench' } };
}

type Body = ReturnType<typeof submissionBody>;
/** The same submission as a SubmitFlowRequest (its input a google.protobuf.Struct, i.e. a JSON object). */
const protoInit = (body: Body) => create(SubmitFlowRequestSchema, { ...body, input: body.input as unknown as JsonObject });
const TIMEOUT_MS = 10_000;

export function submitter(door: Door, t: DoorTargets, body: Body): Submitter {
  switch (door) {
    case 'nats':
      return natsDoor(t, body.flow, new TextEncoder().encode(JSON.stringify(body)), 'application/json', 'nats');
    case 'nats-proto':
      return natsDoor(t, body.flow, toBinary(SubmitFlowRequestSchema, protoInit(body)), 'application/protobuf', 'nats-proto');
    case 'http':
      return httpDoor(t, body);
    case 'grpc':
      return grpcDoor(t, body);
  }
}

/** The NATS door: the body to jetflow.ingest.<tenant>.<flow> with the key as Nats-Msg-Id, through the project's publisher. */
function natsDoor(t: DoorTargets, flow: string, data: Uint8Array, contentType: string, door: Door): Submitter {
  const pub = new JetStreamPublisher(t.tenantNc);
  const subject = `jetflow.ingest.${t.tenant}.${flow}`;
  return {
    door,
    submit(key, done) {
      const h = natsHeaders();
      h.set('Content-Type', contentType);
      pub.publish(subject, data, { msgId: key, headers: h, timeoutMs: TIMEOUT_MS }).then(
        () => done(true),
        (err: Error) => done(false, err.message),
      );
    },
    close: async () => pub.close(),
  };
}

/** POST /v1/flows over keep-alive connections (node's http agent), the key as idempotencyKey. */
function httpDoor(t: DoorTargets, body: Body): Submitter {
  const agent = new Agent({ keepAlive: true, maxSockets: 64 });
  const url = new URL('/v1/flows', t.http);
  // The body without its closing brace, so each request appends only its key.
  const head = JSON.stringify(body).slice(0, -1);
  return {
    door: 'http',
    submit(key, done) {
      const data = Buffer.from(`${head},"idempotencyKey":${JSON.stringify(key)}}`);
      let settled = false;
      const finish = (ok: boolean, why?: string) => {
        if (settled) return;
        settled = true;
        done(ok, why);
      };
      const req = request(
        url,
        { method: 'POST', agent, headers: { authorization: `Bearer ${t.apiKey}`, 'content-type': 'application/json', 'content-length': data.length }, timeout: TIMEOUT_MS },
        (res) => {
          res.resume();
          res.once('end', () => (res.statusCode === 202 || res.statusCode === 200 ? finish(true) : finish(false, `HTTP ${res.statusCode}`)));
          res.once('error', (e) => finish(false, e.message));
        },
      );
      req.once('timeout', () => req.destroy(new Error(`no answer within ${TIMEOUT_MS} ms`)));
      req.once('error', (e) => finish(false, e.message));
      req.end(data);
    },
    close: async () => agent.destroy(),
  };
}

/** SubmitFlow over one grpc-js channel; the body is encoded once and each request appends its key (field 4). */
function grpcDoor(t: DoorTargets, body: Body): Submitter {
  const client = new grpc.Client(t.grpc, grpc.credentials.createInsecure());
  const path = `/${IngestService.typeName}/${IngestService.method.submitFlow.name}`;
  const base = toBinary(SubmitFlowRequestSchema, protoInit(body));
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${t.apiKey}`);
  return {
    door: 'grpc',
    submit(key, done) {
      // Protobuf fields may come in any order, so base + {idempotency_key} is the whole request.
      const req = Buffer.concat([base, toBinary(SubmitFlowRequestSchema, create(SubmitFlowRequestSchema, { idempotencyKey: key }))]);
      client.makeUnaryRequest(
        path,
        (b: Buffer) => b,
        (b: Buffer) => b,
        req,
        md,
        { deadline: Date.now() + TIMEOUT_MS },
        (err) => (err ? done(false, `gRPC ${grpc.status[err.code] ?? err.code}: ${err.details}`) : done(true)),
      );
    },
    close: async () => client.close(),
  };
}
