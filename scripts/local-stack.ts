import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { connect } from 'nats';
import { int, pairs, type Env } from '../libs/config/src/index.js';
import { Stack, repoRoot, waitForHttp } from '../libs/stack/src/index.js';
import { startLocalAws } from '../libs/storage/src/index.js';
import { apiKeyEntries, listenHost } from '../services/ingest/src/config.js';

/** `.jetflow/local.json`: what the CLI reads to reach the local stack. */
export interface LocalConfig {
  /** The tenant whose key the CLI uses. */
  tenant: string;
  /** Absent when JETFLOW_API_KEYS gives that tenant's key only as a sha256 hash. */
  apiKey?: string;
  callbackSecret?: string;
  url: string;
  grpc: string;
  natsUrl: string;
}

/** The keys and secrets the services get, and the tenant, key and secret local.json gets. */
export interface LocalAccess {
  apiKeys: string;
  callbackSecrets: string;
  tenant: string;
  apiKey: string | undefined;
  /** That key is an operator key (it also reads the system-wide views). */
  operator: boolean;
  callbackSecret: string | undefined;
  /** Why local.json holds no key, when it holds none. */
  note: string | undefined;
}

/**
 * JETFLOW_API_KEYS and JETFLOW_CALLBACK_SECRETS when they are set (validated as the ingest service does),
 * else one generated operator key for tenant `default` (the dashboard's consumers page and `jetflow consumers`
 * need one) and one generated secret, kept across runs in local.json.
 * The CLI gets the first tenant whose key is given in clear: a `sha256:` entry cannot be turned back into a key.
 */
export function localAccess(env: Env, prev: Partial<LocalConfig> = {}): LocalAccess {
  const keys = apiKeyEntries(env);
  const secrets = pairs(env, 'JETFLOW_CALLBACK_SECRETS');
  let tenant = 'default';
  let apiKey: string | undefined;
  let apiKeys: string;
  let operator = true;
  let note: string | undefined;
  if (keys.length === 0) {
    apiKey = (prev.tenant ?? 'default') === 'default' && prev.apiKey ? prev.apiKey : `jf_${randomBytes(18).toString('base64url')}`;
    apiKeys = `default:operator:${apiKey}`;
  } else {
    apiKeys = env.JETFLOW_API_KEYS!.trim();
    const clear = keys.find((k) => k.key !== undefined);
    tenant = clear?.tenant ?? keys[0]!.tenant;
    apiKey = clear?.key;
    operator = clear?.role === 'operator';
    if (!clear) note = 'JETFLOW_API_KEYS gives every key as a sha256 hash, so local.json has no key for the CLI: pass it --api-key <key> or set JETFLOW_API_KEY';
  }
  let callbackSecrets: string;
  let callbackSecret: string | undefined;
  if (secrets.length > 0) {
    callbackSecrets = env.JETFLOW_CALLBACK_SECRETS!.trim();
    callbackSecret = secrets.find(([t]) => t === tenant)?.[1];
  } else {
    callbackSecret = prev.callbackSecret ?? randomBytes(24).toString('hex');
    const tenants = keys.length ? [...new Set(keys.map((k) => k.tenant))] : ['default'];
    callbackSecrets = tenants.map((t) => `${t}:${callbackSecret}`).join(',');
  }
  return { apiKeys, callbackSecrets, tenant, apiKey, operator, callbackSecret, note };
}

/** How a client on this machine reaches a listener bound to `host`. */
export function connectHost(host: string): string {
  if (host === '0.0.0.0') return '127.0.0.1';
  if (host === '::') return '[::1]';
  return host.includes(':') ? `[${host}]` : host;
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
    const run = (args: string[]) =>
      execFileSync(pre.length ? 'sudo' : args[0]!, pre.length ? args : args.slice(1), { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
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

function readPrevious(file: string): Partial<LocalConfig> {
  if (!existsSync(file)) return {};
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Partial<LocalConfig>;
  } catch {
    return {};
  }
}

/**
 * The whole stack on one machine: NATS (NATS_URL if it answers, else a local nats-server with
 * JetStream), local S3- and DynamoDB-compatible servers, and the four services, restarted if they die.
 */
export async function runLocalStack(opts: { httpPort?: number; grpcPort?: number; taskMode?: 'real' | 'noop' } = {}): Promise<void> {
  // Everything that can be wrong in the environment fails here, before anything starts.
  const httpPort = opts.httpPort ?? int(process.env, 'JETFLOW_HTTP_PORT', 8080, { min: 1, max: 65_535 });
  const grpcPort = opts.grpcPort ?? int(process.env, 'JETFLOW_GRPC_PORT', 50051, { min: 1, max: 65_535 });
  // This machine only, unless JETFLOW_HOST says otherwise: the local stack's keys are for a laptop.
  const host = listenHost(process.env, '127.0.0.1');
  const dir = process.env.JETFLOW_LOCAL_DIR?.trim() || join(repoRoot(), '.jetflow');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'local.json');
  const access = localAccess(process.env, readPrevious(file));

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
  const cfg: LocalConfig = {
    tenant: access.tenant,
    ...(access.apiKey ? { apiKey: access.apiKey } : {}),
    ...(access.callbackSecret ? { callbackSecret: access.callbackSecret } : {}),
    url: `http://${connectHost(host)}:${httpPort}`,
    grpc: `${connectHost(host)}:${grpcPort}`,
    natsUrl,
  };
  writeFileSync(file, JSON.stringify(cfg, null, 2), { mode: 0o600 });
  if (access.note) log(access.note);
  const env: Record<string, string> = {
    ...aws.env,
    NATS_URL: natsUrl,
    JETFLOW_HOST: host,
    JETFLOW_HTTP_PORT: String(httpPort),
    JETFLOW_GRPC_PORT: String(grpcPort),
    JETFLOW_API_KEYS: access.apiKeys,
    JETFLOW_CALLBACK_SECRETS: access.callbackSecrets,
    JETFLOW_CALLBACK_ALLOWLIST: process.env.JETFLOW_CALLBACK_ALLOWLIST || '127.0.0.0/8,::1,localhost',
    JETFLOW_TASK_MODE: opts.taskMode ?? process.env.JETFLOW_TASK_MODE ?? 'real',
    LOG_LEVEL: process.env.LOG_LEVEL || 'info',
  };
  const logDir = join(dir, 'logs');
  const stack = new Stack({
    env,
    restartOnExit: true,
    logDir,
    serviceEnv: {
      ingest: { JETFLOW_METRICS_PORT: '0' },
      orchestrator: { JETFLOW_METRICS_PORT: '9464' },
      'dataset-generator': { JETFLOW_METRICS_PORT: '9465' },
      analyst: { JETFLOW_METRICS_PORT: '9466' },
    },
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
      await new Promise((r) => natsProc.once('exit', r));
    }
    log('stopped');
    process.exit(0);
  };
  process.on('SIGINT', () => void stop());
  process.on('SIGTERM', () => void stop());
  await waitForHttp(`${cfg.url}/readyz`, 60_000);
  const tenants = [...new Set(access.apiKeys.split(',').map((p) => p.trim().split(':')[0]))];
  process.stdout.write(
    [
      '',
      'Jetflow is running.',
      `  HTTP     ${cfg.url}   (dashboard ${cfg.url}/ui, API docs ${cfg.url}/docs)`,
      `  gRPC     ${cfg.grpc}   (jetflow.v1.IngestService, reflection on)`,
      `  Listen   ${host}${host === '127.0.0.1' ? '   (this machine only; JETFLOW_HOST=0.0.0.0 opens HTTP and gRPC to the network)' : ''}`,
      `  NATS     ${natsUrl}   (publish to jetflow.ingest.${cfg.tenant}.insights)`,
      cfg.apiKey ? `  API key  ${cfg.apiKey}   (${access.operator ? 'operator key, ' : ''}tenant "${cfg.tenant}"; saved in ${file} for the CLI)` : `  API key  none saved: ${access.note}`,
      ...(tenants.length > 1 ? [`  Tenants  ${tenants.join(', ')}   (JETFLOW_API_KEYS)`] : []),
      `  Logs     ${logDir}`,
      '',
      'Submit a flow:',
      `  curl -s -X POST ${cfg.url}/v1/flows -H "Authorization: Bearer ${cfg.apiKey ?? '<your key>'}" -H 'Content-Type: application/json' \\`,
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
