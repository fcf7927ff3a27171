import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';

/**
 * A generic gRPC reflection client (what grpcurl does): it knows only the reflection protocol,
 * nothing of Jetflow's .proto files.
 */
export interface ReflectionClient {
  listServices(): Promise<string[]>;
  /** Serialized FileDescriptorProtos: the file declaring `symbol` and, as servers do, its dependencies. */
  fileContainingSymbol(symbol: string): Promise<Uint8Array[]>;
  fileByFilename(name: string): Promise<Uint8Array[]>;
  close(): void;
}

interface ReflectionResponse {
  message_response: 'list_services_response' | 'file_descriptor_response' | 'error_response';
  list_services_response?: { service: Array<{ name: string }> };
  file_descriptor_response?: { file_descriptor_proto: Buffer[] };
  error_response?: { error_code: number; error_message: string };
}

export function reflectionClient(address: string): ReflectionClient {
  const require = createRequire(import.meta.url);
  const protoDir = join(dirname(require.resolve('@grpc/reflection/package.json')), 'build', 'proto');
  const def = loadSync('grpc/reflection/v1/reflection.proto', { includeDirs: [protoDir], keepCase: true, oneofs: true, longs: String, defaults: true });
  const pkg = grpc.loadPackageDefinition(def) as unknown as { grpc: { reflection: { v1: { ServerReflection: grpc.ServiceClientConstructor } } } };
  const client = new pkg.grpc.reflection.v1.ServerReflection(address, grpc.credentials.createInsecure());
  const ask = (req: Record<string, string>) =>
    new Promise<ReflectionResponse>((resolve, reject) => {
      const call = (client as unknown as { ServerReflectionInfo(): grpc.ClientDuplexStream<unknown, ReflectionResponse> }).ServerReflectionInfo();
      call.once('data', (r: ReflectionResponse) => {
        resolve(r);
        call.end();
      });
      call.once('error', reject);
      call.write({ host: '', ...req });
    });
  const files = async (req: Record<string, string>) => {
    const r = await ask(req);
    if (r.message_response !== 'file_descriptor_response') throw new Error(`reflection: ${r.error_response?.error_message ?? r.message_response}`);
    return r.file_descriptor_response!.file_descriptor_proto.map((b) => new Uint8Array(b));
  };
  return {
    async listServices() {
      const r = await ask({ list_services: '*' });
      return (r.list_services_response?.service ?? []).map((s) => s.name);
    },
    fileContainingSymbol: (symbol) => files({ file_containing_symbol: symbol }),
    fileByFilename: (name) => files({ file_by_filename: name }),
    close: () => client.close(),
  };
}
