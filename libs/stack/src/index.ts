import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, type WriteStream } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

export const SERVICES = ['ingest', 'orchestrator', 'dataset-generator', 'analyst'] as const;
export type ServiceName = (typeof SERVICES)[number];

/** The repository root, found from this file in both libs/stack/src and libs/stack/dist. */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'services'))) return dir;
    dir = dirname(dir);
  }
  throw new Error('cannot find the jetflow repository root');
}

/** How to run a service: the compiled JS when built, else TypeScript through tsx. */
export function serviceCommand(name: ServiceName, root = repoRoot()): { cmd: string; args: string[] } {
  const js = join(root, 'dist', 'services', name, 'src', 'main.js');
  // Children stop when the supervisor dies without stopping them (see parent-watch.mjs).
  const watch = ['--import', pathToFileURL(join(root, 'libs', 'stack', 'parent-watch.mjs')).href];
  if (existsSync(js) && process.env.JETFLOW_RUN_TS !== '1') return { cmd: process.execPath, args: [...watch, js] };
  return { cmd: process.execPath, args: [...watch, '--import', 'tsx', join(root, 'services', name, 'src', 'main.ts')] };
}

export interface ServiceProc {
  name: ServiceName;
  index: number;
  proc: ChildProcess;
  restarts: number;
  exited: Promise<number | null>;
}

export interface StackOptions {
  /** Environment shared by every service (NATS_URL, keys, ports…). */
  env: Record<string, string>;
  replicas?: Partial<Record<ServiceName, number>>;
  /** Per-service extra environment. */
  serviceEnv?: Partial<Record<ServiceName, Record<string, string>>>;
  /** Restart a service whose process dies on its own (the local stack does; fault tests control it). */
  restartOnExit?: boolean;
  /** Write each service's output to <logDir>/<service>-<i>.log; else inherit stdio when `inherit`. */
  logDir?: string;
  inherit?: boolean;
  onExit?: (p: ServiceProc, code: number | null, signal: NodeJS.Signals | null) => void;
}

/**
 * Starts and supervises the four services as separate processes. Used by the local stack
 * (`jetflow start`), the end-to-end and fault tests, and the benchmark.
 */
export class Stack {
  readonly procs: ServiceProc[] = [];
  private stopping = false;
  private logs: WriteStream[] = [];

  constructor(private readonly o: StackOptions) {}

  start(): this {
    for (const name of SERVICES) {
      const n = this.o.replicas?.[name] ?? 1;
      for (let i = 0; i < n; i++) this.spawnOne(name, i, 0);
    }
    return this;
  }

  private spawnOne(name: ServiceName, index: number, restarts: number): ServiceProc {
    const { cmd, args } = serviceCommand(name);
    const env = { ...process.env, ...this.o.env, ...(this.o.serviceEnv?.[name] ?? {}), JETFLOW_INSTANCE_ID: `${name}-${index}`, JETFLOW_PARENT_PID: String(process.pid) };
    const proc = spawn(cmd, args, { env, stdio: this.o.inherit ? 'inherit' : ['ignore', 'pipe', 'pipe'] });
    if (this.o.logDir && !this.o.inherit) {
      mkdirSync(this.o.logDir, { recursive: true });
      const out = createWriteStream(resolve(this.o.logDir, `${name}-${index}.log`), { flags: 'a' });
      this.logs.push(out);
      proc.stdout?.pipe(out, { end: false });
      proc.stderr?.pipe(out, { end: false });
    } else if (!this.o.inherit) {
      proc.stdout?.resume();
      proc.stderr?.resume();
    }
    const sp: ServiceProc = {
      name,
      index,
      proc,
      restarts,
      exited: new Promise((r) => proc.once('exit', (code) => r(code))),
    };
    proc.once('exit', (code, signal) => {
      this.o.onExit?.(sp, code, signal);
      if (!this.stopping && this.o.restartOnExit && this.find(name, index) === sp) {
        // Back off a little so a crash loop does not spin.
        setTimeout(
          () => {
            if (!this.stopping && this.find(name, index) === sp) this.replace(sp, this.spawnOne(name, index, restarts + 1));
          },
          Math.min(5_000, 200 * 2 ** Math.min(restarts, 5)),
        );
      }
    });
    const at = this.procs.findIndex((p) => p.name === name && p.index === index);
    if (at < 0) this.procs.push(sp);
    return sp;
  }

  private replace(old: ServiceProc, next: ServiceProc) {
    const at = this.procs.indexOf(old);
    if (at >= 0) this.procs[at] = next;
  }

  find(name: ServiceName, index = 0): ServiceProc | undefined {
    return this.procs.find((p) => p.name === name && p.index === index);
  }

  /** Sends a signal (SIGKILL by default) and waits for the process to exit. */
  async kill(name: ServiceName, index = 0, signal: NodeJS.Signals = 'SIGKILL'): Promise<number | null> {
    const p = this.find(name, index);
    if (!p) throw new Error(`no ${name}#${index}`);
    if (p.proc.exitCode === null && p.proc.signalCode === null) p.proc.kill(signal);
    return p.exited;
  }

  /** Starts a fresh process for a service that was killed (for stacks without restartOnExit). */
  restart(name: ServiceName, index = 0): ServiceProc {
    const old = this.find(name, index);
    if (old && old.proc.exitCode === null && old.proc.signalCode === null) throw new Error(`${name}#${index} is still running`);
    const next = this.spawnOne(name, index, (old?.restarts ?? 0) + 1);
    if (old) this.replace(old, next);
    return next;
  }

  async stop(graceMs = 8_000): Promise<void> {
    this.stopping = true;
    await Promise.all(
      this.procs.map(async (p) => {
        if (p.proc.exitCode !== null || p.proc.signalCode !== null) return;
        p.proc.kill('SIGTERM');
        const t = setTimeout(() => p.proc.kill('SIGKILL'), graceMs);
        await p.exited;
        clearTimeout(t);
      }),
    );
    for (const l of this.logs) l.end();
  }
}

/** Waits until a URL answers 200. */
export async function waitForHttp(url: string, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      const r = await fetch(url, { signal: AbortSignal.timeout(1_000) });
      if (r.ok) return;
    } catch {
      // not up yet
    }
    if (Date.now() > until) throw new Error(`${url} did not answer within ${timeoutMs} ms`);
    await sleep(100);
  }
}
