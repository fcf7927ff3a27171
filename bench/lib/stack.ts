import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { connect, type NatsConnection } from 'nats';
import { Stack, SERVICES, repoRoot, waitForHttp, type ServiceName } from '@jetflow/stack';
import { freePort, startNatsServer, testNatsAuth, waitForConsumers, type NatsServerHandle, type TestNatsAuth } from '@jetflow/testing';
import { startAwsProcess, type AwsProcess } from '../local-aws.js';
import { findPid } from '../proc.js';
import type { History, TaskMode } from './options.js';
import { BENCH_FLOWS_FILE } from './doors.js';

export const TENANT = 'default';
export const API_KEY = 'bench-key-0123456789abcdef';
const API_KEYS = `${TENANT}:${API_KEY}`;

export interface BenchNats {
  server: NatsServerHandle;
  pid: number;
  version: string;
  /** Monitoring endpoint (/varz, /connz). */
  monitor: string;
  /** The driver's own connection: the harness's superuser with identities on, to read stream state and count KV reads. */
  nc: NatsConnection;
  /** The tenant's NATS identity (the NATS door submits as a tenant does). */
  tenantNc: NatsConnection;
  auth: TestNatsAuth | undefined;
  close(): Promise<void>;
}

/** A nats-server with monitoring, and with the identities libs/security derives for the bench's tenant unless `auth` is off. */
export async function startBenchNats(o: { auth: boolean; env?: Record<string, string> }): Promise<BenchNats> {
  const auth = o.auth ? testNatsAuth({ JETFLOW_API_KEYS: API_KEYS, ...o.env }) : undefined;
  const monitorPort = await freePort();
  const server = await startNatsServer({ args: ['-m', String(monitorPort)], ...(auth ? { config: auth.config, connect: auth.options('admin') } : {}) });
  try {
    const pid = server.pid ?? findPid('nats-server', server.storeDir);
    if (!pid) throw new Error('cannot find the nats-server process');
    const monitor = `http://127.0.0.1:${monitorPort}`;
    const varz = (await (await fetch(`${monitor}/varz`)).json()) as { version: string };
    const nc = await connect({ servers: [server.url], name: 'bench-driver', maxReconnectAttempts: -1, ...auth?.options('admin') });
    const tenantNc = auth ? await connect({ servers: [server.url], name: 'bench-tenant', maxReconnectAttempts: -1, ...auth.options(`tenant:${TENANT}`) }) : nc;
    return {
      server,
      pid,
      version: varz.version,
      monitor,
      nc,
      tenantNc,
      auth,
      async close() {
        if (tenantNc !== nc) await tenantNc.close().catch(() => undefined);
        await nc.close().catch(() => undefined);
        await server.stop();
      },
    };
  } catch (err) {
    await server.stop().catch(() => undefined);
    throw err;
  }
}

export interface ServicesOptions {
  mode: TaskMode;
  history: History;
  logLevel: string;
  logDir: string | undefined;
  cpuProfDir: string | undefined;
  /** The supervisor restarts a service that dies (the soak kills them). */
  restartOnExit?: boolean;
  onCrash?: (why: string) => void;
  log: (s: string) => void;
}

export interface BenchServices {
  stack: Stack;
  http: string;
  grpc: string;
  logDir: string;
  /** The local S3 + DynamoDB process (real mode, or history on), else undefined. */
  aws: AwsProcess | undefined;
  /** The live pid of a service (it changes when the supervisor restarts one). */
  pid(name: ServiceName): number | undefined;
  stop(): Promise<void>;
}

/**
 * The four services from dist/ through the Stack supervisor, each as its NATS role. History on starts a
 * local DynamoDB (and S3) in a process of its own, which turns the history on as in the local stack;
 * real mode needs the S3 either way, and history off then says JETFLOW_HISTORY=off.
 */
export async function startBenchServices(nats: BenchNats, o: ServicesOptions): Promise<BenchServices> {
  const httpPort = await freePort();
  const grpcPort = await freePort();
  const env: Record<string, string> = {
    NATS_URL: nats.server.url,
    JETFLOW_HTTP_PORT: String(httpPort),
    JETFLOW_GRPC_PORT: String(grpcPort),
    JETFLOW_HOST: '127.0.0.1',
    JETFLOW_API_KEYS: API_KEYS,
    JETFLOW_CALLBACK_SECRETS: `${TENANT}:bench-callback-secret`,
    JETFLOW_CALLBACK_ALLOWLIST: '127.0.0.0/8',
    JETFLOW_METRICS_PORT: '0',
    JETFLOW_TASK_MODE: o.mode,
    LOG_LEVEL: o.logLevel,
  };
  let aws: AwsProcess | undefined;
  if (o.mode === 'real' || o.history === 'on') {
    aws = await startAwsProcess();
    Object.assign(env, aws.env);
    o.log(`bench: local S3 + DynamoDB (pid ${aws.pid})`);
  }
  if (o.history === 'off') env.JETFLOW_HISTORY = 'off';
  // noop mode submits bench-stages (doors.ts benchFlow), defined beside the built-ins.
  if (o.mode === 'noop') env.JETFLOW_FLOWS_FILE = resolve(repoRoot(), BENCH_FLOWS_FILE);
  const tag = `${o.mode}-history-${o.history}`;
  if (o.cpuProfDir) {
    const dir = resolve(o.cpuProfDir, o.mode);
    mkdirSync(dir, { recursive: true });
    // node 20 refuses --cpu-prof in NODE_OPTIONS: a preload starts the profiler instead.
    env.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ''} --import ${pathToFileURL(join(repoRoot(), 'bench', 'cpu-prof-preload.mjs')).href}`.trim();
    env.JETFLOW_CPU_PROF_DIR = dir;
  }
  const logDir = o.logDir ? resolve(o.logDir, tag) : mkdtempSync(join(tmpdir(), `jetflow-bench-${tag}-`));
  const serviceEnv: Partial<Record<ServiceName, Record<string, string>>> = {};
  // Each service's role is named like the service.
  if (nats.auth) for (const name of SERVICES) serviceEnv[name] = nats.auth.env(name);
  let stopping = false;
  const stack = new Stack({
    env,
    serviceEnv,
    logDir,
    restartOnExit: o.restartOnExit ?? false,
    onExit: (p, code, signal) => {
      if (!stopping) o.onCrash?.(`${p.name} exited (${code ?? signal}) during the ${tag} run; logs in ${logDir}`);
    },
  });
  stack.start();
  const stop = async () => {
    stopping = true;
    await stack.stop(8_000);
    await aws?.stop();
  };
  try {
    const http = `http://127.0.0.1:${httpPort}`;
    await waitForHttp(`${http}/readyz`, 60_000);
    await waitForConsumers(nats.nc, 60_000);
    return { stack, http, grpc: `127.0.0.1:${grpcPort}`, logDir, aws, pid: (name) => stack.find(name)?.proc.pid, stop };
  } catch (err) {
    await stop().catch(() => undefined);
    throw new Error(`${(err as Error).message} (services' logs in ${logDir})`, { cause: err });
  }
}
