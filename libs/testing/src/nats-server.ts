import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, type ConnectionOptions } from 'nats';

// Ports already handed out by this process.
const handedOut = new Set<number>();

/**
 * A free TCP port on loopback for a server to bind later. Picked below the kernel's ephemeral range
 * (32768+ here), so no outgoing connection or listen(0) elsewhere can take it between this check and
 * the bind; never the same port twice in one process.
 */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = 10_000 + Math.floor(Math.random() * 22_000);
    if (handedOut.has(port) || !(await canBind(port))) continue;
    handedOut.add(port);
    return port;
  }
}

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

export interface NatsServerHandle {
  url: string;
  port: number;
  storeDir: string;
  /** The running server's process id. */
  readonly pid: number | undefined;
  /** kill -9 the server (the store stays, so restart() recovers it). */
  kill(): Promise<void>;
  /** Start again on the same port with the same store. */
  restart(): Promise<void>;
  /** Stop and delete the store. */
  stop(): Promise<void>;
}

export interface NatsServerOptions {
  port?: number;
  /** Extra arguments for nats-server. */
  args?: string[];
  /** A configuration file's content (nats-server reads JSON), e.g. accounts and users; the flags above still set port and store. */
  config?: Record<string, unknown>;
  /** How the readiness probe (and a cluster's leader lookups) connect: the credentials `config` asks for. */
  connect?: Partial<ConnectionOptions>;
}

/** Writes a server configuration to a temporary file; returns its nats-server arguments and the cleanup. */
async function configArgs(config: Record<string, unknown> | undefined): Promise<{ args: string[]; remove(): Promise<void> }> {
  if (!config) return { args: [], remove: async () => undefined };
  const dir = await mkdtemp(join(tmpdir(), 'jetflow-nats-conf-'));
  const file = join(dir, 'nats.conf');
  await writeFile(file, JSON.stringify(config, null, 2), { mode: 0o600 });
  return { args: ['-c', file], remove: () => rm(dir, { recursive: true, force: true }) };
}

export function natsServerBinary(): string {
  return process.env.NATS_SERVER_BIN || 'nats-server';
}

/** Starts a real nats-server with JetStream on a free port and a temporary store. */
export async function startNatsServer(opts: NatsServerOptions = {}): Promise<NatsServerHandle> {
  const port = opts.port ?? (await freePort());
  const storeDir = await mkdtemp(join(tmpdir(), 'jetflow-nats-'));
  const conf = await configArgs(opts.config);
  let proc: ChildProcess | undefined;

  const launch = async () => {
    const p = spawn(natsServerBinary(), [...conf.args, '-a', '127.0.0.1', '-p', String(port), '-js', '-sd', storeDir, ...(opts.args ?? [])], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    p.stderr?.on('data', (d: Buffer) => {
      if (stderr.length < 8192) stderr += d.toString();
    });
    proc = p;
    const url = `nats://127.0.0.1:${port}`;
    const until = Date.now() + 15_000;
    for (;;) {
      if (p.exitCode !== null) throw new Error(`nats-server exited with ${p.exitCode}: ${stderr}`);
      try {
        const nc = await connect({ servers: [url], reconnect: false, timeout: 500, ...opts.connect });
        const jsm = await nc.jetstreamManager({ timeout: 1000 });
        await jsm.getAccountInfo();
        await nc.close();
        return;
      } catch {
        if (Date.now() > until) throw new Error(`nats-server on ${url} did not become ready: ${stderr}`);
        await sleep(50);
      }
    }
  };

  const waitExit = async () => {
    const p = proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    await new Promise<void>((resolve) => p.once('exit', () => resolve()));
  };

  await launch();
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir,
    get pid() {
      return proc?.pid;
    },
    async kill() {
      proc?.kill('SIGKILL');
      await waitExit();
    },
    async restart() {
      // A restart of a running server kills it first (kill -9): launching beside it would leave the
      // old process serving the port, unknown to stop(), and the "restart" would restart nothing.
      if (proc && proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGKILL');
        await waitExit();
      }
      await launch();
    },
    async stop() {
      proc?.kill('SIGTERM');
      await waitExit();
      await rm(storeDir, { recursive: true, force: true });
      await conf.remove();
    },
  };
}

export interface NatsClusterNode {
  /** Server name (`-n`), what stream info's `cluster.leader` reports: n1, n2, n3… */
  readonly name: string;
  readonly url: string;
  readonly port: number;
  readonly clusterPort: number;
  readonly monitorPort: number;
  readonly storeDir: string;
  readonly pid: number | undefined;
  readonly running: boolean;
  /** Kill the node (default SIGKILL); its store stays, so restart() brings it back with its data. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /**
   * Start again on the same ports with the same store; resolves when the node is back in service:
   * it sees a JetStream meta leader and its /healthz says its streams and consumers have caught up
   * (what a readiness probe waits for before the next node may be disrupted).
   */
  restart(): Promise<void>;
}

export interface NatsClusterHandle {
  nodes: NatsClusterNode[];
  /** Every node's client URL (what the nats client and NATS_URL take, as an array or comma-joined). */
  urls: string[];
  node(name: string): NatsClusterNode;
  /** The node that leads a stream now (KV buckets are streams too: KV_<bucket>). */
  streamLeader(stream: string): Promise<NatsClusterNode>;
  /** Waits until every running node sees a JetStream meta leader. */
  waitForMetaLeader(timeoutMs?: number): Promise<void>;
  /** Stop every node and delete the stores. */
  stop(): Promise<void>;
}

interface Jsz {
  meta_cluster?: { leader?: string; cluster_size?: number };
}

async function jsz(monitorPort: number): Promise<Jsz | undefined> {
  try {
    const r = await fetch(`http://127.0.0.1:${monitorPort}/jsz`, { signal: AbortSignal.timeout(1_000) });
    return r.ok ? ((await r.json()) as Jsz) : undefined;
  } catch {
    return undefined;
  }
}

/** Waits until a node's /healthz answers 200: JetStream enabled, meta, streams and consumers current. */
async function waitHealthy(name: string, monitorPort: number, timeoutMs: number, dead: () => string | undefined): Promise<void> {
  const until = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    const why = dead();
    if (why) throw new Error(why);
    try {
      const r = await fetch(`http://127.0.0.1:${monitorPort}/healthz`, { signal: AbortSignal.timeout(2_000) });
      if (r.ok) return;
      last = await r.text();
    } catch (err) {
      last = (err as Error).message;
    }
    if (Date.now() > until) throw new Error(`nats-server ${name} not healthy within ${timeoutMs} ms: ${last}`);
    await sleep(200);
  }
}

/**
 * Starts a JetStream cluster of `size` nats-servers on loopback (three for the
 * failover tests): distinct client, route and monitoring ports, one temporary store each, routes to
 * every other node. Resolves once the cluster has elected its JetStream meta leader.
 */
export async function startNatsCluster(opts: { size?: number; args?: string[]; config?: Record<string, unknown>; connect?: Partial<ConnectionOptions> } = {}): Promise<NatsClusterHandle> {
  const size = opts.size ?? 3;
  const conf = await configArgs(opts.config);
  const clusterName = `jetflow-test-${process.pid}`;
  const specs: Array<{ name: string; port: number; clusterPort: number; monitorPort: number; storeDir: string }> = [];
  for (let i = 1; i <= size; i++) {
    specs.push({ name: `n${i}`, port: await freePort(), clusterPort: await freePort(), monitorPort: await freePort(), storeDir: await mkdtemp(join(tmpdir(), `jetflow-nats-n${i}-`)) });
  }
  const routes = specs.map((s) => `nats://127.0.0.1:${s.clusterPort}`);

  const waitMetaLeader = async (monitorPorts: () => number[], timeoutMs: number, alive: () => string | undefined) => {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const dead = alive();
      if (dead) throw new Error(dead);
      const all = await Promise.all(monitorPorts().map(jsz));
      if (all.length && all.every((j) => j?.meta_cluster?.leader)) return;
      if (Date.now() > until) throw new Error(`nats cluster: no JetStream meta leader within ${timeoutMs} ms (${JSON.stringify(all.map((j) => j?.meta_cluster ?? null))})`);
      await sleep(100);
    }
  };

  const nodes = specs.map((s) => {
    let proc: ChildProcess | undefined;
    let stderr = '';
    const spawnIt = () => {
      stderr = '';
      const args = [...conf.args, '-a', '127.0.0.1', '-p', String(s.port), '-m', String(s.monitorPort), '-n', s.name, '-js', '-sd', s.storeDir];
      args.push(
        '--cluster_name',
        clusterName,
        '--cluster',
        `nats://127.0.0.1:${s.clusterPort}`,
        '--routes',
        routes.filter((r) => !r.endsWith(`:${s.clusterPort}`)).join(','),
        ...(opts.args ?? []),
      );
      const p = spawn(natsServerBinary(), args, { stdio: ['ignore', 'ignore', 'pipe'] });
      p.stderr?.on('data', (d: Buffer) => {
        if (stderr.length < 8192) stderr += d.toString();
      });
      proc = p;
    };
    const exitedWhy = () => (proc && proc.exitCode !== null ? `nats-server ${s.name} exited with ${proc.exitCode}: ${stderr}` : undefined);
    const waitExit = async () => {
      const p = proc;
      if (!p || p.exitCode !== null || p.signalCode !== null) return;
      await new Promise<void>((resolve) => p.once('exit', () => resolve()));
    };
    const node: NatsClusterNode & { spawn(): void; exitedWhy(): string | undefined; stop(): Promise<void> } = {
      ...s,
      url: `nats://127.0.0.1:${s.port}`,
      get pid() {
        return proc?.pid;
      },
      get running() {
        return !!proc && proc.exitCode === null && proc.signalCode === null;
      },
      spawn: spawnIt,
      exitedWhy,
      async kill(signal: NodeJS.Signals = 'SIGKILL') {
        proc?.kill(signal);
        await waitExit();
      },
      async restart() {
        if (node.running) throw new Error(`nats-server ${s.name} is still running`);
        spawnIt();
        await waitMetaLeader(() => [s.monitorPort], 30_000, exitedWhy);
        await waitHealthy(s.name, s.monitorPort, 60_000, exitedWhy);
      },
      async stop() {
        proc?.kill('SIGTERM');
        await waitExit();
      },
    };
    return node;
  });

  const stop = async () => {
    await Promise.all(nodes.map((n) => n.stop()));
    await Promise.all(specs.map((s) => rm(s.storeDir, { recursive: true, force: true })));
    await conf.remove();
  };

  for (const n of nodes) n.spawn();
  try {
    await waitMetaLeader(
      () => nodes.map((n) => n.monitorPort),
      30_000,
      () => nodes.map((n) => n.exitedWhy()).find(Boolean),
    );
  } catch (err) {
    await stop();
    throw err;
  }

  const handle: NatsClusterHandle = {
    nodes,
    urls: nodes.map((n) => n.url),
    node(name) {
      const n = nodes.find((x) => x.name === name);
      if (!n) throw new Error(`no cluster node named ${name}`);
      return n;
    },
    async streamLeader(stream) {
      const nc = await connect({ servers: nodes.filter((n) => n.running).map((n) => n.url), timeout: 2_000, ...opts.connect });
      try {
        const jsm = await nc.jetstreamManager({ timeout: 5_000 });
        const until = Date.now() + 15_000;
        for (;;) {
          try {
            const leader = (await jsm.streams.info(stream)).cluster?.leader;
            if (leader) return handle.node(leader);
          } catch (err) {
            if (Date.now() > until) throw err;
          }
          if (Date.now() > until) throw new Error(`stream ${stream} has no leader`);
          await sleep(200);
        }
      } finally {
        await nc.close();
      }
    },
    waitForMetaLeader(timeoutMs = 30_000) {
      return waitMetaLeader(
        () => nodes.filter((n) => n.running).map((n) => n.monitorPort),
        timeoutMs,
        () => undefined,
      );
    },
    stop,
  };
  return handle;
}
