import { hostname } from 'node:os';
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

export interface OrchestratorConfig {
  natsServers: string[];
  /** NATS identity (NATS_CREDS, NATS_USER + NATS_PASSWORD or NATS_TOKEN) and inbox prefix (NATS_INBOX_PREFIX). */
  natsAuth: NatsAuth;
  instanceId: string;
  partitions: number;
  /** Copies of every stream and KV bucket (JETFLOW_REPLICAS). */
  replicas: number;
  logLevel: string;
  callbackSecrets: ReadonlyMap<string, string>;
  callbackAllowlist: string[];
  callbackTimeoutMs: number;
  callbackMaxAttempts: number;
  callbackBackoffInitialMs: number;
  callbackBackoffMaxMs: number;
  concurrency: number;
  maxRunningFlows: number;
  /** JETFLOW_PRIORITY_AGING_MS, JETFLOW_PRIORITY_LOOKAHEAD (admission.ts, "Priorities"). */
  priorityAgingMs: number;
  priorityLookahead: number;
  /** Per tenant: flows running at once across replicas, and the weight of its turns (JETFLOW_TENANT_LIMITS). */
  tenantLimits: TenantLimits;
  /**
   * Tenants whose ingest consumers are made at start: those JETFLOW_TENANT_LIMITS, JETFLOW_CALLBACK_SECRETS or
   * JETFLOW_API_KEYS (its tenant names only, when given) name. Others get theirs when their first submission waits.
   */
  tenants: string[];
  metricsPort: number;
  /** OpenTelemetry: whether to start the SDK (OTEL_* variables). */
  telemetry: TelemetryConfig;
  graceMs: number;
  registry: FlowRegistry;
  /** S3 and DynamoDB clients, bucket and table (standard AWS variables, JETFLOW_S3_BUCKET, JETFLOW_FLOWS_TABLE). */
  storage: StorageConfig;
  /** `dynamodb`: every finished flow is recorded in the flow table by the callback-job consumer (JETFLOW_HISTORY). */
  history: 'dynamodb' | 'off';
  /** A NATS-door submission whose input JSON is larger goes to S3 before the flow starts; 0 = off (JETFLOW_CLAIM_CHECK_BYTES). */
  claimCheckBytes: number;
  /** Task instances one flow may make, a mapped task's chunks each counting (JETFLOW_MAX_TASKS_PER_FLOW); the NATS door refuses more. */
  maxTasksPerFlow: number;
}

export function loadConfig(env: Env = process.env): Readonly<OrchestratorConfig> {
  const allow = list(env, 'JETFLOW_CALLBACK_ALLOWLIST');
  const bad = CallbackPolicy.validateEntries(allow);
  if (bad) throw new ConfigError('JETFLOW_CALLBACK_ALLOWLIST', bad);
  const limits = tenantLimits(env);
  return Object.freeze({
    natsServers: natsServers(env),
    natsAuth: natsAuth(env, 'orchestrator'),
    instanceId: optStr(env, 'JETFLOW_INSTANCE_ID') ?? `${hostname()}-${process.pid}`,
    partitions: int(env, 'JETFLOW_PARTITIONS', DEFAULT_PARTITIONS, { min: 1, max: 256 }),
    replicas: replicas(env),
    logLevel: str(env, 'LOG_LEVEL', 'info'),
    callbackSecrets: new Map(pairs(env, 'JETFLOW_CALLBACK_SECRETS')),
    callbackAllowlist: allow,
    callbackTimeoutMs: int(env, 'JETFLOW_CALLBACK_TIMEOUT_MS', 5_000, { min: 100, max: 120_000 }),
    callbackMaxAttempts: int(env, 'JETFLOW_CALLBACK_MAX_ATTEMPTS', 8, { min: 1, max: 100 }),
    callbackBackoffInitialMs: int(env, 'JETFLOW_CALLBACK_BACKOFF_MS', 500, { min: 1, max: 600_000 }),
    callbackBackoffMaxMs: int(env, 'JETFLOW_CALLBACK_BACKOFF_MAX_MS', 30_000, { min: 1, max: 3_600_000 }),
    concurrency: int(env, 'JETFLOW_ORCHESTRATOR_CONCURRENCY', 512, { min: 1, max: 100_000 }),
    maxRunningFlows: int(env, 'JETFLOW_MAX_RUNNING_FLOWS', 1_000, { min: 1, max: 1_000_000 }),
    // Priorities at admission (admission.ts): one level more per this long waited; how many a lane holds to pick from.
    priorityAgingMs: int(env, 'JETFLOW_PRIORITY_AGING_MS', 10_000, { min: 1, max: 3_600_000 }),
    priorityLookahead: int(env, 'JETFLOW_PRIORITY_LOOKAHEAD', 16, { min: 0, max: 64 }),
    tenantLimits: limits,
    tenants: [...new Set([...limits.tenants(), ...pairs(env, 'JETFLOW_CALLBACK_SECRETS').map(([t]) => t), ...pairs(env, 'JETFLOW_API_KEYS').map(([t]) => t)])],
    metricsPort: int(env, 'JETFLOW_METRICS_PORT', 9464, { min: 0, max: 65_535 }),
    telemetry: telemetryConfig(env),
    graceMs: int(env, 'JETFLOW_SHUTDOWN_GRACE_MS', 10_000, { min: 0, max: 600_000 }),
    registry: loadFlowRegistry(env),
    storage: storageConfigFromEnv(env),
    history: historyMode(env),
    claimCheckBytes: claimCheckBytes(env),
    maxTasksPerFlow: int(env, 'JETFLOW_MAX_TASKS_PER_FLOW', DEFAULT_MAX_TASKS_PER_FLOW, { min: 1, max: 1_000_000 }),
  });
}
