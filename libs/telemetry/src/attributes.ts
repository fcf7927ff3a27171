/**
 * Span attribute names: OpenTelemetry's messaging conventions, and the project's own under `jetflow.*`.
 * Spelled out here so libraries need only @opentelemetry/api (the incubating conventions package is not
 * a stable import).
 */
export const ATTR = {
  messagingSystem: 'messaging.system',
  destination: 'messaging.destination.name',
  operationType: 'messaging.operation.type',
  operationName: 'messaging.operation.name',
  messageId: 'messaging.message.id',
  consumerGroup: 'messaging.consumer.group.name',
  bodySize: 'messaging.message.body.size',
  httpMethod: 'http.request.method',
  httpRoute: 'http.route',
  httpStatus: 'http.response.status_code',
  urlPath: 'url.path',
  urlScheme: 'url.scheme',
  urlFull: 'url.full',
  serverAddress: 'server.address',
  serverPort: 'server.port',
  peerAddress: 'network.peer.address',
  errorType: 'error.type',
  rpcSystem: 'rpc.system',
  rpcService: 'rpc.service',
  rpcMethod: 'rpc.method',
  grpcStatus: 'rpc.grpc.status_code',
  flowId: 'jetflow.flow_id',
  flow: 'jetflow.flow',
  task: 'jetflow.task',
  attempt: 'jetflow.attempt',
  tenant: 'jetflow.tenant',
  door: 'jetflow.door',
  outcome: 'jetflow.outcome',
  stream: 'jetflow.stream',
  streamSequence: 'jetflow.stream_sequence',
  duplicate: 'jetflow.duplicate',
} as const;

/** messaging.system for every span that crosses NATS. */
export const MESSAGING_SYSTEM = 'nats';

/**
 * A low-cardinality span name for a subject: task subjects as they are (one per task type), the
 * others by their first two tokens (jetflow.result.<p>.<flowId> → jetflow.result), dead letters with
 * their source. The full subject goes into messaging.destination.name.
 */
export function subjectTemplate(subject: string): string {
  const a = subject.indexOf('.');
  const b = a < 0 ? -1 : subject.indexOf('.', a + 1);
  if (b < 0) return subject;
  const head = subject.slice(0, b);
  if (head === 'jetflow.task') return subject;
  if (head === 'jetflow.dlq') {
    const c = subject.indexOf('.', b + 1);
    return c < 0 ? subject : subject.slice(0, c);
  }
  return head;
}
