import { setTimeout as sleep } from 'node:timers/promises';
import { performance } from 'node:perf_hooks';
import { cpuMs, selfCpuMs } from '../proc.js';

/** A process whose CPU is measured; `system: false` ones (the driver, the local AWS stand-ins) are listed apart. */
export interface CpuProc {
  name: string;
  /** The live pid (a restarted service has a new one). */
  pid: () => number | undefined;
  system: boolean;
}

export interface CpuSample {
  at: number;
  /** CPU ms (utime + stime, all threads, /proc/<pid>/stat) per process; `driver` is this process. */
  ms: Record<string, number>;
}

export function sampleCpu(procs: CpuProc[]): CpuSample {
  const ms: Record<string, number> = {};
  for (const p of procs) {
    const pid = p.pid();
    ms[p.name] = pid ? (cpuMs(pid) ?? Number.NaN) : Number.NaN;
  }
  ms.driver = selfCpuMs();
  return { at: performance.now(), ms };
}

export interface CpuDelta {
  wallMs: number;
  /** CPU ms per process over the interval. */
  ms: Record<string, number>;
  /** Sum over the system processes (nats-server and the services). */
  systemMs: number;
}

export function cpuDelta(procs: CpuProc[], a: CpuSample, b: CpuSample): CpuDelta {
  const ms: Record<string, number> = {};
  let systemMs = 0;
  for (const k of Object.keys(b.ms)) {
    const d = b.ms[k]! - (a.ms[k] ?? Number.NaN);
    ms[k] = d;
    if (procs.find((p) => p.name === k)?.system && Number.isFinite(d)) systemMs += d;
  }
  return { wallMs: b.at - a.at, ms, systemMs };
}

/** nats-server's counters that an idle stack moves: messages in and out (/varz) and JetStream API requests (/jsz). */
export interface ServerCounts {
  msgs: number;
  api: number;
}

/** Reads ServerCounts from a nats-server monitoring endpoint (http://host:port). */
export async function serverCounts(monitor: string): Promise<ServerCounts> {
  const varz = (await (await fetch(`${monitor}/varz`)).json()) as { in_msgs: number; out_msgs: number };
  const jsz = (await (await fetch(`${monitor}/jsz`)).json()) as { api?: { total?: number } };
  return { msgs: varz.in_msgs + varz.out_msgs, api: jsz.api?.total ?? Number.NaN };
}

/**
 * CPU of each process as % of one core over `seconds` of doing nothing (timers, heartbeats, pulls), and with
 * a monitoring endpoint what nats-server handled meanwhile (messages and JetStream API requests per second).
 */
export async function idleCpu(procs: CpuProc[], seconds: number, monitor?: string): Promise<{ pct: Record<string, number>; systemPct: number; msgsPerSec?: number; apiPerSec?: number }> {
  const ca = monitor ? await serverCounts(monitor) : undefined;
  const a = sampleCpu(procs);
  await sleep(seconds * 1000);
  const d = cpuDelta(procs, a, sampleCpu(procs));
  const cb = monitor ? await serverCounts(monitor) : undefined;
  const pct: Record<string, number> = {};
  for (const [k, v] of Object.entries(d.ms)) pct[k] = round((v / d.wallMs) * 100, 2);
  const perSec = (x: number) => round(x / (d.wallMs / 1000), 1);
  return {
    pct,
    systemPct: round((d.systemMs / d.wallMs) * 100, 2),
    ...(ca && cb ? { msgsPerSec: perSec(cb.msgs - ca.msgs), apiPerSec: perSec(cb.api - ca.api) } : {}),
  };
}

export const round = (x: number, d: number) => (Number.isFinite(x) ? Math.round(x * 10 ** d) / 10 ** d : x);
