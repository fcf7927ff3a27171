import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { NatsConnection } from 'nats';
import { deriveFlowId } from '@jetflow/flows';
import type { CeilingResult } from '../ceiling.js';
import type { RssSampler, Tracked } from '../proc.js';
import type { Arrival } from '../receiver.js';
import { fmt, percentiles, type Percentiles } from '../stats.js';
import { cpuDelta, round, sampleCpu, type CpuProc } from './cpu.js';
import type { Submitter } from './doors.js';
import type { BenchOptions, History, TaskMode } from './options.js';
import type { StepResult } from './results.js';
import { storeDelta, storeSnapshot } from './store.js';
import { TENANT } from './stack.js';

export interface FlowRec {
  step: number;
  /** Scheduled (open loop) or sent (closed loop) time, performance.now(). */
  t: number;
  accepted: boolean;
  refused?: string;
  first?: Arrival;
  count: number;
}

export interface StepCtx {
  o: BenchOptions;
  mode: TaskMode;
  history: History;
  nc: NatsConnection;
  monitor: string;
  flows: Map<string, FlowRec>;
  /** Callbacks (first arrivals) of any flow so far. */
  completions: { n: number };
  procs: CpuProc[];
  tracked: Tracked[];
  sampler: RssSampler;
  reads: { n: number };
  submitter: Submitter;
  setOnCompleted: (f: ((rec: FlowRec) => void) | undefined) => void;
  log: (s: string) => void;
  stopped: () => string | undefined;
  timeLeft: () => number;
  ceiling: CeilingResult | null;
  idleRss: Record<string, number>;
}

export interface StepSpec {
  kind: 'open' | 'saturation' | 'burst';
  /** Offered rate of an open step. */
  rate?: number;
  /** Seconds of an open or saturation step. */
  durationS: number;
  /** Flows of a burst. */
  flows?: number;
  /** Start at once, without waiting for earlier flows and without a drain (a burst, followed by its step). */
  noSettle?: boolean;
  noDrain?: boolean;
  /** Longest drain (s) instead of --drain. */
  drainS?: number;
  afterBurst?: boolean;
  step: number;
  label: string;
}

const SHORT: Record<string, string> = { 'nats-server': 'nats', ingest: 'ing', orchestrator: 'orch', 'dataset-generator': 'dsgen', analyst: 'anl', driver: 'drv', 'local-aws': 'aws' };
export const short = (k: string) => SHORT[k] ?? k;

/** One measured step: submit on a schedule (open) or keep a window in flight (saturation, burst), drain, measure. */
export interface Measured {
  /** Waits (bounded) until every accepted flow of the step has its callback: a burst's, after the step that followed it. */
  settle(maxMs: number): Promise<void>;
  /** The step's result from its flows as they are now. */
  finish(): StepResult;
}

export async function runStep(ctx: StepCtx, spec: StepSpec): Promise<Measured | undefined> {
  const { o } = ctx;
  const recs: FlowRec[] = [];
  let seq = 0;
  const tag = `${Date.now().toString(36)}-${spec.step < 0 ? 'w' : spec.step}`;
  let inflight = 0;
  let refill: (() => void) | undefined;
  const fire = (t: number) => {
    const rec: FlowRec = { step: spec.step, t, accepted: false, count: 0 };
    const key = `bench-${ctx.mode}-${ctx.submitter.door}-${tag}-${seq++}`;
    ctx.flows.set(deriveFlowId(TENANT, key), rec);
    recs.push(rec);
    inflight++;
    ctx.submitter.submit(key, (ok, why) => {
      if (ok) rec.accepted = true;
      else {
        rec.refused = why ?? 'refused';
        inflight--;
        refill?.();
      }
    });
  };

  // Progress: per second, what completed and how late.
  let lastLat: number[] = [];
  let done = 0;
  let doneInWindow = 0;
  const warmS = spec.kind === 'saturation' ? Math.min(2, spec.durationS / 4) : spec.kind === 'open' && spec.durationS >= 4 && !spec.afterBurst ? 1 : 0;
  let winFrom = Number.POSITIVE_INFINITY;
  let winTo = Number.POSITIVE_INFINITY;
  ctx.setOnCompleted((rec) => {
    if (rec.step !== spec.step) return;
    done++;
    const at = rec.first!.at;
    lastLat.push(at - rec.t);
    if (at >= winFrom && at <= winTo) doneInWindow++;
    inflight--;
    refill?.();
  });

  // Do not start while earlier steps' flows are still being processed (bounded).
  const pendingEarlier = () => {
    let n = 0;
    for (const r of ctx.flows.values()) if (r.accepted && r.count === 0 && r.step !== spec.step) n++;
    return n;
  };
  const settleUntil = spec.noSettle ? 0 : performance.now() + Math.min(o.settleSeconds * 1000, Math.max(0, ctx.timeLeft() - spec.durationS * 1000 - o.drainSeconds * 1000 - 15_000));
  let backlog = pendingEarlier();
  if (backlog > 0 && !spec.noSettle) ctx.log(`[${spec.label}] waiting up to ${Math.round((settleUntil - performance.now()) / 1000)} s for ${backlog} flows of earlier steps`);
  while (backlog > 0 && performance.now() < settleUntil) {
    await sleep(100);
    backlog = pendingEarlier();
  }
  const before = await storeSnapshot(ctx.nc, ctx.monitor, ctx.reads);
  const cpuBefore = sampleCpu(ctx.procs);
  const completionsBefore = ctx.completions.n;
  ctx.sampler.reset();
  const start = performance.now() + 20;
  winFrom = start + warmS * 1000;
  winTo = spec.kind === 'burst' ? Number.POSITIVE_INFINITY : start + spec.durationS * 1000;
  let lastCpu = cpuBefore;
  const progress = setInterval(() => {
    const cpu = sampleCpu(ctx.procs);
    const pct = Object.keys(cpu.ms)
      .map((k) => `${short(k)} ${Math.round(((cpu.ms[k]! - (lastCpu.ms[k] ?? 0)) / (cpu.at - lastCpu.at)) * 100)}%`)
      .join(' ');
    lastCpu = cpu;
    const p = percentiles(lastLat);
    lastLat = [];
    const accepted = recs.filter((r) => r.accepted).length;
    ctx.log(
      `[${spec.label}] t=${((cpu.at - start) / 1000).toFixed(0)}s sent=${recs.length} accepted=${accepted} done=${done} in-flight=${accepted - done} last-1s: ${p.n}/s p50=${fmt(p.p50)} p99=${fmt(p.p99)} max=${fmt(p.max)} ms | cpu ${pct}`,
    );
  }, 1_000);

  if (spec.kind === 'open') {
    const rate = spec.rate!;
    const n = Math.max(1, Math.round(rate * spec.durationS));
    let i = 0;
    // Arrivals on a fixed schedule; nothing waits for acks or callbacks. Latency is measured from the
    // scheduled time, so a late driver or a stalled system cannot hide its queue.
    await new Promise<void>((res) => {
      const tick = () => {
        const now = performance.now();
        while (i < n) {
          const at = start + (i * 1000) / rate;
          if (at > now) break;
          fire(at);
          i++;
        }
        if (i >= n || ctx.stopped()) return res();
        setTimeout(tick, Math.max(0, start + (i * 1000) / rate - performance.now()));
      };
      setTimeout(tick, Math.max(0, start - performance.now()));
    });
  } else {
    // Closed loop: a new flow as soon as one completes (or is refused), for a time or a number of flows.
    const endAt = start + spec.durationS * 1000;
    const limit = spec.kind === 'burst' ? (spec.flows ?? 0) : Number.POSITIVE_INFINITY;
    let active = true;
    refill = () => {
      while (active && inflight < o.window && recs.length < limit) fire(performance.now());
    };
    await sleep(Math.max(0, start - performance.now()));
    refill();
    const over = () => (spec.kind === 'burst' ? recs.length >= limit : performance.now() >= endAt);
    while (!over() && !ctx.stopped()) await sleep(spec.kind === 'burst' ? 5 : 50);
    active = false;
    refill = undefined;
  }
  const sentEnd = performance.now();
  if (!spec.noDrain) {
    // Drain: bounded wait for the callbacks of what was accepted.
    const drainUntil = performance.now() + Math.min((spec.drainS ?? o.drainSeconds) * 1000, Math.max(0, ctx.timeLeft() - 10_000));
    while (performance.now() < drainUntil) {
      if (recs.every((r) => r.refused !== undefined || r.count > 0)) break;
      await sleep(20);
    }
  }
  clearInterval(progress);
  const after = await storeSnapshot(ctx.nc, ctx.monitor, ctx.reads);
  const cpuAfter = sampleCpu(ctx.procs);
  ctx.sampler.sample();
  ctx.setOnCompleted(undefined);
  if (spec.step < 0) return undefined;

  // Every per-flow cost divides by what completed between the two snapshots, whichever step sent it.
  const inInterval = ctx.completions.n - completionsBefore;
  const nFlows = Math.max(1, inInterval);
  const store = storeDelta(before, after, inInterval);
  const cpu = cpuDelta(ctx.procs, cpuBefore, cpuAfter);
  const byProcess: Record<string, number> = {};
  const cpuCores: Record<string, number> = {};
  for (const [k, d] of Object.entries(cpu.ms)) {
    if (k !== 'driver') byProcess[k] = round(d / nFlows, 3);
    cpuCores[k] = round(d / cpu.wallMs, 2);
  }
  const peakRssMb: Record<string, number> = {};
  for (const t of ctx.tracked) peakRssMb[t.name] = round(t.peakRss, 1);
  const services = ctx.tracked.filter((t) => t.name !== 'nats-server' && t.name !== 'local-aws');
  const servicesPeakRssMb = round(
    services.reduce((a, t) => a + t.peakRss, 0),
    1,
  );
  const servicesPeakPssMb = round(
    services.reduce((a, t) => a + (t.peakPss ?? 0), 0),
    1,
  );
  // Counts and latencies are read from the flows when finish() is called: a burst is not drained, so
  // its caller finishes it after the step that follows, once its flows have completed.
  // A burst is measured for its throughput and latency only: its snapshots bracket the sending, not the work.
  if (spec.kind === 'burst') {
    for (const k of Object.keys(byProcess)) byProcess[k] = Number.NaN;
    for (const k of Object.keys(store.perStream)) store.perStream[k] = Number.NaN;
    store.jsMsgsPerFlow = store.kvWritesPerFlow = store.kvReadsPerFlow = Number.NaN;
    store.natsMsgsPerFlow = {};
    cpu.systemMs = Number.NaN;
    cpu.ms.driver = Number.NaN;
  }
  return {
    async settle(maxMs) {
      const until = performance.now() + maxMs;
      while (performance.now() < until && !recs.every((r) => r.refused !== undefined || r.count > 0)) await sleep(50);
    },
    finish: () => {
      const accepted = recs.filter((r) => r.accepted);
      const completed = accepted.filter((r) => r.count > 0);
      const lat = completed.map((r) => r.first!.at - r.t);
      const measuredS = (Math.min(winTo, sentEnd) - winFrom) / 1000;
      // A burst's rate is its flows over the time they took to complete.
      const lastAt = completed.reduce((m, r) => Math.max(m, r.first!.at), 0);
      const completedPerSec = spec.kind === 'burst' ? (lastAt > start ? completed.length / ((lastAt - start) / 1000) : 0) : measuredS > 0 ? doneInWindow / measuredS : 0;
      const c = ctx.ceiling;
      const utilisation =
        c && spec.kind !== 'burst'
          ? { js: round((completedPerSec * store.jsMsgsPerFlow) / c.jsPubConsumePerSec, 3), kv: round((completedPerSec * store.kvWritesPerFlow) / c.kvUpdatePerSec, 3), combined: 0 }
          : null;
      if (utilisation) utilisation.combined = round(utilisation.js + utilisation.kv, 3);
      const duplicates = accepted.filter((r) => r.count > 1).length;
      const deliveryIdMismatch = completed.filter((r) => !r.first!.deliveryId.startsWith('dlv_f')).length;
      const notSucceeded = completed.filter((r) => r.first!.status !== 'succeeded').length;
      const missing = accepted.length - completed.length;
      return {
        mode: ctx.mode,
        history: ctx.history,
        door: ctx.submitter.door,
        kind: spec.kind,
        afterBurst: spec.afterBurst ?? false,
        offered: spec.kind === 'open' ? spec.rate! : null,
        window: spec.kind === 'open' ? null : o.window,
        durationS: round(spec.kind === 'burst' ? (sentEnd - start) / 1000 : spec.durationS, 2),
        backlogAtStart: backlog,
        submitted: recs.length,
        accepted: accepted.length,
        refused: recs.filter((r) => r.refused !== undefined).length,
        completed: completed.length,
        completedInInterval: inInterval,
        completedPerSec: round(completedPerSec, 1),
        latencyMs: roundP(percentiles(lat)),
        exactlyOnce: {
          ok: accepted.length > 0 && missing === 0 && duplicates === 0 && deliveryIdMismatch === 0 && notSucceeded === 0 && accepted.length === recs.length,
          missing,
          duplicates,
          deliveryIdMismatch,
          notSucceeded,
        },
        streamMsgsPerFlow: store.perStream,
        jsMsgsPerFlow: store.jsMsgsPerFlow,
        kvWritesPerFlow: store.kvWritesPerFlow,
        kvReadsPerFlow: store.kvReadsPerFlow,
        natsMsgsPerFlow: store.natsMsgsPerFlow,
        cpuMsPerFlow: { system: round(cpu.systemMs / nFlows, 3), driver: round((cpu.ms.driver ?? 0) / nFlows, 3), byProcess },
        cpuCores,
        peakRssMb,
        servicesPeakRssMb,
        servicesPeakPssMb,
        idleRssMb: ctx.idleRss,
        utilisation,
        elapsedS: round((after.at - before.at) / 1000, 2),
      };
    },
  };
}

const roundP = (p: Percentiles): Percentiles => ({ n: p.n, p50: round(p.p50, 2), p95: round(p.p95, 2), p99: round(p.p99, 2), max: round(p.max, 2), mean: round(p.mean, 2) });
