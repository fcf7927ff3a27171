import type * as grpc from '@grpc/grpc-js';
import { toBinary, type DescFile } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema } from '@bufbuild/protobuf/wkt';
import { ReflectionService } from '@grpc/reflection';
import { file_jetflow_v1_ingest, file_jetflow_v1_worker } from '@jetflow/proto';

/**
 * gRPC server reflection (v1 and v1alpha), so generic clients (grpcurl, Postman, grpcui) can list
 * and call IngestService (and see the worker door's WorkerService) without the .proto.
 *
 * The descriptors are the ones buf compiled into the generated code, not a .proto loaded with
 * proto-loader: proto-loader renames files by package ("jetflow_v1.proto") and drops their
 * `dependency` lists, so a client following imports (as grpcurl does) cannot resolve
 * google.protobuf.Struct. These keep the real file names and imports, and need no proto/ at runtime.
 */
export function addReflection(server: Pick<grpc.Server, 'addService'>, roots: DescFile[] = [file_jetflow_v1_ingest, file_jetflow_v1_worker]): void {
  const files: DescFile[] = [];
  const visit = (f: DescFile) => {
    if (files.includes(f)) return;
    files.push(f);
    f.dependencies.forEach(visit);
  };
  roots.forEach(visit);
  // The shape @grpc/reflection reads from a proto-loader package definition: one entry per service's file.
  const fileDescriptorProtos = files.map((f) => Buffer.from(toBinary(FileDescriptorProtoSchema, f.proto)));
  const pkg = Object.fromEntries(roots.flatMap((r) => r.services.map((svc) => [svc.typeName, { fileDescriptorProtos }])));
  new ReflectionService(pkg as unknown as ConstructorParameters<typeof ReflectionService>[0]).addToServer(server);
}
