import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { connect } from 'nats';
import { Stack, repoRoot, waitForHttp } from '../libs/stack/src/index.js';
import { startLocalAws } from '../libs/storage/src/index.js';

export interface LocalConfig {
  apiKey: string;
  callbackSecret: string;
  url: string;
  grpc: string;
  natsUrl: string;
}

const log = (msg: string) => process.stderr.write(`[jetflow] ${msg}\n`);

async function natsAnswers(url: string): Promise<boolean> {
  try {
    const nc = await connect({ servers: url.split(',').map((s) => s.trim()), timeout: 1_500, reconnect: false });
    try {
      await (await nc.jetstreamManager({ timeout: 1_500 })).getAccountInfo();
      return true;
    } finally {
      await nc.close();
    }
  } catch {
    return false;
  }
}

function which(bin: string): string | undefined {
  const r = spawnSync('sh', ['-c', `command -v ${bin}`], { encoding: 'utf8' });
  const p = r.stdout.trim();
  if (p) return p;
  for (const c of [`/usr/sbin/${bin}`, `/usr/local/bin/${bin}`, `/usr/bin/${bin}`]) if (existsSync(c)) return c;
  return undefined;
}

/** Finds nats-server on PATH, or installs Debian's package when this is a Debian/Ubuntu machine and we may. */
export function ensureNatsServerBinary(): string {
  const found = which('nats-server');
  if (found) return found;
  const isRoot = process.getuid?.() === 0;
  if (which('apt-get') && (isRoot || which('sudo'))) {
    log('nats-server not found; installing Debian package nats-server');
    const pre = isRoot ? [] : ['sudo'];
    const run = (args: string[]) => execFileSync(pre.length ? 'sudo' : args[0]!, pre.length ? args : args.slice(1), { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    run(['apt-get', 'update', '-q']);
    run(['apt-get', 'install', '-y', '-q', 'nats-server']);
    const p = which('nats-server');
    if (p) return p;
  }
  throw new Error(
    'nats-server is not installed and could not be installed automatically. Install NATS server 2.9 or newer with JetStream ' +
      '(Debian/Ubuntu: "sudo apt-get install nats-server"; macOS: "brew install nats-server"; or a binary from the NATS releases page), ' +
      'or point NATS_URL at a running server with JetStream enabled.',
  );
}

function loadOrCreateConfig(dir: string, httpPort: number, grpcPort: number, natsUrl: string): LocalConfig {
  const file = join(dir, 'local.json');
  let prev: Partial<LocalConfig> = {};
  if (existsSync(file)) {
    try {
      prev = JSON.parse(readFileSync(file, 'utf8')) as Partial<LocalConfig>;
    } catch {
      prev = {};
    }
  }
  const cfg: LocalConfig = {
    apiKey: prev.apiKey ?? `jf_${randomBytes(18).toString('base64url')}`,
    callbackSecret: prev.callbackSecret ?? randomBytes(24).toString('hex'),
    url: `http://127.0.0.1:${httpPort}`,
    grpc: `127.0.0.1:${grpcPort}`,
    natsUrl,
  };
  writeFileSync(file, JSON.stringify(cfg, null, 2), { mode: 0o600 });
  return cfg;
}

/**
 * The whole stack on one machine: NATS (NATS_URL if it answers, else a local nats-server with
 * JetStream), local S3- and DynamoDB-compatible servers, and the four services, restarted if they die.
 */
export async function runLocalStack(opts: { httpPort?: number; grpcPort?: number; taskMode?: 'real' | 'noop' } = {}): Promise<void> {
  const root = repoRoot();
  const dir = join(root, '.jetflow');
  mkdirSync(dir, { recursive: true });
  const httpPort = opts.httpPort ?? Number(process.env.JETFLOW_HTTP_PORT || 8080);
  const grpcPort = opts.grpcPort ?? Number(process.env.JETFLOW_GRPC_PORT || 50051);

  let natsUrl = process.env.NATS_URL || 'nats://127.0.0.1:4222';
  let natsProc: ChildProcess | undefined;
  if (await natsAnswers(natsUrl)) {
    log(`using NATS at ${natsUrl}`);
  } else {
    const bin = ensureNatsServerBinary();
    const port = process.env.NATS_URL ? Number(new URL(natsUrl.split(',')[0]!).port || 4222) : 4222;
    mkdirSync(join(dir, 'nats'), { recursive: true });
    natsUrl = `nats://127.0.0.1:${port}`;
    log(`starting ${bin} with JetStream on ${natsUrl} (store ${join(dir, 'nats')})`);
    natsProc = spawn(bin, ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', join(dir, 'nats')], { stdio: ['ignore', 'ignore', 'inherit'] });
    for (let i = 0; i < 100 && !(await natsAnswers(natsUrl)); i++) await sleep(100);
    if (!(await natsAnswers(natsUrl))) throw new Error(`nats-server did not start on ${natsUrl}`);
  }

  const aws = await startLocalAws({ dir: join(dir, 'aws') });
  log(`local S3 at ${aws.s3Endpoint}, DynamoDB at ${aws.dynamoEndpoint}`);
  const cfg = loadOrCreateConfig(dir, httpPort, grpcPort, natsUrl);
  const env: Record<string, string> = {
    ...aws.env,
    NATS_URL: natsUrl,
    JETFLOW_HTTP_PORT: String(httpPort),
    JETFLOW_GRPC_PORT: String(grpcPort),
    JETFLOW_API_KEYS: `default:${cfg.apiKey}`,
    JETFLOW_CALLBACK_SECRETS: `default:${cfg.callbackSecret}`,
    JETFLOW_CALLBACK_ALLOWLIST: process.env.JETFLOW_CALLBACK_ALLOWLIST || '127.0.0.0/8,::1,localhost',
    JETFLOW_TASK_MODE: opts.taskMode ?? process.env.JETFLOW_TASK_MODE ?? 'real',
    LOG_LEVEL: process.env.LOG_LEVEL || 'info',
  };
  const logDir = join(dir, 'logs');
  const stack = new Stack({
    env,
    restartOnExit: true,
    logDir,
    serviceEnv: { ingest: { JETFLOW_METRICS_PORT: '0' }, orchestrator: { JETFLOW_METRICS_PORT: '9464' }, 'dataset-generator': { JETFLOW_METRICS_PORT: '9465' }, analyst: { JETFLOW_METRICS_PORT: '9466' } },
    onExit: (p, code, signal) => {
      if (!stopping) log(`${p.name} exited (${signal ?? code}); restarting — see ${join(logDir, `${p.name}-${p.index}.log`)}`);
    },
  }).start();
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    log('stopping…');
    await stack.stop();
    await aws.stop();
    if (natsProc) {
      natsProc.kill('SIGTERM');
      await new Promise((r) => natsProc!.once('exit', r));
    }
    log('stopped');
    process.exit(0);
  };
  process.on('SIGINT', () => void stop());
  process.on('SIGTERM', () => void stop());
  await waitForHttp(`${cfg.url}/readyz`, 60_000);
  process.stdout.write(
    [
      '',
      'Jetflow is running.',
      `  HTTP     ${cfg.url}   (dashboard ${cfg.url}/ui, API docs ${cfg.url}/docs)`,
      `  gRPC     ${cfg.grpc}   (jetflow.v1.IngestService, reflection on)`,
      `  NATS     ${natsUrl}   (publish to jetflow.ingest.default.insights)`,
      `  API key  ${cfg.apiKey}   (tenant "default"; saved in .jetflow/local.json for the CLI)`,
      `  Logs     ${logDir}`,
      '',
      'Submit a flow:',
      `  curl -s -X POST ${cfg.url}/v1/flows -H "Authorization: Bearer ${cfg.apiKey}" -H 'Content-Type: application/json' \\`,
      `    -d '{"flow":"insights","input":{"records":[{"id":"r1","text":"Delivery was late and the box was damaged","fields":{"rating":2,"amount":35.5}}]}}'`,
      '',
      'Ctrl-C stops everything.',
      '',
    ].join('\n'),
  );
  await new Promise(() => undefined);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  runLocalStack().catch((err: Error) => {
    log(err.message);
    process.exit(1);
  });
}
