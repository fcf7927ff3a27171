import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type NatsConnection } from 'nats';
import { Stack, waitForHttp, type ServiceName } from '@jetflow/stack';
import { startLocalAws, type LocalAws } from '@jetflow/storage';
import { freePort, startNatsServer, type NatsServerHandle } from './nats-server.js';
import { testNatsAuth, type TestNatsAuth } from './nats-auth.js';
import { knownSubjects } from '@jetflow/flows';

const BUILT_IN_SUBJECTS = new Set(knownSubjects(true));

export const TEST_API_KEY = 'test-key-0123456789abcdef';
export const TEST_SECRET = 'test-callback-secret';

export interface JetflowUnderTest {
  /** The nats-server the harness started; undefined when the test brought its own (`natsUrls`). */
  nats: NatsServerHandle | undefined;
  /** The servers the services and `nc` connect to (NATS_URL, comma-joined). */
  natsUrls: string[];
  stack: Stack;
  nc: NatsConnection;
  http: string;
  grpc: string;
  apiKey: string;
  secret: string;
  logDir: string;
  env: Record<string, string>;
  /** The local S3 and DynamoDB the services use (unless started with `aws: false`). */
  aws: LocalAws | undefined;
  /** NATS identities when started with `auth`: every service runs as its role; `nc` is the test superuser. */
  natsAuth: TestNatsAuth | undefined;
  /** fetch against the ingest HTTP API with the test key. */
  api(path: string, init?: RequestInit & { json?: unknown }): Promise<Response>;
  stop(): Promise<void>;
}

export interface StartOptions {
  replicas?: Partial<Record<ServiceName, number>>;
  env?: Record<string, string>;
  serviceEnv?: Partial<Record<ServiceName, Record<string, string>>>;
  restartOnExit?: boolean;
  /** Extra environment to start the local AWS servers with (set by storage-aware tests). */
  awsEnv?: Record<string, string>;
  /**
   * Start local S3 and DynamoDB (s3rver + dynalite, in this process, in milliseconds) and point the
   * services at them. Default true: real task mode keeps datasets in S3 and history in DynamoDB.
   */
  aws?: boolean;
  /**
   * An already-running NATS (e.g. `startNatsCluster().urls`) instead of a nats-server of the stack's
   * own; the test starts and stops it.
   */
  natsUrls?: string[];
  /**
   * NATS with identities and permissions (libs/security): nats-server runs the derived configuration,
   * every service connects with its role's credentials, anonymous connections are refused. With
   * `natsUrls`, pass the TestNatsAuth that server was started with. Default: on when the harness
   * starts the server (JETFLOW_TEST_NATS_AUTH=0 turns it off), off with `natsUrls`.
   */
  auth?: boolean | TestNatsAuth;
}

/** Whether suites run NATS with identities when they do not say: yes, unless JETFLOW_TEST_NATS_AUTH=0. */
export function testAuthDefault(): boolean {
  return process.env.JETFLOW_TEST_NATS_AUTH !== '0';
}

/** The test NATS identities for a stack started with these options (the environment it will have). */
export function natsAuthFor(o: StartOptions): TestNatsAuth {
  return testNatsAuth({ JETFLOW_API_KEYS: DEFAULT_API_KEYS, ...o.env }, o.serviceEnv ?? {});
}

// Like the local stack: the test key is an operator key of tenant default; `other` is a plain tenant.
const DEFAULT_API_KEYS = `default:operator:${TEST_API_KEY},other:other-key-0123456789abcdef`;
const ROLES = { ingest: 'ingest', orchestrator: 'orchestrator', 'dataset-generator': 'dataset-generator', analyst: 'analyst' } as const satisfies Record<ServiceName, string>;

/** Starts a real nats-server (unless given `natsUrls`) and the four services as processes, on free ports. */
export async function startJetflow(o: StartOptions = {}): Promise<JetflowUnderTest> {
  // The switch applies to servers the harness starts; a server the test brought decides for itself.
  const wantAuth = o.auth ?? (!o.natsUrls && testAuthDefault());
  if (wantAuth === true && o.natsUrls) throw new Error('startJetflow: with natsUrls, pass the TestNatsAuth the server was started with as `auth`');
  const natsAuth = wantAuth === true ? natsAuthFor(o) : wantAuth || undefined;
  const nats = o.natsUrls ? undefined : await startNatsServer(natsAuth ? { config: natsAuth.config, connect: natsAuth.options('admin') } : {});
  const natsUrls = o.natsUrls ?? [nats!.url];
  const aws = o.aws === false ? undefined : await startLocalAws();
  const httpPort = await freePort();
  const grpcPort = await freePort();
  const logDir = mkdtempSync(join(tmpdir(), 'jetflow-logs-'));
  const env: Record<string, string> = {
    NATS_URL: natsUrls.join(','),
    JETFLOW_HTTP_PORT: String(httpPort),
    JETFLOW_GRPC_PORT: String(grpcPort),
    JETFLOW_HOST: '127.0.0.1',
    JETFLOW_API_KEYS: DEFAULT_API_KEYS,
    JETFLOW_CALLBACK_SECRETS: `default:${TEST_SECRET},other:other-secret`,
    JETFLOW_CALLBACK_ALLOWLIST: '127.0.0.0/8,::1,localhost',
    JETFLOW_METRICS_PORT: '0',
    LOG_LEVEL: 'info',
    ...(aws?.env ?? {}),
    ...(o.awsEnv ?? {}),
    ...(o.env ?? {}),
  };
  const serviceEnv = natsAuth ? withIdentities(o.serviceEnv ?? {}, natsAuth) : (o.serviceEnv ?? {});
  const stack = new Stack({ env, replicas: o.replicas ?? {}, serviceEnv, restartOnExit: o.restartOnExit ?? false, logDir }).start();
  const http = `http://127.0.0.1:${httpPort}`;
  let nc: NatsConnection | undefined;
  try {
    await waitForHttp(`${http}/readyz`, 60_000);
    nc = await connect({ servers: natsUrls, maxReconnectAttempts: -1, reconnectTimeWait: 200, ...natsAuth?.options('admin') });
    await waitForConsumers(nc, 60_000);
  } catch (err) {
    // Say why, with what each service printed, then leave nothing running behind a failed start.
    const report = startFailureReport(stack, logDir);
    await nc?.close().catch(() => undefined);
    await stack.stop().catch(() => undefined);
    await nats?.stop().catch(() => undefined);
    await aws?.stop().catch(() => undefined);
    throw new Error(`${(err as Error).message}\n${report}`, { cause: err });
  }
  return {
    nats,
    natsUrls,
    stack,
    nc,
    http,
    grpc: `127.0.0.1:${grpcPort}`,
    apiKey: TEST_API_KEY,
    secret: TEST_SECRET,
    logDir,
    env,
    aws,
    natsAuth,
    api(path, init = {}) {
      const headers: Record<string, string> = { authorization: `Bearer ${TEST_API_KEY}`, ...((init.headers as Record<string, string>) ?? {}) };
      let body = init.body;
      if (init.json !== undefined) {
        headers['content-type'] = 'application/json';
        body = JSON.stringify(init.json);
      }
      return fetch(`${http}${path}`, { ...init, headers, body: body ?? null });
    },
    async stop() {
      await nc.close().catch(() => undefined);
      await stack.stop();
      await nats?.stop();
      await aws?.stop();
    },
  };
}

/** Each service's environment plus its role's NATS identity (the test's own serviceEnv wins). */
function withIdentities(serviceEnv: Partial<Record<ServiceName, Record<string, string>>>, auth: TestNatsAuth): Partial<Record<ServiceName, Record<string, string>>> {
  const out: Partial<Record<ServiceName, Record<string, string>>> = {};
  for (const [name, role] of Object.entries(ROLES) as Array<[ServiceName, (typeof ROLES)[ServiceName]]>) out[name] = { ...auth.env(role), ...serviceEnv[name] };
  return out;
}

/**
 * Waits until every service has provisioned and bound its consumers: each task consumer a built-in worker serves, each results
 * partition and each per-tenant ingest consumer (at least one) has been seen with a waiting pull request at least once. (Pull loops
 * renew their requests, so "all of them at the same instant" is a race, not a readiness signal.)
 */
export async function waitForConsumers(nc: NatsConnection, timeoutMs = 30_000, o: { pausedSubjects?: string[] } = {}): Promise<void> {
  // No API check at creation: right after a broker restart the connection may still be reconnecting; the loop retries.
  const jsm = await nc.jetstreamManager({ checkAPI: false });
  const until = Date.now() + timeoutMs;
  const seen = new Set<string>();
  let known: string[] = [];
  for (;;) {
    try {
      // A custom subject's consumer waits for an outside worker (@jetflow/worker): only the built-in workers' count.
      // A paused subject's workers ask for nothing (its pause flag in jetflow_pauses): the caller names those.
      const counted = (subject: string) => BUILT_IN_SUBJECTS.has(subject) && !o.pausedSubjects?.includes(subject);
      const tasks = (await jsm.consumers.list('JETFLOW_TASKS').next()).filter((c) => counted(c.config.filter_subject ?? ''));
      const results = await jsm.consumers.list('JETFLOW_RESULTS').next();
      const ingest = (await jsm.consumers.list('JETFLOW_INGEST').next()).filter((c) => c.config.durable_name);
      const all = [...tasks, ...results, ...ingest];
      known = all.map((c) => `${c.stream_name}/${c.name}`);
      for (const c of all) if (c.num_waiting > 0) seen.add(`${c.stream_name}/${c.name}`);
      if (tasks.length >= 6 && results.length > 0 && ingest.length > 0 && known.every((k) => seen.has(k))) return;
    } catch {
      // not provisioned yet
    }
    if (Date.now() > until) {
      const missing = known.filter((k) => !seen.has(k));
      throw new Error(`services did not start pulling within ${timeoutMs} ms; never pulled: ${missing.join(', ') || '(consumers not provisioned)'}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Which services exited, and the last lines each one printed: the message of a failed start. */
function startFailureReport(stack: Stack, logDir: string): string {
  const parts: string[] = [];
  for (const p of stack.procs) {
    const state = p.proc.exitCode !== null || p.proc.signalCode !== null ? `exited (${p.proc.exitCode ?? p.proc.signalCode})` : 'running';
    let tail = '';
    try {
      tail = readFileSync(join(logDir, `${p.name}-${p.index}.log`), 'utf8')
        .split('\n')
        .slice(-15)
        .join('\n');
    } catch {
      tail = '(no log)';
    }
    parts.push(`--- ${p.name}#${p.index}: ${state}\n${tail}`);
  }
  return parts.join('\n');
}

/** A small valid insights submission. */
export function sampleSubmission(callbackUrl: string, extra: Record<string, unknown> = {}) {
  return {
    flow: 'insights',
    input: {
      records: [
        { id: 'r1', text: 'Delivery was late and the box was damaged', fields: { rating: 2, amount: 35.5 } },
        { id: 'r2', text: 'Great product, fast shipping, very happy', fields: { rating: 5, amount: 20 } },
        { id: 'r3', text: 'The support team solved my problem quickly', fields: { rating: 4, amount: 12 } },
      ],
    },
    callbackUrl,
    metadata: { source: 'test' },
    ...extra,
  };
}
