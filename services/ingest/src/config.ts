import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import { CallbackPolicy, DEFAULT_MAX_TASKS_PER_FLOW, loadFlowRegistry, type FlowRegistry } from '@jetflow/flows';
import {
  ConfigError,
  int,
  list,
  natsServers,
  optStr,
  pairs,
  replicas,
  str,
  type Env,
  claimCheckBytes,
  historyMode,
  natsAuth,
  type NatsAuth,
  tenantLimits,
  type TenantLimits,
} from '@jetflow/config';
import { DEFAULT_PARTITIONS } from '@jetflow/messaging';
import { telemetryConfig, type TelemetryConfig } from '@jetflow/telemetry';
import { storageConfigFromEnv, type StorageConfig } from '@jetflow/storage';

export interface IngestConfig {
  natsServers: string[];
  /** NATS identity (NATS_CREDS, NATS_USER + NATS_PASSWORD or NATS_TOKEN) and inbox prefix (NATS_INBOX_PREFIX). */
  natsAuth: NatsAuth;
  httpPort: number;
  grpcPort: number;
  host: string;
  partitions: number;
  /** Copies of every stream and KV bucket (JETFLOW_REPLICAS). */
  replicas: number;
  logLevel: string;
  authDisabled: boolean;
  /** sha256(hex) of each API key → its tenant and role. */
  apiKeys: ReadonlyMap<string, ApiKeyIdentity>;
  /** sha256(hex) of each worker key (gRPC worker door) → the worker's name and the subject patterns it may serve (JETFLOW_WORKER_KEYS). */
  workerKeys: ReadonlyMap<string, WorkerKeyIdentity>;
  callbackAllowlist: string[];
  maxBodyBytes: number;
  /** Most submissions waiting for their PubAck before new ones get 429. */
  maxPending: number;
  publishTimeoutMs: number;
  jaegerUrl: string | undefined;
  registry: FlowRegistry;
  /** Tenants whose keys also see dead letters that belong to no tenant (poison without a flow). */
  operatorTenants: string[];
  /** OpenTelemetry: whether to start the SDK (OTEL_* variables). */
  telemetry: TelemetryConfig;
  /** S3 and DynamoDB clients, bucket and table (standard AWS variables, JETFLOW_S3_BUCKET, JETFLOW_FLOWS_TABLE). */
  storage: StorageConfig;
  /** An input JSON larger than this goes to S3 and the flow carries its reference; 0 = off (JETFLOW_CLAIM_CHECK_BYTES). */
  claimCheckBytes: number;
  /** Task instances one flow may make, a mapped task's chunks each counting (JETFLOW_MAX_TASKS_PER_FLOW); more is refused at submission. */
  maxTasksPerFlow: number;
  /** `dynamodb`: GET /v1/flows?status=<final> and GET /v1/flows/{id} of an expired flow read the DynamoDB history (JETFLOW_HISTORY). */
  history: 'dynamodb' | 'off';
  /** Per tenant: submissions per second (per replica) and flows in flight (JETFLOW_TENANT_LIMITS). */
  tenantLimits: TenantLimits;
  /** What one client may hold: timeouts, the connection limit, bounds on live streams. */
  limits: ClientLimits;
}

/** Bounds on abusive or broken clients, so they cannot hold the doors (README, "Configuration"). */
export interface ClientLimits {
  /** A request's headers must arrive within this (JETFLOW_HTTP_HEADERS_TIMEOUT_MS). */
  headersTimeoutMs: number;
  /** A whole request, body included, must arrive within this, else 408 and the connection closes (JETFLOW_HTTP_REQUEST_TIMEOUT_MS). */
  requestTimeoutMs: number;
  /** A connection with no traffic either way for this long is closed (JETFLOW_HTTP_IDLE_TIMEOUT_MS). */
  idleTimeoutMs: number;
  /** Open HTTP connections at most; more are closed at once (JETFLOW_HTTP_MAX_CONNECTIONS). */
  maxConnections: number;
  /** An SSE or WatchFlow client that has not taken what was sent for this long is dropped (JETFLOW_STREAM_STALL_MS). */
  streamStallMs: number;
  /** A stream following one flow that had no event for this long is ended; watching again resumes (JETFLOW_WATCH_IDLE_MS). */
  watchIdleMs: number;
  /** A gRPC connection without calls for this long is closed (JETFLOW_GRPC_IDLE_MS). */
  grpcIdleMs: number;
}

/** JETFLOW_HTTP_* / JETFLOW_STREAM_* / JETFLOW_WATCH_* / JETFLOW_GRPC_IDLE_MS, in milliseconds. */
export function clientLimits(env: Env): ClientLimits {
  const ms = (name: string, def: number, max = 3_600_000) => int(env, name, def, { min: 100, max });
  const limits: ClientLimits = {
    headersTimeoutMs: ms('JETFLOW_HTTP_HEADERS_TIMEOUT_MS', 10_000),
    requestTimeoutMs: ms('JETFLOW_HTTP_REQUEST_TIMEOUT_MS', 30_000),
    idleTimeoutMs: ms('JETFLOW_HTTP_IDLE_TIMEOUT_MS', 60_000),
    maxConnections: int(env, 'JETFLOW_HTTP_MAX_CONNECTIONS', 4_096, { min: 1, max: 1_000_000 }),
    streamStallMs: ms('JETFLOW_STREAM_STALL_MS', 30_000),
    watchIdleMs: ms('JETFLOW_WATCH_IDLE_MS', 900_000, 86_400_000),
    grpcIdleMs: ms('JETFLOW_GRPC_IDLE_MS', 300_000, 86_400_000),
  };
  // Node refuses a headers timeout above the request timeout: say so by name instead.
  if (limits.headersTimeoutMs > limits.requestTimeoutMs) {
    throw new ConfigError('JETFLOW_HTTP_HEADERS_TIMEOUT_MS', `must be <= JETFLOW_HTTP_REQUEST_TIMEOUT_MS (${limits.requestTimeoutMs}), got ${limits.headersTimeoutMs}`);
  }
  return limits;
}

export const sha256hex = (s: string) => createHash('sha256').update(s).digest('hex');

/**
 * What a key may see. `tenant`: its tenant's flows, events and dead letters. `operator`: the same, plus the
 * system-wide views (consumers and streams, task routes), which show every tenant's load.
 */
export type ApiKeyRole = 'tenant' | 'operator';

export interface ApiKeyIdentity {
  tenant: string;
  role: ApiKeyRole;
}

/** One JETFLOW_API_KEYS entry: the key itself is known only when it is not given as `sha256:<hex>`. */
export interface ApiKeyEntry extends ApiKeyIdentity {
  /** sha256 of the key, hex, lower case. */
  hash: string;
  key: string | undefined;
}

/**
 * JETFLOW_API_KEYS as `tenant:key` pairs; a key is either the key (16+ characters) or `sha256:<64 hex>`,
 * and `tenant:operator:<key>` makes it an operator key (a prefix like `sha256:`, so the tenant stays the
 * first field for everything else that reads the list).
 */
export function apiKeyEntries(env: Env): ApiKeyEntry[] {
  const seen = new Map<string, string>();
  return pairs(env, 'JETFLOW_API_KEYS').map(([tenant, value]) => {
    const operator = /^operator:/i.test(value);
    const role: ApiKeyRole = operator ? 'operator' : 'tenant';
    const key = operator ? value.slice('operator:'.length) : value;
    const what = `the ${operator ? 'operator ' : ''}key for tenant "${tenant}"`;
    let entry: ApiKeyEntry;
    if (/^sha256:/i.test(key)) {
      const m = /^sha256:([0-9a-f]{64})$/i.exec(key);
      if (!m) throw new ConfigError('JETFLOW_API_KEYS', `${what} starts with "sha256:" but is not followed by 64 hex digits`);
      entry = { tenant, role, hash: m[1]!.toLowerCase(), key: undefined };
    } else {
      if (key.length < 16) throw new ConfigError('JETFLOW_API_KEYS', `${what} is shorter than 16 characters`);
      entry = { tenant, role, hash: sha256hex(key), key };
    }
    const other = seen.get(entry.hash);
    if (other !== undefined) throw new ConfigError('JETFLOW_API_KEYS', `tenants "${other}" and "${tenant}" have the same key; a key names one tenant`);
    seen.set(entry.hash, tenant);
    return entry;
  });
}

/** A worker API key: the worker's name and the task subject patterns it may serve. */
export interface WorkerKeyIdentity {
  name: string;
  patterns: string[];
}

/** A task subject pattern: jetflow.task.… with `*` tokens or a final `>`. */
const PATTERN_TOKEN = /^([a-z0-9_-]+|\*|>)$/;
const NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;

function isTaskSubjectPattern(p: string): boolean {
  const tokens = p.split('.');
  return p.startsWith('jetflow.task.') && tokens.every((t) => PATTERN_TOKEN.test(t)) && !tokens.slice(0, -1).includes('>');
}

/** JETFLOW_WORKER_KEYS entries: `<name>:<pattern>[|<pattern>…]:<key>` (the key may be `sha256:<64 hex>`). */
export function parseWorkerKeys(raw: string | undefined, fail: (message: string) => never): Map<string, WorkerKeyIdentity> {
  const out = new Map<string, WorkerKeyIdentity>();
  for (const item of (raw ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const i = item.indexOf(':');
    const j = i < 0 ? -1 : item.indexOf(':', i + 1);
    if (i <= 0 || j < 0 || j === item.length - 1) fail(`expected "<name>:<subject pattern>[|<pattern>…]:<key>" entries, got "${item.split(':').slice(0, 2).join(':')}:…"`);
    const name = item.slice(0, i);
    const patterns = item.slice(i + 1, j).split('|');
    const key = item.slice(j + 1);
    if (!NAME.test(name)) fail(`invalid worker name "${name}" (lowercase letters, digits, - and _, at most 63)`);
    for (const p of patterns) if (!isTaskSubjectPattern(p)) fail(`worker "${name}": "${p}" is not a task subject pattern (jetflow.task.… with * or a final >)`);
    let hash: string;
    if (/^sha256:/i.test(key)) {
      const m = /^sha256:([0-9a-f]{64})$/i.exec(key);
      if (!m) fail(`the key of worker "${name}" starts with "sha256:" but is not followed by 64 hex digits`);
      hash = m[1]!.toLowerCase();
    } else {
      if (key.length < 16) fail(`the key of worker "${name}" is shorter than 16 characters`);
      hash = sha256hex(key);
    }
    const other = out.get(hash);
    if (other) fail(`workers "${other.name}" and "${name}" have the same key`);
    out.set(hash, { name, patterns });
  }
  return out;
}

/** JETFLOW_WORKER_KEYS: `<name>:<subject pattern>[|<pattern>…]:<key>` entries; no key may also be an API key. */
export function workerKeys(env: Env, apiKeys: ReadonlyMap<string, unknown> = new Map()): Map<string, WorkerKeyIdentity> {
  const fail = (message: string): never => {
    throw new ConfigError('JETFLOW_WORKER_KEYS', message);
  };
  const keys = parseWorkerKeys(env.JETFLOW_WORKER_KEYS, fail);
  for (const [hash, w] of keys) if (apiKeys.has(hash)) fail(`the key of worker "${w.name}" is also an API key in JETFLOW_API_KEYS; a key has one role`);
  return keys;
}

const HOSTNAME_RE = /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i;

/** JETFLOW_HOST: the address the HTTP and gRPC doors listen on (an IP, IPv6 with or without brackets, or a host name). */
export function listenHost(env: Env, def = '0.0.0.0'): string {
  const raw = str(env, 'JETFLOW_HOST', def);
  const host = raw.startsWith('[') && raw.endsWith(']') ? raw.slice(1, -1) : raw;
  if (isIP(host) || HOSTNAME_RE.test(host)) return host;
  throw new ConfigError('JETFLOW_HOST', `expected an address to listen on, such as 127.0.0.1 (this machine only), 0.0.0.0 (every interface), an interface's IP or a host name; got "${raw}"`);
}

export function loadConfig(env: Env = process.env): Readonly<IngestConfig> {
  const auth = str(env, 'JETFLOW_AUTH', 'enabled');
  if (auth !== 'enabled' && auth !== 'disabled') throw new ConfigError('JETFLOW_AUTH', `expected "enabled" or "disabled", got "${auth}"`);
  const keys = new Map(apiKeyEntries(env).map((e): [string, ApiKeyIdentity] => [e.hash, { tenant: e.tenant, role: e.role }]));
  if (auth === 'enabled' && keys.size === 0) throw new ConfigError('JETFLOW_API_KEYS', 'no API keys configured; set tenant:key pairs, or JETFLOW_AUTH=disabled for a trusted network');
  const allow = list(env, 'JETFLOW_CALLBACK_ALLOWLIST');
  const bad = CallbackPolicy.validateEntries(allow);
  if (bad) throw new ConfigError('JETFLOW_CALLBACK_ALLOWLIST', bad);
  return Object.freeze({
    natsServers: natsServers(env),
    natsAuth: natsAuth(env, 'ingest'),
    httpPort: int(env, 'JETFLOW_HTTP_PORT', 8080, { min: 0, max: 65_535 }),
    grpcPort: int(env, 'JETFLOW_GRPC_PORT', 50051, { min: 0, max: 65_535 }),
    host: listenHost(env),
    partitions: int(env, 'JETFLOW_PARTITIONS', DEFAULT_PARTITIONS, { min: 1, max: 256 }),
    replicas: replicas(env),
    logLevel: str(env, 'LOG_LEVEL', 'info'),
    authDisabled: auth === 'disabled',
    apiKeys: keys,
    workerKeys: workerKeys(env, keys),
    callbackAllowlist: allow,
    maxBodyBytes: int(env, 'JETFLOW_MAX_BODY_BYTES', 4 * 1024 * 1024, { min: 1024, max: 64 * 1024 * 1024 }),
    maxPending: int(env, 'JETFLOW_MAX_PENDING', 5_000, { min: 1, max: 1_000_000 }),
    publishTimeoutMs: int(env, 'JETFLOW_PUBLISH_TIMEOUT_MS', 5_000, { min: 100, max: 120_000 }),
    jaegerUrl: optStr(env, 'JETFLOW_JAEGER_UI_URL'),
    registry: loadFlowRegistry(env),
    operatorTenants: list(env, 'JETFLOW_OPERATOR_TENANTS'),
    telemetry: telemetryConfig(env),
    storage: storageConfigFromEnv(env),
    claimCheckBytes: claimCheckBytes(env),
    maxTasksPerFlow: int(env, 'JETFLOW_MAX_TASKS_PER_FLOW', DEFAULT_MAX_TASKS_PER_FLOW, { min: 1, max: 1_000_000 }),
    history: historyMode(env),
    tenantLimits: tenantLimits(env),
    limits: clientLimits(env),
  });
}
