import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { connect, type ConnectionOptions } from 'nats';
import { int, pairs, type Env, natsAuth } from '@jetflow/config';
import { authOptions } from '@jetflow/messaging';
import { natsSecurity, secretEnv, securityInputFromEnv, type NatsSecurity } from '@jetflow/security';
import { SERVICES, Stack, repoRoot, waitForHttp, type ServiceName } from '@jetflow/stack';
import { startLocalAws } from '@jetflow/storage';
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
  /**
   * The NATS door of `tenant`: its own identity on the local nats-server, which may publish to
   * `jetflow.ingest.<tenant>.>` only. Just the url when the stack uses an outside server (NATS_URL).
   */
  nats: { url: string; user?: string; password?: string };
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

/** Undefined when the server answers with JetStream, else why not (e.g. "Authorization Violation"). */
async function natsRefusal(url: string, o: Partial<ConnectionOptions> = {}): Promise<string | undefined> {
  try {
    const nc = await connect({ servers: url.split(',').map((s) => s.trim()), timeout: 1_500, reconnect: false, ...o });
    try {
      await (await nc.jetstreamManager({ timeout: 1_500 })).getAccountInfo();
      return undefined;
    } finally {
      await nc.close();
    }
  } catch (err) {
    return (err as Error).message;
  }
}

function canBind(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen(port, host, () => srv.close(() => resolve(true)));
  });
}

/** `port`, or the next one up that is free on `host` (a nats-server of another project may hold 4222). */
export async function freePortFrom(port: number, host = '127.0.0.1', tries = 100): Promise<number> {
  for (let p = port; p < Math.min(port + tries, 65_536); p++) if (await canBind(p, host)) return p;
  throw new Error(`no free port on ${host} from ${port} to ${Math.min(port + tries, 65_536) - 1}`);
}

/** The files the local nats-server keeps under the local directory. */
export const localNatsFiles = (dir: string) => ({
  /** user → password of every identity, kept across restarts (0600): restarting rotates nothing. */
  credentials: join(dir, 'nats-credentials.json'),
  /** The rendered nats-server configuration (bcrypt hashes only; 0600). */
  config: join(dir, 'nats-server.conf'),
  pid: join(dir, 'nats-server.pid'),
  store: join(dir, 'nats'),
});

function writePrivate(file: string, text: string) {
  writeFileSync(file, text, { mode: 0o600 });
  // The mode of writeFileSync applies only to a new file.
  chmodSync(file, 0o600);
}

function readKept(file: string): Record<string, string> {
  if (!existsSync(file)) return {};
  try {
    const users = (JSON.parse(readFileSync(file, 'utf8')) as { users?: unknown }).users;
    if (!users || typeof users !== 'object') return {};
    return Object.fromEntries(Object.entries(users).filter((e): e is [string, string] => typeof e[1] === 'string'));
  } catch {
    return {};
  }
}

/**
 * The local stack's NATS identities, from libs/security with the services' environment (partitions, flow
 * definitions, the tenants of JETFLOW_API_KEYS, task subjects): a password each, generated at the first
 * start and kept in `credentials` (0600) so a restart rotates nothing.
 */
export function localNatsSecurity(env: Env, credentialsFile: string): NatsSecurity {
  const keep = readKept(credentialsFile);
  let sec: NatsSecurity;
  try {
    sec = natsSecurity(securityInputFromEnv(env), { keep });
  } catch (err) {
    throw new Error(`${credentialsFile}: ${(err as Error).message} (delete the file to generate new NATS passwords)`, { cause: err });
  }
  writePrivate(credentialsFile, `${JSON.stringify({ users: Object.fromEntries(sec.secrets.map((x) => [x.user, x.password])) }, null, 2)}\n`);
  return sec;
}

/** The nats-server configuration of the local stack: the derived accounts and users, loopback only. */
export function localNatsConfig(sec: NatsSecurity, o: { port: number; monitorPort: number; storeDir: string; pidFile: string; logFile: string }): Record<string, unknown> {
  return {
    server_name: 'jetflow-local',
    host: '127.0.0.1',
    port: o.port,
    // The monitoring endpoints are not authenticated: this machine only.
    http: `127.0.0.1:${o.monitorPort}`,
    jetstream: { store_dir: o.storeDir },
    pid_file: o.pidFile,
    log_file: o.logFile,
    ...sec.config,
  };
}

/** A nats-server an earlier run left behind (its supervisor was killed): stopped, so the store has one owner. */
async function stopLeftover(pidFile: string, configFile: string): Promise<void> {
  if (!existsSync(pidFile)) return;
  const pid = Number(readFileSync(pidFile, 'utf8').trim());
  if (!Number.isInteger(pid) || pid <= 1) return;
  let cmdline = '';
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return;
  }
  // Only our own: a nats-server started with this configuration file.
  if (!cmdline.includes('nats-server') || !cmdline.includes(configFile)) return;
  log(`stopping the nats-server an earlier run left running (pid ${pid})`);
  process.kill(pid, 'SIGTERM');
  for (let i = 0; i < 100 && existsSync(`/proc/${pid}`); i++) await sleep(100);
}

interface LocalNats {
  url: string;
  monitor: string;
  sec: NatsSecurity;
  stop(): Promise<void>;
}

/**
 * The local stack's own nats-server: the configuration libs/security renders (no anonymous user), on
 * JETFLOW_NATS_PORT (default 4222, or the next free port), monitoring on loopback, store and logs under
 * the local directory. Restarted if it dies.
 */
async function startLocalNats(env: Env, dir: string, logDir: string): Promise<LocalNats> {
  const files = localNatsFiles(dir);
  const wantPort = int(env, 'JETFLOW_NATS_PORT', 4222, { min: 1, max: 65_535 });
  const wantMonitor = int(env, 'JETFLOW_NATS_MONITOR_PORT', 8222, { min: 1, max: 65_535 });
  const bin = ensureNatsServerBinary();
  const sec = localNatsSecurity(env, files.credentials);
  await stopLeftover(files.pid, files.config);
  const port = await freePortFrom(wantPort);
  let monitorPort = await freePortFrom(wantMonitor);
  if (monitorPort === port) monitorPort = await freePortFrom(port + 1);
  if (port !== wantPort) log(`port ${wantPort} is taken (JETFLOW_NATS_PORT); the local nats-server uses ${port}`);
  mkdirSync(files.store, { recursive: true });
  mkdirSync(logDir, { recursive: true });
  const logFile = join(logDir, 'nats-server.log');
  writePrivate(files.config, `${JSON.stringify(localNatsConfig(sec, { port, monitorPort, storeDir: files.store, pidFile: files.pid, logFile }), null, 2)}\n`);
  const url = `nats://127.0.0.1:${port}`;
  const probe = { ...authOptions(natsAuth(secretEnv(sec.secretFor('operator')), 'operator')) };
  log(`starting ${bin} with JetStream and Jetflow's identities on ${url} (store ${files.store}, log ${logFile})`);
  let proc: ChildProcess | undefined;
  let stopping = false;
  const spawnIt = () => {
    const p = spawn(bin, ['-c', files.config], { stdio: ['ignore', 'ignore', 'inherit'] });
    proc = p;
    p.once('exit', (code, signal) => {
      if (stopping || proc !== p) return;
      log(`nats-server exited (${signal ?? code}); restarting — see ${logFile}`);
      setTimeout(() => {
        if (!stopping) spawnIt();
      }, 1_000);
    });
  };
  spawnIt();
  let why: string | undefined = 'not started';
  for (let i = 0; i < 150 && (why = await natsRefusal(url, probe)); i++) {
    if (proc?.exitCode !== null && proc?.exitCode !== undefined) break;
    await sleep(100);
  }
  if (why) {
    stopping = true;
    proc?.kill('SIGTERM');
    throw new Error(`nats-server did not start on ${url} (${why}); see ${logFile}`);
  }
  return {
    url,
    monitor: `http://127.0.0.1:${monitorPort}`,
    sec,
    async stop() {
      stopping = true;
      const p = proc;
      if (!p || p.exitCode !== null || p.signalCode !== null) return;
      p.kill('SIGTERM');
      await new Promise((r) => p.once('exit', r));
    },
  };
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
 * The whole stack on one machine: NATS (a nats-server of its own with Jetflow's identities, or the
 * outside server at NATS_URL when that is set), local S3- and DynamoDB-compatible servers, and the four
 * services, restarted if they die.
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

  const logDir = join(dir, 'logs');
  const outside = process.env.NATS_URL?.trim();
  let natsUrl: string;
  let own: LocalNats | undefined;
  // Each service's NATS identity (own server), or nothing: with NATS_URL they read NATS_USER etc. themselves.
  const identity: Partial<Record<ServiceName, Record<string, string>>> = {};
  if (outside) {
    natsUrl = outside;
    // The services' own NATS_USER / NATS_PASSWORD / NATS_TOKEN / NATS_CREDS, if given, prove who they are.
    const probeAuth = natsAuth(process.env, 'local-stack');
    const probe = { ...authOptions(probeAuth), ...(process.env.NATS_INBOX_PREFIX?.trim() ? {} : { inboxPrefix: '_INBOX' }) };
    let why = await natsRefusal(natsUrl, probe);
    for (let i = 0; why && i < 50; i++) {
      await sleep(200);
      why = await natsRefusal(natsUrl, probe);
    }
    if (why) throw new Error(`NATS_URL=${natsUrl} does not answer with JetStream (${why}); unset NATS_URL to run a nats-server of the stack's own`);
    log(
      `using the NATS server at ${natsUrl} (NATS_URL)${probeAuth.credentials ? ` as ${probeAuth.credentials.kind === 'user' ? `user "${probeAuth.credentials.user}"` : probeAuth.credentials.kind}` : ', anonymously'}`,
    );
  } else {
    // What the services will be told (keys' tenants, flows, partitions, task subjects) decides the identities.
    own = await startLocalNats({ ...process.env, JETFLOW_API_KEYS: access.apiKeys }, dir, logDir);
    natsUrl = own.url;
    for (const name of SERVICES) identity[name] = { ...secretEnv(own.sec.secretFor(name)), NATS_TOKEN: '', NATS_CREDS: '' };
  }
  const door = own?.sec.secretFor(`tenant:${access.tenant}`);

  const aws = await startLocalAws({ dir: join(dir, 'aws') });
  log(`local S3 at ${aws.s3Endpoint}, DynamoDB at ${aws.dynamoEndpoint}`);
  const cfg: LocalConfig = {
    tenant: access.tenant,
    ...(access.apiKey ? { apiKey: access.apiKey } : {}),
    ...(access.callbackSecret ? { callbackSecret: access.callbackSecret } : {}),
    url: `http://${connectHost(host)}:${httpPort}`,
    grpc: `${connectHost(host)}:${grpcPort}`,
    natsUrl,
    nats: { url: natsUrl, ...(door ? { user: door.user, password: door.password } : {}) },
  };
  writePrivate(file, JSON.stringify(cfg, null, 2));
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
  const stack = new Stack({
    env,
    restartOnExit: true,
    logDir,
    serviceEnv: {
      ingest: { JETFLOW_METRICS_PORT: '0', ...identity.ingest },
      orchestrator: { JETFLOW_METRICS_PORT: '9464', ...identity.orchestrator },
      'dataset-generator': { JETFLOW_METRICS_PORT: '9465', ...identity['dataset-generator'] },
      analyst: { JETFLOW_METRICS_PORT: '9466', ...identity.analyst },
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
    await own?.stop();
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
      ...natsBanner(cfg, file, own?.monitor),
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

/** The NATS lines of the start banner: where, and how the tenant publishes to its NATS door. */
function natsBanner(cfg: LocalConfig, file: string, monitor: string | undefined): string[] {
  if (!cfg.nats.user) return [`  NATS     ${cfg.natsUrl}   (NATS_URL; the NATS door is jetflow.ingest.${cfg.tenant}.<flow>)`];
  const subject = `jetflow.ingest.${cfg.tenant}.insights`;
  return [
    `  NATS     ${cfg.natsUrl}   (its own nats-server, anonymous connections refused; monitoring ${monitor} on this machine)`,
    `  NATS door  publish to jetflow.ingest.${cfg.tenant}.<flow> as user "${cfg.nats.user}", password in ${file} ("nats"); the reply is the PubAck:`,
    `    nats req -s ${cfg.natsUrl} --user ${cfg.nats.user} --password "$(node -p "require('${file}').nats.password")" -H Nats-Msg-Id:order-1 \\`,
    `      ${subject} '{"flow":"insights","input":{"records":[{"id":"r1","text":"Great product","fields":{"rating":5}}]}}'`,
    `    (nats.js: connect({ servers: "${cfg.natsUrl}", user, pass: password }), then jetstream().publish("${subject}", body, { msgID }))`,
  ];
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  runLocalStack().catch((err: Error) => {
    log(err.message);
    process.exit(1);
  });
}
