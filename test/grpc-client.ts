import * as grpc from '@grpc/grpc-js';
import { create } from '@bufbuild/protobuf';
import { ingestServiceDefinition } from '../services/ingest/src/adapters/grpc.js';
import { SubmitFlowRequestSchema, type SubmitFlowResponse, type GetFlowResponse, type CancelFlowResponse, type FlowEvent } from '@jetflow/proto';

/** A real gRPC client over a socket, built from the same generated descriptors. */
export function ingestClient(address: string, apiKey?: string) {
  const Ctor = grpc.makeGenericClientConstructor(ingestServiceDefinition(), 'IngestService');
  const client = new Ctor(address, grpc.credentials.createInsecure()) as unknown as Record<string, (...args: unknown[]) => unknown> & grpc.Client;
  const md = () => {
    const m = new grpc.Metadata();
    if (apiKey) m.set('authorization', `Bearer ${apiKey}`);
    return m;
  };
  const unary = <Res>(method: string, req: unknown) =>
    new Promise<Res>((resolve, reject) =>
      (client[method] as (r: unknown, m: grpc.Metadata, cb: (e: grpc.ServiceError | null, r: Res) => void) => void).call(client, req, md(), (e, r) => (e ? reject(e) : resolve(r))),
    );
  return {
    submit: (req: Parameters<typeof create<typeof SubmitFlowRequestSchema>>[1]) => unary<SubmitFlowResponse>('submitFlow', create(SubmitFlowRequestSchema, req)),
    get: (flowId: string) => unary<GetFlowResponse>('getFlow', { flowId, $typeName: 'jetflow.v1.GetFlowRequest' }),
    cancel: (flowId: string, reason = '') => unary<CancelFlowResponse>('cancelFlow', { flowId, reason, $typeName: 'jetflow.v1.CancelFlowRequest' }),
    watch: (flowId: string): AsyncIterable<FlowEvent> =>
      (client.watchFlow as (r: unknown, m: grpc.Metadata) => AsyncIterable<FlowEvent>).call(client, { flowId, $typeName: 'jetflow.v1.WatchFlowRequest' }, md()),
    close: () => client.close(),
  };
}
