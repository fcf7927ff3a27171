import { dirname } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { findUp } from './find-up.js';

/**
 * gRPC server reflection (v1 and v1alpha), so generic clients (grpcurl, Postman, grpcui) can list
 * and call IngestService without the .proto. The service itself is served from the protobuf-es
 * descriptors; the .proto is loaded here only to describe it. google/protobuf/struct.proto comes
 * with protobufjs.
 */
export function addReflection(server: Pick<grpc.Server, 'addService'>): void {
  const proto = findUp('proto/jetflow/v1/ingest.proto');
  const root = dirname(dirname(dirname(proto)));
  const pkg = loadSync('jetflow/v1/ingest.proto', { includeDirs: [root], keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
  new ReflectionService(pkg as ConstructorParameters<typeof ReflectionService>[0]).addToServer(server);
}
