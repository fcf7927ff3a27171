import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type NatsConnection } from 'nats';
import { Stack, waitForHttp, type ServiceName } from '../../stack/src/index.js';
import { startLocalAws, type LocalAws } from '../../storage/src/index.js';
import { freePort, startNatsServer, type NatsServerHandle } from './nats-server.js';

export const TEST_API_KEY = 'test-key-0123456789abcdef';
export const TEST_SECRET = 'test-callback-secret';

export interface JetflowUnderTest {
  nats: NatsServerHandle;
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
}

/** Starts a real nats-server and the four services as processes, on free ports. */
export async function startJetflow(o: StartOptions = {}): Promise<JetflowUnderTest> {
  const nats = await startNatsServer();
  const aws = o.aws === false ? undefined : await startLocalAws();
  const httpPort = await freePort();
  const grpcPort = await freePort();
  const logDir = mkdtempSync(join(tmpdir(), 'jetflow-logs-'));
  const env: Record<string, string> = {
    NATS_URL: nats.url,
    JETFLOW_HTTP_PORT: String(httpPort),
    JETFLOW_GRPC_PORT: String(grpcPort),
    JETFLOW_HOST: '127.0.0.1',
    JETFLOW_API_KEYS: `default:${TEST_API_KEY},other:other-key-0123456789abcdef`,
    JETFLOW_CALLBACK_SECRETS: `default:${TEST_SECRET},other:other-secret`,
    JETFLOW_CALLBACK_ALLOWLIST: '127.0.0.0/8,::1,localhost',
    JETFLOW_METRICS_PORT: '0',
    LOG_LEVEL: 'info',
    ...(aws?.env ?? {}),
    ...(o.awsEnv ?? {}),
    ...(o.env ?? {}),
  };
  const stack = new Stack({ env, replicas: o.replicas ?? {}, serviceEnv: o.serviceEnv ?? {}, restartOnExit: o.restartOnExit ?? false, logDir }).start();
  const http = `http://127.0.0.1:${httpPort}`;
  await waitForHttp(`${http}/readyz`, 30_000);
  const nc = await connect({ servers: [nats.url], maxReconnectAttempts: -1, reconnectTimeWait: 200 });
  await waitForConsumers(nc);
  return {
    nats,
    stack,
    nc,
    http,
    grpc: `127.0.0.1:${grpcPort}`,
    apiKey: TEST_API_KEY,
    secret: TEST_SECRET,
    logDir,
    env,
    aws,
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
      await nats.stop();
      await aws?.stop();
    },
  };
}

/** Waits until every service has provisioned and bound its consumers (workers and orchestrator pulling). */
export async function waitForConsumers(nc: NatsConnection, timeoutMs = 30_000): Promise<void> {
  const jsm = await nc.jetstreamManager();
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      const infos = await jsm.consumers.list('JETFLOW_TASKS').next();
      const res = await jsm.consumers.list('JETFLOW_RESULTS').next();
      const ing = await jsm.consumers.info('JETFLOW_INGEST', 'orchestrator-ingest');
      const pulling = (c: { num_waiting: number }) => c.num_waiting > 0;
      if (infos.length >= 6 && infos.every(pulling) && res.length > 0 && res.every(pulling) && pulling(ing)) return;
    } catch {
      // not provisioned yet
    }
    if (Date.now() > until) throw new Error('services did not start pulling in time');
    await new Promise((r) => setTimeout(r, 100));
  }
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
