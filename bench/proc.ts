import { readdirSync, readFileSync } from 'node:fs';

/** Linux clock ticks per second for /proc/<pid>/stat utime/stime (CLK_TCK, 100 on every mainstream kernel). */
const CLK_TCK = 100;

/** CPU time (user + system, all threads) of a process in ms, from /proc/<pid>/stat; undefined when gone. */
export function cpuMs(pid: number): number | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm may contain spaces and parentheses: the fields we want follow the last ')'.
    const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
    const utime = Number(rest[11]);
    const stime = Number(rest[12]);
    return ((utime + stime) * 1000) / CLK_TCK;
  } catch {
    return undefined;
  }
}

/** Resident set size and its high-water mark, in MB, from /proc/<pid>/status. */
export function memMb(pid: number): { rss: number; hwm: number } | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? 0);
    return { rss: kb('VmRSS') / 1024, hwm: kb('VmHWM') / 1024 };
  } catch {
    return undefined;
  }
}

/**
 * Proportional set size in MB (/proc/<pid>/smaps_rollup): resident pages, each shared page divided by
 * the number of processes mapping it. Four Node services share ~43 MB of the node binary's pages, which
 * plain RSS counts four times; PSS counts them once across the four, so it sums to what they really use.
 */
export function pssMb(pid: number): number | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    const kb = /^Pss:\s+(\d+) kB/m.exec(s)?.[1];
    return kb === undefined ? undefined : Number(kb) / 1024;
  } catch {
    return undefined;
  }
}

/** This process's CPU in ms (higher resolution than /proc ticks). */
export function selfCpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/** Finds the pid of a running process whose command line contains every needle (e.g. the nats-server store dir). */
export function findPid(...needles: string[]): number | undefined {
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (needles.every((n) => cmd.includes(n))) return Number(d);
    } catch {
      // gone
    }
  }
  return undefined;
}

export interface Tracked {
  name: string;
  pid: number;
  /** Peak VmRSS seen by the sampler since the last reset, MB. */
  peakRss: number;
  /** Peak PSS seen by the sampler since the last reset, MB. */
  peakPss?: number;
}

/** Samples RSS of the tracked processes on an interval, keeping the peak per process. */
export class RssSampler {
  private timer: NodeJS.Timeout | undefined;
  private n = 0;
  constructor(readonly procs: Tracked[]) {}
  sample() {
    for (const p of this.procs) {
      const m = memMb(p.pid);
      if (m && m.rss > p.peakRss) p.peakRss = m.rss;
      // smaps_rollup walks the process's page tables (about a millisecond for a busy service, under its
      // mmap lock): once a second is enough for a peak and keeps the sampler out of the measurement.
      if (this.n % 5 === 0) {
        const pss = pssMb(p.pid);
        if (pss !== undefined && pss > (p.peakPss ?? 0)) p.peakPss = pss;
      }
    }
    this.n++;
  }
  start(everyMs = 200) {
    this.sample();
    this.timer = setInterval(() => this.sample(), everyMs);
    this.timer.unref();
  }
  reset() {
    for (const p of this.procs) {
      p.peakRss = 0;
      p.peakPss = 0;
    }
    this.sample();
  }
  stop() {
    clearInterval(this.timer);
  }
}

export function cpuSnapshot(procs: Array<{ name: string; pid: number }>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const p of procs) out[p.name] = cpuMs(p.pid) ?? Number.NaN;
  out.driver = selfCpuMs();
  return out;
}
