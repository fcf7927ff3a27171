import { availableParallelism, hostname } from 'node:os';
import { bool, int, list, natsAuth, natsServers, oneOf, optStr, replicas, str, type Env, type NatsAuth } from '@jetflow/config';
import { loadFlowRegistry, type FlowRegistry } from '@jetflow/flows';
import { telemetryConfig, type TelemetryConfig } from '@jetflow/telemetry';

/** Settings shared by the two task-worker services (each has its own config.ts calling this). */
export interface WorkerConfig {
  natsServers: string[];
  /** NATS identity (NATS_CREDS, NATS_USER + NATS_PASSWORD or NATS_TOKEN) and inbox prefix (NATS_INBOX_PREFIX, default `_INBOX.<service>`). */
  natsAuth: NatsAuth;
  instanceId: string;
  partitions: number;
  /** Copies of every stream and KV bucket (JETFLOW_REPLICAS). */
  replicas: number;
  logLevel: string;
  /** Which task subjects this process serves (NATS wildcard patterns). */
  subjects: string[];
  registry: FlowRegistry;
  /** Serve the fault-injection plugins (tests only). */
  testPlugins: boolean;
  /** Tasks a worker process runs at once, across all its task subjects (its slots; fetches never ask for more). */
  concurrency: number;
  /** Worker threads for CPU-heavy work. */
  threads: number;
  /** "noop" answers every task at once (to measure orchestration cost alone). */
  mode: 'real' | 'noop';
  graceMs: number;
  /** How often the worker renews its entry in the worker registry (JETFLOW_WORKER_ANNOUNCE_MS, default 3 s, 100 ms to 10 s). */
  announceIntervalMs: number;
  metricsPort: number;
  /** OpenTelemetry: whether to start the SDK (OTEL_* variables). */
  telemetry: TelemetryConfig;
}

export function loadWorkerConfig(env: Env, defaults: { subjects: string; service: string; metricsPort: number }): Readonly<WorkerConfig> {
  const threads = int(env, 'JETFLOW_WORKER_THREADS', Math.max(1, availableParallelism()), { min: 1, max: 256 });
  return Object.freeze({
    natsServers: natsServers(env),
    natsAuth: natsAuth(env, defaults.service),
    instanceId: optStr(env, 'JETFLOW_INSTANCE_ID') ?? `${defaults.service}-${hostname()}-${process.pid}`,
    partitions: int(env, 'JETFLOW_PARTITIONS', 8, { min: 1, max: 256 }),
    replicas: replicas(env),
    logLevel: str(env, 'LOG_LEVEL', 'info'),
    subjects: list(env, 'JETFLOW_TASK_SUBJECTS').length ? list(env, 'JETFLOW_TASK_SUBJECTS') : [defaults.subjects],
    registry: loadFlowRegistry(env),
    testPlugins: bool(env, 'JETFLOW_TEST_PLUGINS', false),
    // Noop tasks cost no CPU, so the only useful bound is the broker's. A real task needs a thread: one
    // slot per thread, so a worker holds only what it can start and no time limit runs while a task waits.
    concurrency: int(env, 'JETFLOW_WORKER_CONCURRENCY', oneOf(env, 'JETFLOW_TASK_MODE', ['real', 'noop'] as const, 'real') === 'noop' ? 256 : threads, { min: 1, max: 10_000 }),
    threads,
    mode: oneOf(env, 'JETFLOW_TASK_MODE', ['real', 'noop'] as const, 'real'),
    graceMs: int(env, 'JETFLOW_SHUTDOWN_GRACE_MS', 10_000, { min: 0, max: 600_000 }),
    announceIntervalMs: int(env, 'JETFLOW_WORKER_ANNOUNCE_MS', 3_000, { min: 100, max: 10_000 }),
    metricsPort: int(env, 'JETFLOW_METRICS_PORT', defaults.metricsPort, { min: 0, max: 65_535 }),
    telemetry: telemetryConfig(env),
  });
}
