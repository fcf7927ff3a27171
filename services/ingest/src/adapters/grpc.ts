import * as grpc from '@grpc/grpc-js';
import { create, fromBinary, toBinary, toJson, type DescMessage, type MessageShape } from '@bufbuild/protobuf';
import { ValueSchema } from '@bufbuild/protobuf/wkt';
import type { NatsConnection, Subscription } from 'nats';
import {
  IngestService,
  SubmitFlowResponseSchema,
  GetFlowResponseSchema,
  CancelFlowResponseSchema,
  CancelFlowsResponseSchema,
  type CancelFlowsRequest,
  SignalFlowResponseSchema,
  type SignalFlowRequest,
  FlowEventSchema,
  type SubmitFlowRequest,
  type GetFlowRequest,
  type CancelFlowRequest,
  type WatchFlowRequest,
  type FlowEvent,
} from '@jetflow/proto';
import { ErrorCodes, JetflowError, STATUS, codeOf, STATUS_DETAILS_TRAILER, encodeRpcStatus } from '@jetflow/errors';
import { eventSubject } from '@jetflow/messaging';
import { reportError, type Logger } from '@jetflow/logging';
import type { FlowHandlers } from '../handlers/flows.js';
import type { BulkHandlers } from '../handlers/bulk.js';
import type { Authenticator, Principal } from './auth.js';
import type { ClientLimits } from '../config.js';
import { boundedWriter } from './grpc-stream.js';

/**
 * Maps an error to a gRPC status: the standard google.rpc.Status (bad fields as a BadRequest) in
 * grpc-status-details-bin, and for clients written before it the jetflow-error-* trailers.
 */
export function toStatus(err: unknown): Partial<grpc.StatusObject> {
  const code = codeOf(err);
  const grpcCode = STATUS[code].grpc;
  const message = (err as Error)?.message ?? 'internal error';
  const md = new grpc.Metadata();
  const je = err instanceof JetflowError ? err : undefined;
  if (je?.details.length) md.set('jetflow-error-details', JSON.stringify(je.details));
  md.set('jetflow-error-code', code);
  if (je?.retryAfterMs !== undefined) md.set('retry-after', String(Math.ceil(je.retryAfterMs / 1000)));
  md.set(STATUS_DETAILS_TRAILER, Buffer.from(encodeRpcStatus(grpcCode, message, je?.details)));
  return { code: grpcCode, details: message, metadata: md };
}

function codec<D extends DescMessage>(schema: D) {
  return {
    serialize: (m: MessageShape<D>) => Buffer.from(toBinary(schema, m)),
    deserialize: (b: Buffer) => fromBinary(schema, b),
  };
}

/**
 * What a request deserializer hands the handler instead of a message when the bytes do not decode.
 * grpc-js answers a throwing deserializer with INTERNAL "Error deserializing request"; bad bytes are the
 * caller's fault, so the handler answers INVALID_ARGUMENT naming the message and the decoder's reason.
 */
export class UndecodableRequest {
  readonly error: JetflowError;
  constructor(typeName: string, cause: unknown) {
    const reason = String((cause as Error)?.message ?? cause).slice(0, 200);
    this.error = new JetflowError(ErrorCodes.INVALID_ARGUMENT, `request is not a valid ${typeName}: ${reason}`, { cause });
  }
}

function requestDeserializer<D extends DescMessage>(schema: D) {
  return (b: Buffer): MessageShape<D> | UndecodableRequest => {
    try {
      return fromBinary(schema, b);
    } catch (err) {
      return new UndecodableRequest(schema.typeName, err);
    }
  };
}

/** The decoded request, or the INVALID_ARGUMENT error its deserializer recorded. */
function decoded<Req>(req: Req | UndecodableRequest): Req {
  if (req instanceof UndecodableRequest) throw req.error;
  return req;
}

/** A grpc-js service definition built from the protobuf-es generated descriptors. */
export function ingestServiceDefinition(): grpc.ServiceDefinition {
  const def: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const m of IngestService.methods) {
    const i = codec(m.input);
    const o = codec(m.output);
    def[m.localName] = {
      path: `/${IngestService.typeName}/${m.name}`,
      requestStream: m.methodKind === 'client_streaming' || m.methodKind === 'bidi_streaming',
      responseStream: m.methodKind === 'server_streaming' || m.methodKind === 'bidi_streaming',
      requestSerialize: i.serialize as (v: unknown) => Buffer,
      requestDeserialize: requestDeserializer(m.input),
      responseSerialize: o.serialize as (v: unknown) => Buffer,
      responseDeserialize: o.deserialize,
      originalName: m.name,
    };
  }
  return def;
}

export interface GrpcDeps {
  flows: FlowHandlers;
  /** CancelFlows: bulk cancel by filter. */
  bulk: BulkHandlers;
  auth: Authenticator;
  nc: NatsConnection;
  log: Logger;
  maxBodyBytes: number;
  /** Connection idle bound and WatchFlow's stall and idle bounds. */
  limits: Pick<ClientLimits, 'grpcIdleMs' | 'streamStallMs' | 'watchIdleMs'>;
  /** Server interceptors (tracing and metrics of SubmitFlow). */
  interceptors?: grpc.ServerInterceptor[];
}

/** CancelFlowsRequest as the JSON body of POST /v1/flows:cancel (proto3's empty fields: not given). */
export function cancelFlowsBody(req: CancelFlowsRequest): Record<string, unknown> {
  const f = req.filter;
  const filter: Record<string, unknown> = {};
  if (f?.status.length) filter.status = f.status;
  if (f?.flow) filter.flow = f.flow;
  if (f?.idempotencyKey) filter.idempotencyKey = f.idempotencyKey;
  if (f?.metadata) filter.metadata = f.metadata;
  if (f?.submittedAfter) filter.submittedAfter = f.submittedAfter;
  if (f?.submittedBefore) filter.submittedBefore = f.submittedBefore;
  if (f?.tenant) filter.tenant = f.tenant;
  return {
    ...(f ? { filter } : {}),
    ...(req.dryRun ? { dryRun: true } : {}),
    ...(req.all ? { all: true } : {}),
    ...(req.reason ? { reason: req.reason } : {}),
    ...(req.limit ? { limit: req.limit } : {}),
    ...(req.cursor ? { cursor: req.cursor } : {}),
  };
}

export function buildGrpcServer(d: GrpcDeps): grpc.Server {
  const server = new grpc.Server({
    'grpc.max_receive_message_length': d.maxBodyBytes,
    // A connection without calls is closed (GOAWAY; clients reconnect on their next call), and pings
    // find peers that vanished without closing.
    'grpc.max_connection_idle_ms': d.limits.grpcIdleMs,
    'grpc.keepalive_time_ms': 120_000,
    'grpc.keepalive_timeout_ms': 20_000,
    interceptors: d.interceptors ?? [],
  });
  const principalOf = (call: { metadata: grpc.Metadata }): Principal => {
    const v = call.metadata.get('authorization')[0];
    return d.auth.principalOf(typeof v === 'string' ? v : v?.toString());
  };
  const tenantOf = (call: { metadata: grpc.Metadata }) => principalOf(call).tenant;
  const unary =
    <Req, Res>(fn: (tenant: string, req: Req, md: grpc.Metadata, who: Principal) => Promise<Res>) =>
    (call: grpc.ServerUnaryCall<Req | UndecodableRequest, Res>, cb: grpc.sendUnaryData<Res>) => {
      // The key is checked before the body: a caller without one learns nothing about what it sent.
      (async () => {
        const who = principalOf(call);
        return fn(who.tenant, decoded(call.request), call.metadata, who);
      })().then(
        (res) => cb(null, res),
        (err: unknown) => {
          if (codeOf(err) === 'internal') reportError(d.log, err, { where: 'grpc call' });
          cb(toStatus(err));
        },
      );
    };

  server.addService(ingestServiceDefinition(), {
    submitFlow: unary<SubmitFlowRequest, unknown>(async (tenant, req, md) => {
      const body: Record<string, unknown> = req.inputRef && !req.input ? { flow: req.flow, inputRef: req.inputRef } : { flow: req.flow, input: req.input ?? null };
      if (req.inputRef && req.input) body.inputRef = req.inputRef;
      if (req.callbackUrl) body.callbackUrl = req.callbackUrl;
      if (req.idempotencyKey) body.idempotencyKey = req.idempotencyKey;
      if (req.deadlineMs) body.deadlineMs = req.deadlineMs;
      if (Object.keys(req.metadata).length) body.metadata = req.metadata;
      if (req.startAt) body.startAt = req.startAt;
      if (req.delayMs) body.delayMs = req.delayMs;
      // 0 is proto3's unset: the default priority.
      if (req.priority) body.priority = req.priority;
      const tp = md.get('traceparent')[0];
      const r = await d.flows.submit(tenant, body, typeof tp === 'string' ? tp : undefined);
      return create(SubmitFlowResponseSchema, { flowId: r.flowId, status: r.status });
    }),
    getFlow: unary<GetFlowRequest, unknown>(async (tenant, req) => {
      const view = await d.flows.get(tenant, req.flowId);
      return create(GetFlowResponseSchema, { flow: JSON.parse(JSON.stringify(view)) as Record<string, never> });
    }),
    cancelFlow: unary<CancelFlowRequest, unknown>(async (tenant, req) => create(CancelFlowResponseSchema, await d.flows.cancel(tenant, req.flowId, req.reason))),
    cancelFlows: unary<CancelFlowsRequest, unknown>(async (tenant, req, _md, who) => {
      const r = await d.bulk.cancelFlows(tenant, who.operator, cancelFlowsBody(req));
      return create(CancelFlowsResponseSchema, { ...r, next: r.next ?? '' });
    }),
    signalFlow: unary<SignalFlowRequest, unknown>(async (tenant, req) =>
      create(SignalFlowResponseSchema, await d.flows.signal(tenant, req.flowId, req.name, req.payload ? toJson(ValueSchema, req.payload) : null, req.signalId || undefined)),
    ),
    watchFlow: (call: grpc.ServerWritableStream<WatchFlowRequest | UndecodableRequest, FlowEvent>) => {
      let sub: Subscription | undefined;
      let gone = false;
      call.on('cancelled', () => {
        gone = true;
        sub?.unsubscribe();
      });
      void (async () => {
        try {
          const tenant = tenantOf(call);
          const flowId = decoded(call.request).flowId;
          // NOT_FOUND for unknown flows and other tenants'; a flow accepted a moment ago has a view already.
          await d.flows.get(tenant, flowId);
          if (gone) return;
          // Subscribe before the snapshot so no event falls between the two.
          sub = d.nc.subscribe(eventSubject(tenant, flowId));
          const s = sub;
          let idleFor: number | undefined;
          const out = boundedWriter(call, {
            stallMs: d.limits.streamStallMs,
            idleMs: d.limits.watchIdleMs,
            onStall: () => {
              gone = true;
              s.unsubscribe();
              d.log.warn({ flowId, stallMs: d.limits.streamStallMs }, 'WatchFlow stream reset: the client is not reading');
            },
            onIdle: () => {
              idleFor = d.limits.watchIdleMs;
              s.unsubscribe();
            },
          });
          const snap = await d.flows.get(tenant, flowId);
          const terminal = ['succeeded', 'partial', 'failed', 'cancelled'].includes(String(snap.status));
          out.write(create(FlowEventSchema, { flowId, tenant, flow: String(snap.flow), type: 'snapshot', status: String(snap.status), atMs: BigInt(Date.now()) }));
          if (!terminal) {
            for await (const m of sub) {
              let ev: FlowEvent;
              try {
                ev = fromBinary(FlowEventSchema, m.data);
              } catch {
                continue; // not a FlowEvent: anyone who can publish on the subject could have sent it
              }
              out.write(ev);
              if (ev.type === 'flow.completed') break;
            }
          }
          out.stop();
          sub.unsubscribe();
          if (gone) return;
          if (idleFor !== undefined) throw new JetflowError(ErrorCodes.TIMEOUT, `no event for ${idleFor} ms (JETFLOW_WATCH_IDLE_MS); watch again to continue`);
          call.end();
        } catch (err) {
          sub?.unsubscribe();
          if (codeOf(err) === 'internal') reportError(d.log, err, { where: 'grpc WatchFlow' });
          // grpc-js ends a server stream with a status on 'error'; destroy() would end it with none, and
          // the client would wait for its deadline.
          if (!gone && !call.writableEnded) call.emit('error', Object.assign(new Error((err as Error).message), toStatus(err)));
        }
      })();
    },
  });
  return server;
}
