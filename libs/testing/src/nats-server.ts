import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect } from 'nats';

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
}

export function natsServerBinary(): string {
  return process.env.NATS_SERVER_BIN || 'nats-server';
}

/** Starts a real nats-server with JetStream on a free port and a temporary store. */
export async function startNatsServer(opts: NatsServerOptions = {}): Promise<NatsServerHandle> {
  const port = opts.port ?? (await freePort());
  const storeDir = await mkdtemp(join(tmpdir(), 'jetflow-nats-'));
  let proc: ChildProcess | undefined;

  const launch = async () => {
    const p = spawn(natsServerBinary(), ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', storeDir, ...(opts.args ?? [])], {
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
        const nc = await connect({ servers: [url], reconnect: false, timeout: 500 });
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
      await launch();
    },
    async stop() {
      proc?.kill('SIGTERM');
      await waitExit();
      await rm(storeDir, { recursive: true, force: true });
    },
  };
}
