/**
 * `npm run bench`: the insights flow through the real services and a real nats-server, open loop at
 * fixed offered rates and closed loop at saturation, in noop and real task modes; plus this machine's
 * JetStream ceiling measured in the same run. See docs/PERFORMANCE.md for how to read the output.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { connect, headers as natsHeaders, type NatsConnection } from 'nats';
import { deriveFlowId } from '../libs/flows/src/index.js';
import { JetStreamPublisher } from '../libs/messaging/src/index.js';
import { Stack, SERVICES, repoRoot, waitForHttp } from '../libs/stack/src/index.js';
import { freePort, startNatsServer, type NatsServerHandle } from '../libs/testing/src/nats-server.js';
import { waitForConsumers } from '../libs/testing/src/harness.js';
import { measureCeiling, type CeilingResult } from './ceiling.js';
import { startAwsProcess } from './local-aws.js';
import { RssSampler, cpuMs, cpuSnapshot, findPid, memMb, selfCpuMs, type Tracked } from './proc.js';
import { BenchReceiver, type Arrival } from './receiver.js';
import { fmt, percentiles, table, type Percentiles } from './stats.js';

export type TaskMode = 'noop' | 'real';

export interface BenchOptions {
  mode: TaskMode | 'both';
  /** Offered rates (flows/s) for the open-loop steps of noop mode (and real mode unless realRates). */
  rates: number[];
  /** Open-loop rates of real mode; default: half of real mode's measured saturation. */
  realRates: number[] | undefined;
  /** Seconds per step. */
  duration: number;
  saturation: boolean;
  /** Flows in flight in the saturation closed loop. */
  window: number;
  door: 'nats' | 'http';
  /** JSON results file; empty or undefined = none (the CLI defaults to bench-results.json). */
  out: string | undefined;
  quick: boolean;
  /** Hard limit for the whole run (s): remaining steps are skipped, a hung run is torn down. */
  maxSeconds: number;
  /** Longest wait after a step for its flows' callbacks (s). */
  drainSeconds: number;
  /** Longest extra wait before the next step while earlier flows are still in flight (s), so steps do not overlap. */
  settleSeconds: number;
  warmupSeconds: number;
  ceiling: boolean;
  ceilingSeconds: number;
  /** Records per submission (the real handlers' work grows with it). */
  records: number;
  /** Directory for node --cpu-prof profiles of the services (one run, then summarise with bench/profile.ts). */
  cpuProfDir: string | undefined;
  logLevel: string;
  /** Run `tsc` first when dist/ is older than the sources. */
  build: boolean;
  progress: boolean;
  logDir: string | undefined;
}

const QUICK: Partial<BenchOptions> = { duration: 3, ceilingSeconds: 1, warmupSeconds: 0.5, drainSeconds: 4, settleSeconds: 5, window: 300 };
export const DEFAULTS: BenchOptions = {
  mode: 'both',
  rates: [100, 300],
  realRates: undefined,
  duration: 10,
  saturation: true,
  window: 1_000,
  door: 'nats',
  out: 'bench-results.json',
  quick: false,
  maxSeconds: 300,
  drainSeconds: 5,
  settleSeconds: 20,
  warmupSeconds: 2,
  ceiling: true,
  ceilingSeconds: 3,
  records: 10,
  cpuProfDir: undefined,
  logLevel: 'info',
  build: false,
  progress: true,
  logDir: undefined,
};

export interface StepResult {
  mode: TaskMode;
  kind: 'open' | 'saturation';
  /** Offered flows/s (open loop) or null (closed loop). */
  offered: number | null;
  window: number | null;
  durationS: number;
  /** Flows of earlier steps still in flight when this step started (their work skews this step). */
  backlogAtStart: number;
  /** Submissions sent / accepted by JetStream (PubAck or HTTP 202) / refused. */
  submitted: number;
  accepted: number;
  refused: number;
  /** Accepted flows whose callback arrived before the drain ended. */
  completed: number;
  /** Flows completed per second over the measured window. */
  completedPerSec: number;
  /** Submit (scheduled time for open loop) to callback arrival, ms. */
  latencyMs: Percentiles;
  exactlyOnce: { ok: boolean; missing: number; duplicates: number; deliveryIdMismatch: number; notSucceeded: number };
  /** Messages stored per completed flow, per stream (last_seq deltas; KV_* are KV writes). */
  streamMsgsPerFlow: Record<string, number>;
  jsMsgsPerFlow: number;
  kvWritesPerFlow: number;
  kvReadsPerFlow: number;
  /** Core NATS messages in and out of each service connection per flow (acks, pulls, PubAcks included). */
  natsMsgsPerFlow: Record<string, { in: number; out: number }>;
  cpuMsPerFlow: { system: number; driver: number; byProcess: Record<string, number> };
  /** Share of one core used during the step, per process. */
  cpuCores: Record<string, number>;
  peakRssMb: Record<string, number>;
  servicesPeakRssMb: number;
  /** Sum of the services' peak PSS (shared pages such as the node binary counted once), MB. */
  servicesPeakPssMb: number;
  /** RSS of each process right after start, before any flow (MB). */
  idleRssMb: Record<string, number>;
  utilisation: { js: number; kv: number; combined: number } | null;
  elapsedS: number;
}

export interface BenchResult {
  meta: { startedAt: string; command: string; node: string; natsServer: string; cpus: number; cpuModel: string; options: BenchOptions };
  ceiling: CeilingResult | null;
  steps: StepResult[];
  /** Flows accepted in the whole run, and the global exactly-once check after the last drain. */
  exactlyOnce: { accepted: number; once: number; missing: number; duplicates: number; unknown: number; ok: boolean };
  targets: Array<{ target: string; measured: string; ok: boolean | null }>;
  aborted: string | null;
  elapsedS: number;
}

interface FlowRec {
  step: number;
  /** Scheduled (open loop) or sent (closed loop) time, performance.now(). */
  t: number;
  accepted: boolean;
  refused?: string;
  first?: Arrival;
  count: number;
}

const TENANT = 'default';
const API_KEY = 'bench-key-0123456789abcdef';

// ------------------------------------------------------------------------------------------------

export async function runBench(partial: Partial<BenchOptions> = {}): Promise<BenchResult> {
  const o: BenchOptions = { ...DEFAULTS, ...(partial.quick ? QUICK : {}), ...stripUndefined(partial) };
  const t0 = performance.now();
  const deadline = t0 + o.maxSeconds * 1000;
  const log = (s: string) => {
    if (o.progress) process.stderr.write(`${s}\n`);
  };
  const timeLeft = () => deadline - performance.now();
  let aborted: string | null = null;
  const abortCtl = currentAbort;
  abortCtl.reason = undefined;

  if (o.build) ensureBuilt(log);

  const cleanups: Array<() => Promise<void>> = [];
  const result: BenchResult = {
    meta: {
      startedAt: new Date().toISOString(),
      command: process.argv.slice(1).join(' '),
      node: process.version,
      natsServer: '',
      cpus: availableParallelism(),
      cpuModel: cpus()[0]?.model ?? '',
      options: o,
    },
    ceiling: null,
    steps: [],
    exactlyOnce: { accepted: 0, once: 0, missing: 0, duplicates: 0, unknown: 0, ok: false },
    targets: [],
    aborted: null,
    elapsedS: 0,
  };

  const flows = new Map<string, FlowRec>();
  const receiver = await new BenchReceiver().start();
  cleanups.push(() => receiver.close());
  let nats: NatsServerHandle | undefined;
  let nc: NatsConnection | undefined;
  try {
    const monitorPort = await freePort();
    nats = await startNatsServer({ args: ['-m', String(monitorPort)] });
    const natsHandle = nats;
    cleanups.push(() => natsHandle.stop());
    const natsPid = findPid('nats-server', nats.storeDir);
    if (!natsPid) throw new Error('cannot find the nats-server process');
    const monitor = `http://127.0.0.1:${monitorPort}`;
    const varz = (await (await fetch(`${monitor}/varz`)).json()) as { version: string };
    result.meta.natsServer = varz.version;
    nc = await connect({ servers: [nats.url], name: 'bench-driver', maxReconnectAttempts: -1 });
    const ncHandle = nc;
    cleanups.push(() => ncHandle.close());
    log(`bench: nats-server ${varz.version} pid ${natsPid} on ${nats.url} (monitor ${monitor}), callbacks to ${receiver.url}`);

    if (o.ceiling) {
      log(`bench: measuring the JetStream ceiling (${o.ceilingSeconds} s each)…`);
      result.ceiling = await measureCeiling({ nc, seconds: o.ceilingSeconds, serverCpuMs: () => cpuMs(natsPid), clientCpuMs: selfCpuMs, log });
    }

    // KV reads are requests to the server, not stored messages: count them by listening in.
    const reads = { n: 0 };
    for (const subj of ['$JS.API.DIRECT.GET.>', '$JS.API.STREAM.MSG.GET.>']) {
      nc.subscribe(subj, { callback: (_e, m) => (m.subject.includes('.KV_') ? reads.n++ : undefined) });
    }

    // The callback receiver routes every arrival to its flow.
    let onCompleted: ((rec: FlowRec) => void) | undefined;
    let unknownCallbacks = 0;
    receiver.onArrival = (flowId, a) => {
      const rec = flows.get(flowId);
      if (!rec) {
        unknownCallbacks++;
        return;
      }
      rec.count++;
      if (rec.count === 1) {
        rec.first = a;
        onCompleted?.(rec);
      }
    };

    const modes: TaskMode[] = o.mode === 'both' ? ['noop', 'real'] : [o.mode];
    let stepNo = 0;
    for (const mode of modes) {
      if (aborted) break;
      if (timeLeft() < 20_000) {
        aborted = `time limit: skipped ${mode} mode`;
        break;
      }
      const httpPort = await freePort();
      const env: Record<string, string> = {
        NATS_URL: nats.url,
        JETFLOW_HTTP_PORT: String(httpPort),
        JETFLOW_GRPC_PORT: String(await freePort()),
        JETFLOW_HOST: '127.0.0.1',
        JETFLOW_API_KEYS: `${TENANT}:${API_KEY}`,
        JETFLOW_CALLBACK_SECRETS: `${TENANT}:bench-callback-secret`,
        JETFLOW_CALLBACK_ALLOWLIST: '127.0.0.0/8',
        JETFLOW_METRICS_PORT: '0',
        JETFLOW_TASK_MODE: mode,
        LOG_LEVEL: o.logLevel,
      };
      if (mode === 'real') {
        // Real tasks keep datasets in S3 and the history in DynamoDB: local stand-ins, in their own process.
        const aws = await startAwsProcess();
        cleanups.push(() => aws.stop());
        Object.assign(env, aws.env);
        log(`bench: local S3 + DynamoDB for real mode (pid ${aws.pid})`);
      }
      if (o.cpuProfDir) {
        const dir = resolve(o.cpuProfDir, mode);
        mkdirSync(dir, { recursive: true });
        // node 20 refuses --cpu-prof in NODE_OPTIONS: a preload starts the profiler instead.
        env.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ''} --import ${pathToFileURL(join(repoRoot(), 'bench', 'cpu-prof-preload.mjs')).href}`.trim();
        env.JETFLOW_CPU_PROF_DIR = dir;
      }
      const logDir = o.logDir ? resolve(o.logDir, mode) : mkdtempSync(join(tmpdir(), `jetflow-bench-${mode}-`));
      let crashed: string | undefined;
      const stack = new Stack({
        env,
        logDir,
        onExit: (p, code, signal) => {
          if (!stopping) crashed = `${p.name} exited (${code ?? signal}) during the ${mode} run; logs in ${logDir}`;
        },
      });
      let stopping = false;
      const stopStack = async () => {
        stopping = true;
        await stack.stop(8_000);
      };
      cleanups.push(stopStack);
      stack.start();
      const http = `http://127.0.0.1:${httpPort}`;
      await waitForHttp(`${http}/readyz`, 30_000);
      await waitForConsumers(nc, 30_000);
      const tracked: Tracked[] = [{ name: 'nats-server', pid: natsPid, peakRss: 0 }];
      for (const name of SERVICES) {
        const p = stack.find(name);
        if (p?.proc.pid) tracked.push({ name, pid: p.proc.pid, peakRss: 0 });
      }
      if (o.cpuProfDir) writeFileSync(resolve(o.cpuProfDir, mode, 'pids.json'), `${JSON.stringify(Object.fromEntries(tracked.map((t) => [t.pid, t.name])))}\n`);
      await sleep(500);
      const idleRss: Record<string, number> = {};
      for (const t of tracked) idleRss[t.name] = round(memMb(t.pid)?.rss ?? Number.NaN, 1);
      const sampler = new RssSampler(tracked);
      sampler.start(200);
      log(`bench: ${mode} mode: services up (${tracked.map((t) => `${t.name}=${t.pid}`).join(' ')}), logs in ${logDir}`);

      const payload = submissionBody(receiver.url, o.records);
      const submitter = o.door === 'http' ? httpSubmitter(http, payload) : natsSubmitter(nc, payload);
      cleanups.push(async () => submitter.close());

      const ctx: StepCtx = {
        o,
        nc,
        flows,
        monitor,
        tracked,
        sampler,
        reads,
        submit: submitter.submit,
        setOnCompleted: (f) => (onCompleted = f),
        log,
        stopped: () => aborted ?? abortCtl.reason ?? crashed ?? (timeLeft() <= 0 ? 'time limit' : undefined),
        timeLeft,
        ceiling: result.ceiling,
        idleRss,
      };

      // Warm-up (JIT, connections, consumers), not recorded.
      if (o.warmupSeconds > 0) await runStep(ctx, { mode, kind: 'open', rate: Math.min(100, o.rates[0] ?? 100), durationS: o.warmupSeconds, step: -1, label: `${mode} warm-up` });

      const plan: Array<{ kind: 'open' | 'saturation'; rate?: number }> = [];
      if (mode === 'noop') {
        for (const r of o.rates) plan.push({ kind: 'open', rate: r });
        if (o.saturation) plan.push({ kind: 'saturation' });
      } else {
        if (o.saturation) plan.push({ kind: 'saturation' });
        for (const r of o.realRates ?? (o.saturation ? [] : o.rates)) plan.push({ kind: 'open', rate: r });
      }
      for (let i = 0; i < plan.length; i++) {
        const p = plan[i]!;
        const why = ctx.stopped();
        if (why) {
          aborted = why;
          break;
        }
        // Leave time for the drain and the teardown.
        const budget = timeLeft() / 1000 - o.drainSeconds - 15;
        if (budget < 1) {
          aborted = `time limit: skipped ${plan.length - i} ${mode} step(s)`;
          break;
        }
        const durationS = Math.min(o.duration, budget);
        const r = await runStep(ctx, { mode, kind: p.kind, ...(p.rate !== undefined ? { rate: p.rate } : {}), durationS, step: stepNo++, label: `${mode} ${p.kind === 'open' ? `${p.rate}/s` : 'saturation'}` });
        if (r) {
          result.steps.push(r);
          log(`bench: ${describeStep(r)}`);
          if (mode === 'real' && p.kind === 'saturation' && !o.realRates && r.completedPerSec > 0) plan.push({ kind: 'open', rate: Math.max(1, Math.round(r.completedPerSec / 2)) });
        }
      }
      sampler.stop();
      await stopStack();
      cleanups.splice(cleanups.indexOf(stopStack), 1);
      if (crashed) aborted ??= crashed;
    }

    // Global exactly-once check: every accepted flow, one callback; nothing unknown.
    await sleep(Math.min(1_000, Math.max(0, timeLeft() - 5_000)));
    let accepted = 0;
    let once = 0;
    let missing = 0;
    let duplicates = 0;
    for (const rec of flows.values()) {
      if (!rec.accepted) continue;
      accepted++;
      if (rec.count === 1) once++;
      else if (rec.count === 0) missing++;
      else duplicates++;
    }
    result.exactlyOnce = { accepted, once, missing, duplicates, unknown: unknownCallbacks, ok: accepted > 0 && once === accepted && unknownCallbacks === 0 };
  } catch (err) {
    aborted = `error: ${(err as Error).stack ?? String(err)}`;
  } finally {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  }
  result.aborted = aborted ?? currentAbort.reason ?? null;
  result.targets = checkTargets(result);
  result.elapsedS = (performance.now() - t0) / 1000;
  if (o.out) writeFileSync(o.out, `${JSON.stringify(result, null, 2)}\n`);
  return result;
}

// ------------------------------------------------------------------------------------------------ steps

interface StepCtx {
  o: BenchOptions;
  nc: NatsConnection;
  flows: Map<string, FlowRec>;
  monitor: string;
  tracked: Tracked[];
  sampler: RssSampler;
  reads: { n: number };
  submit: (key: string, rec: FlowRec, onRefused: () => void) => void;
  setOnCompleted: (f: ((rec: FlowRec) => void) | undefined) => void;
  log: (s: string) => void;
  stopped: () => string | undefined;
  timeLeft: () => number;
  ceiling: CeilingResult | null;
  idleRss: Record<string, number>;
}

interface StepSpec {
  mode: TaskMode;
  kind: 'open' | 'saturation';
  rate?: number;
  durationS: number;
  step: number;
  label: string;
}

interface Snapshot {
  at: number;
  cpu: Record<string, number>;
  streams: Record<string, number>;
  conns: Record<string, { in: number; out: number }>;
  reads: number;
}

async function snapshot(ctx: StepCtx): Promise<Snapshot> {
  const jsm = await ctx.nc.jetstreamManager();
  const streams: Record<string, number> = {};
  for (const s of await jsm.streams.list().next()) {
    if (s.config.name.startsWith('JETFLOW_') || s.config.name.startsWith('KV_')) streams[s.config.name] = s.state.last_seq;
  }
  const conns: Record<string, { in: number; out: number }> = {};
  try {
    const cz = (await (await fetch(`${ctx.monitor}/connz?limit=4096`)).json()) as { connections?: Array<{ name?: string; in_msgs: number; out_msgs: number }> };
    for (const c of cz.connections ?? []) {
      const svc = SERVICES.find((s) => c.name?.startsWith(s));
      if (!svc) continue;
      const cur = (conns[svc] ??= { in: 0, out: 0 });
      cur.in += c.in_msgs;
      cur.out += c.out_msgs;
    }
  } catch {
    // monitoring endpoint unavailable: leave empty
  }
  return { at: performance.now(), cpu: cpuSnapshot(ctx.tracked), streams, conns, reads: ctx.reads.n };
}

async function runStep(ctx: StepCtx, spec: StepSpec): Promise<StepResult | undefined> {
  const { o } = ctx;
  const recs: FlowRec[] = [];
  let seq = 0;
  const tag = `${Date.now().toString(36)}-${spec.step < 0 ? 'w' : spec.step}`;
  const fire = (t: number) => {
    const rec: FlowRec = { step: spec.step, t, accepted: false, count: 0 };
    const key = `bench-${spec.mode}-${tag}-${seq++}`;
    ctx.flows.set(deriveFlowId(TENANT, key), rec);
    recs.push(rec);
    ctx.submit(key, rec, () => {
      inflight--;
      refill?.();
    });
  };

  // Progress: per second, what completed and how late.
  let lastLat: number[] = [];
  let done = 0;
  let doneInWindow = 0;
  const warmS = spec.kind === 'saturation' ? Math.min(2, spec.durationS / 4) : spec.durationS >= 4 ? 1 : 0;
  let winFrom = Number.POSITIVE_INFINITY;
  let winTo = Number.POSITIVE_INFINITY;
  let inflight = 0;
  let refill: (() => void) | undefined;
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
  const settleUntil = performance.now() + Math.min(o.settleSeconds * 1000, Math.max(0, ctx.timeLeft() - spec.durationS * 1000 - o.drainSeconds * 1000 - 15_000));
  let backlog = pendingEarlier();
  if (backlog > 0) ctx.log(`[${spec.label}] waiting up to ${Math.round((settleUntil - performance.now()) / 1000)} s for ${backlog} flows of earlier steps`);
  while (backlog > 0 && performance.now() < settleUntil) {
    await sleep(100);
    backlog = pendingEarlier();
  }
  const before = await snapshot(ctx);
  ctx.sampler.reset();
  const start = performance.now() + 20;
  winFrom = start + warmS * 1000;
  winTo = start + spec.durationS * 1000;
  let lastCpu = before.cpu;
  let lastT = before.at;
  const progress = setInterval(() => {
    const now = performance.now();
    const cpu = cpuSnapshot(ctx.tracked);
    const pct = Object.keys(cpu)
      .map((k) => `${short(k)} ${Math.round(((cpu[k]! - (lastCpu[k] ?? 0)) / (now - lastT)) * 100)}%`)
      .join(' ');
    lastCpu = cpu;
    lastT = now;
    const p = percentiles(lastLat);
    lastLat = [];
    const accepted = recs.filter((r) => r.accepted).length;
    ctx.log(`[${spec.label}] t=${((now - start) / 1000).toFixed(0)}s sent=${recs.length} accepted=${accepted} done=${done} in-flight=${accepted - done} last-1s: ${p.n}/s p50=${fmt(p.p50)} p99=${fmt(p.p99)} max=${fmt(p.max)} ms | cpu ${pct}`);
  }, 1_000);

  const endAt = start + spec.durationS * 1000;
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
          inflight++;
          fire(at);
          i++;
        }
        if (i >= n || ctx.stopped()) return res();
        setTimeout(tick, Math.max(0, start + (i * 1000) / rate - performance.now()));
      };
      setTimeout(tick, Math.max(0, start - performance.now()));
    });
  } else {
    // Closed loop with a large window: a new flow as soon as one completes.
    let active = true;
    refill = () => {
      while (active && inflight < o.window) {
        inflight++;
        fire(performance.now());
      }
    };
    await sleep(Math.max(0, start - performance.now()));
    refill();
    while (performance.now() < endAt && !ctx.stopped()) await sleep(50);
    active = false;
    refill = undefined;
  }
  const sentEnd = performance.now();
  // Drain: bounded wait for the callbacks of what was accepted.
  const drainUntil = performance.now() + Math.min(o.drainSeconds * 1000, Math.max(0, ctx.timeLeft() - 10_000));
  while (performance.now() < drainUntil) {
    if (recs.every((r) => r.refused !== undefined || r.count > 0)) break;
    await sleep(20);
  }
  clearInterval(progress);
  ctx.setOnCompleted(undefined);
  const after = await snapshot(ctx);
  ctx.sampler.sample();
  if (spec.step < 0) return undefined;

  const accepted = recs.filter((r) => r.accepted);
  const completed = accepted.filter((r) => r.count > 0);
  const lat = completed.map((r) => r.first!.at - r.t);
  const nFlows = Math.max(1, completed.length);
  const measuredS = (Math.min(winTo, sentEnd) - winFrom) / 1000;
  const perFlow = (x: number) => x / nFlows;
  const streamMsgsPerFlow: Record<string, number> = {};
  for (const [k, v] of Object.entries(after.streams)) {
    const d = v - (before.streams[k] ?? 0);
    if (d > 0) streamMsgsPerFlow[k] = round(perFlow(d), 2);
  }
  const jsMsgs = Object.entries(after.streams)
    .filter(([k]) => k.startsWith('JETFLOW_'))
    .reduce((a, [k, v]) => a + v - (before.streams[k] ?? 0), 0);
  const kvWrites = Object.entries(after.streams)
    .filter(([k]) => k.startsWith('KV_'))
    .reduce((a, [k, v]) => a + v - (before.streams[k] ?? 0), 0);
  const natsMsgsPerFlow: Record<string, { in: number; out: number }> = {};
  for (const [k, v] of Object.entries(after.conns)) {
    const b = before.conns[k] ?? { in: 0, out: 0 };
    natsMsgsPerFlow[k] = { in: round(perFlow(v.in - b.in), 1), out: round(perFlow(v.out - b.out), 1) };
  }
  const byProcess: Record<string, number> = {};
  const cpuCores: Record<string, number> = {};
  const wall = after.at - before.at;
  let system = 0;
  for (const k of Object.keys(after.cpu)) {
    const d = after.cpu[k]! - (before.cpu[k] ?? 0);
    if (k !== 'driver') {
      byProcess[k] = round(perFlow(d), 3);
      system += d;
    }
    cpuCores[k] = round(d / wall, 2);
  }
  const peakRssMb: Record<string, number> = {};
  for (const t of ctx.tracked) peakRssMb[t.name] = round(t.peakRss, 1);
  const servicesPeakRssMb = round(
    ctx.tracked.filter((t) => t.name !== 'nats-server').reduce((a, t) => a + t.peakRss, 0),
    1,
  );
  const servicesPeakPssMb = round(
    ctx.tracked.filter((t) => t.name !== 'nats-server').reduce((a, t) => a + (t.peakPss ?? 0), 0),
    1,
  );
  const completedPerSec = measuredS > 0 ? doneInWindow / measuredS : 0;
  const jsPerFlow = perFlow(jsMsgs);
  const kvPerFlow = perFlow(kvWrites);
  const c = ctx.ceiling;
  const utilisation = c ? { js: round((completedPerSec * jsPerFlow) / c.jsPubConsumePerSec, 3), kv: round((completedPerSec * kvPerFlow) / c.kvUpdatePerSec, 3), combined: 0 } : null;
  if (utilisation) utilisation.combined = round(utilisation.js + utilisation.kv, 3);
  const duplicates = accepted.filter((r) => r.count > 1).length;
  const deliveryIdMismatch = completed.filter((r) => !r.first!.deliveryId.startsWith('dlv_f')).length;
  const notSucceeded = completed.filter((r) => r.first!.status !== 'succeeded').length;
  const missing = accepted.length - completed.length;
  return {
    mode: spec.mode,
    kind: spec.kind,
    offered: spec.kind === 'open' ? spec.rate! : null,
    window: spec.kind === 'saturation' ? o.window : null,
    durationS: round(spec.durationS, 2),
    backlogAtStart: backlog,
    submitted: recs.length,
    accepted: accepted.length,
    refused: recs.filter((r) => r.refused !== undefined).length,
    completed: completed.length,
    completedPerSec: round(completedPerSec, 1),
    latencyMs: roundP(percentiles(lat)),
    exactlyOnce: { ok: accepted.length > 0 && missing === 0 && duplicates === 0 && deliveryIdMismatch === 0 && notSucceeded === 0 && accepted.length === recs.length, missing, duplicates, deliveryIdMismatch, notSucceeded },
    streamMsgsPerFlow,
    jsMsgsPerFlow: round(jsPerFlow, 2),
    kvWritesPerFlow: round(kvPerFlow, 2),
    kvReadsPerFlow: round(perFlow(after.reads - before.reads), 2),
    natsMsgsPerFlow,
    cpuMsPerFlow: { system: round(perFlow(system), 3), driver: round(perFlow(after.cpu.driver! - before.cpu.driver!), 3), byProcess },
    cpuCores,
    peakRssMb,
    servicesPeakRssMb,
    servicesPeakPssMb,
    idleRssMb: ctx.idleRss,
    utilisation,
    elapsedS: round((after.at - before.at) / 1000, 2),
  };
}

// ------------------------------------------------------------------------------------------------ doors

function submissionBody(callbackUrl: string, records: number): Record<string, unknown> {
  const words = ['delivery', 'late', 'box', 'damaged', 'great', 'product', 'fast', 'shipping', 'happy', 'support', 'solved', 'problem', 'quickly', 'refund', 'slow', 'price', 'quality', 'excellent', 'broken', 'again'];
  const recs = Array.from({ length: records }, (_, i) => ({
    id: `r${i + 1}`,
    text: Array.from({ length: 8 + (i % 5) }, (_, j) => words[(i * 7 + j * 3) % words.length]).join(' '),
    fields: { rating: 1 + (i % 5), amount: Math.round((10 + i * 3.7) * 100) / 100 },
  }));
  return { flow: 'insights', input: { records: recs }, callbackUrl, metadata: { source: 'bench' } };
}

interface Submitter {
  submit: (key: string, rec: FlowRec, onRefused: () => void) => void;
  close: () => void;
}

/** The NATS door: plain JSON to jetflow.ingest.<tenant>.insights with Nats-Msg-Id (flow id derivable). */
function natsSubmitter(nc: NatsConnection, body: Record<string, unknown>): Submitter {
  const pub = new JetStreamPublisher(nc);
  const data = new TextEncoder().encode(JSON.stringify(body));
  const subject = `jetflow.ingest.${TENANT}.insights`;
  return {
    submit(key, rec, onRefused) {
      const h = natsHeaders();
      h.set('Content-Type', 'application/json');
      pub.publish(subject, data, { msgId: key, headers: h, timeoutMs: 10_000 }).then(
        () => (rec.accepted = true),
        (err: Error) => {
          rec.refused = err.message;
          onRefused();
        },
      );
    },
    close: () => pub.close(),
  };
}

/** The HTTP door: POST /v1/flows with an idempotency key (flow id derived the same way). */
function httpSubmitter(base: string, body: Record<string, unknown>): Submitter {
  return {
    submit(key, rec, onRefused) {
      fetch(`${base}/v1/flows`, {
        method: 'POST',
        headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify({ ...body, idempotencyKey: key }),
        signal: AbortSignal.timeout(10_000),
      }).then(
        async (r) => {
          await r.body?.cancel().catch(() => undefined);
          if (r.status === 202 || r.status === 200) rec.accepted = true;
          else {
            rec.refused = `HTTP ${r.status}`;
            onRefused();
          }
        },
        (err: Error) => {
          rec.refused = err.message;
          onRefused();
        },
      );
    },
    close: () => undefined,
  };
}

// ------------------------------------------------------------------------------------------------ report

const TARGETS = {
  saturation: 800,
  p99At100: 20,
  p99At300: 50,
  cpuMsPerFlow: 2,
  utilisation: 0.5,
  servicesRssMb: 400,
  realP99AtHalf: 1_000,
};

export function checkTargets(r: BenchResult): BenchResult['targets'] {
  const out: BenchResult['targets'] = [];
  const noop = r.steps.filter((s) => s.mode === 'noop');
  const sat = noop.find((s) => s.kind === 'saturation');
  const at = (rate: number) => noop.find((s) => s.kind === 'open' && s.offered === rate);
  out.push({ target: `noop saturation >= ${TARGETS.saturation} flows/s`, measured: sat ? `${fmt(sat.completedPerSec)} flows/s` : 'not run', ok: sat ? sat.completedPerSec >= TARGETS.saturation : null });
  for (const [rate, lim] of [
    [100, TARGETS.p99At100],
    [300, TARGETS.p99At300],
  ] as const) {
    const s = at(rate);
    out.push({ target: `noop p99 <= ${lim} ms at ${rate} flows/s`, measured: s ? `${fmt(s.latencyMs.p99)} ms (${s.exactlyOnce.missing} missing)` : 'not run', ok: s ? s.latencyMs.p99 <= lim && s.exactlyOnce.missing === 0 : null });
  }
  const cpuStep = sat ?? noop[noop.length - 1];
  out.push({ target: `noop CPU <= ${TARGETS.cpuMsPerFlow} ms/flow (nats-server + services)`, measured: cpuStep ? `${fmt(cpuStep.cpuMsPerFlow.system, 2)} ms (${cpuStep.kind === 'saturation' ? 'saturation' : `${cpuStep.offered}/s`})` : 'not run', ok: cpuStep ? cpuStep.cpuMsPerFlow.system <= TARGETS.cpuMsPerFlow : null });
  out.push({ target: `noop >= ${TARGETS.utilisation * 100}% of the measured ceiling`, measured: sat?.utilisation ? `${fmt(sat.utilisation.combined * 100)}% (JetStream ${fmt(sat.utilisation.js * 100)}% + KV ${fmt(sat.utilisation.kv * 100)}%)` : 'not run', ok: sat?.utilisation ? sat.utilisation.combined >= TARGETS.utilisation : null });
  out.push({ target: `noop services RSS < ${TARGETS.servicesRssMb} MB at saturation`, measured: sat ? `${fmt(sat.servicesPeakRssMb)} MB (PSS, shared pages counted once: ${fmt(sat.servicesPeakPssMb)} MB)` : 'not run', ok: sat ? sat.servicesPeakRssMb < TARGETS.servicesRssMb : null });
  const real = r.steps.filter((s) => s.mode === 'real');
  const rsat = real.find((s) => s.kind === 'saturation');
  const half = real.find((s) => s.kind === 'open');
  out.push({
    target: `real p99 < ${TARGETS.realP99AtHalf} ms at half its saturation`,
    measured: half ? `${fmt(half.latencyMs.p99)} ms at ${half.offered}/s (saturation ${rsat ? fmt(rsat.completedPerSec) : '?'}/s)` : 'not run',
    ok: half ? half.latencyMs.p99 < TARGETS.realP99AtHalf && half.exactlyOnce.missing === 0 : null,
  });
  out.push({ target: 'every flow completed exactly once', measured: `${r.exactlyOnce.once}/${r.exactlyOnce.accepted} once, ${r.exactlyOnce.missing} missing, ${r.exactlyOnce.duplicates} duplicated, ${r.exactlyOnce.unknown} unknown`, ok: r.exactlyOnce.ok });
  return out;
}

const SHORT: Record<string, string> = { 'nats-server': 'nats', ingest: 'ing', orchestrator: 'orch', 'dataset-generator': 'dsgen', analyst: 'anl', driver: 'drv' };
const short = (k: string) => SHORT[k] ?? k;

function describeStep(s: StepResult): string {
  return `${s.mode} ${s.kind === 'open' ? `${s.offered}/s` : `saturation (window ${s.window})`}: ${fmt(s.completedPerSec)} flows/s, p50 ${fmt(s.latencyMs.p50)} p99 ${fmt(s.latencyMs.p99)} max ${fmt(s.latencyMs.max)} ms, ${fmt(s.cpuMsPerFlow.system, 2)} ms CPU/flow, exactly-once ${s.exactlyOnce.ok ? 'yes' : 'NO'}`;
}

export function formatReport(r: BenchResult): string {
  const step = (s: StepResult) => (s.kind === 'open' ? `${s.offered}/s` : `sat w=${s.window}`);
  const lines: string[] = [];
  lines.push(`Jetflow bench — ${r.meta.startedAt} — node ${r.meta.node}, nats-server ${r.meta.natsServer}, ${r.meta.cpus} CPUs (${r.meta.cpuModel})`);
  if (r.ceiling) {
    const c = r.ceiling;
    lines.push(
      `Ceiling (same server, ${c.messageBytes} B messages): JetStream publish+consume ${fmt(c.jsPubConsumePerSec)} msg/s (server ${fmt(c.jsCpuUsPerMsg.server)} µs + client ${fmt(c.jsCpuUsPerMsg.client)} µs CPU/msg); KV CAS update ${fmt(c.kvUpdatePerSec)} op/s (server ${fmt(c.kvCpuUsPerOp.server)} µs + client ${fmt(c.kvCpuUsPerOp.client)} µs CPU/op)`,
    );
  }
  lines.push('');
  lines.push(
    table(
      ['mode', 'step', 'backlog', 'done/s', 'p50 ms', 'p95 ms', 'p99 ms', 'max ms', 'flows', 'once', 'js msg/flow', 'kv w/flow', 'kv r/flow', 'util %'],
      r.steps.map((s) => [
        s.mode,
        step(s),
        String(s.backlogAtStart),
        fmt(s.completedPerSec),
        fmt(s.latencyMs.p50),
        fmt(s.latencyMs.p95),
        fmt(s.latencyMs.p99),
        fmt(s.latencyMs.max),
        `${s.completed}/${s.submitted}`,
        s.exactlyOnce.ok ? '✓' : `✗ (${s.exactlyOnce.missing} not done, ${s.exactlyOnce.duplicates} dup)`,
        fmt(s.jsMsgsPerFlow, 2),
        fmt(s.kvWritesPerFlow, 2),
        fmt(s.kvReadsPerFlow, 2),
        s.utilisation ? fmt(s.utilisation.combined * 100) : '–',
      ]),
    ),
  );
  lines.push('');
  const procs = ['nats-server', ...SERVICES];
  lines.push(
    table(
      ['mode', 'step', 'cpu ms/flow', ...procs.map((p) => short(p)), 'driver', 'cores used', ...SERVICES.map((p) => `${short(p)} MB`), 'svc MB', 'svc PSS MB', 'svc idle MB', 'nats MB'],
      r.steps.map((s) => [
        s.mode,
        step(s),
        fmt(s.cpuMsPerFlow.system, 3),
        ...procs.map((p) => fmt(s.cpuMsPerFlow.byProcess[p], 3)),
        fmt(s.cpuMsPerFlow.driver, 3),
        fmt(Object.entries(s.cpuCores).reduce((a, [k, v]) => a + (k === 'driver' ? 0 : v), 0), 2),
        ...SERVICES.map((p) => fmt(s.peakRssMb[p], 0)),
        fmt(s.servicesPeakRssMb, 0),
        fmt(s.servicesPeakPssMb, 0),
        fmt(SERVICES.reduce((a, p) => a + (s.idleRssMb[p] ?? 0), 0), 0),
        fmt(s.peakRssMb['nats-server'], 0),
      ]),
    ),
  );
  lines.push('');
  lines.push('Targets (docs/PERFORMANCE.md):');
  for (const t of r.targets) lines.push(`  ${t.ok === null ? '·' : t.ok ? '✓' : '✗'} ${t.target}: ${t.measured}`);
  if (r.aborted) lines.push(`\nStopped early: ${r.aborted}`);
  lines.push(`\nTotal ${fmt(r.elapsedS)} s.`);
  return lines.join('\n');
}

// ------------------------------------------------------------------------------------------------ helpers

const round = (x: number, d: number) => (Number.isFinite(x) ? Math.round(x * 10 ** d) / 10 ** d : x);
const roundP = (p: Percentiles): Percentiles => ({ n: p.n, p50: round(p.p50, 2), p95: round(p.p95, 2), p99: round(p.p99, 2), max: round(p.max, 2), mean: round(p.mean, 2) });

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Set by the CLI on SIGINT/SIGTERM: steps stop, everything is torn down. */
const currentAbort: { reason: string | undefined } = { reason: undefined };

function newestMtime(dir: string, pred: (f: string) => boolean): number {
  let max = 0;
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.name === 'node_modules' || e.name.startsWith('.')) continue;
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (pred(p)) max = Math.max(max, statSync(p).mtimeMs);
    }
  };
  walk(dir);
  return max;
}

/** Rebuilds dist/ with tsc when any service or lib source is newer than the compiled services. */
export function ensureBuilt(log: (s: string) => void): void {
  const root = repoRoot();
  const src = Math.max(newestMtime(join(root, 'libs'), (f) => f.endsWith('.ts') && !f.endsWith('.test.ts')), newestMtime(join(root, 'services'), (f) => f.endsWith('.ts') && !f.endsWith('.test.ts')));
  let built = Number.POSITIVE_INFINITY;
  for (const s of SERVICES) {
    try {
      built = Math.min(built, statSync(join(root, 'dist', 'services', s, 'src', 'main.js')).mtimeMs);
    } catch {
      built = 0;
    }
  }
  if (built >= src) return;
  log('bench: dist/ is older than the sources: building (tsc)…');
  const r = spawnSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.json')], { stdio: ['ignore', 'inherit', 'inherit'] });
  // tsc emits even with type errors elsewhere; only a missing output is fatal.
  if (r.status !== 0) log(`bench: tsc exited ${r.status}; using what it emitted`);
}

// ------------------------------------------------------------------------------------------------ CLI

export function parseCli(argv: string[]): Partial<BenchOptions> {
  const { values } = parseArgs({
    args: argv,
    options: {
      mode: { type: 'string' },
      rates: { type: 'string' },
      'real-rates': { type: 'string' },
      duration: { type: 'string' },
      saturation: { type: 'boolean' },
      'no-saturation': { type: 'boolean' },
      window: { type: 'string' },
      door: { type: 'string' },
      out: { type: 'string' },
      quick: { type: 'boolean' },
      'max-seconds': { type: 'string' },
      drain: { type: 'string' },
      settle: { type: 'string' },
      warmup: { type: 'string' },
      'no-ceiling': { type: 'boolean' },
      'ceiling-seconds': { type: 'string' },
      records: { type: 'string' },
      'cpu-prof': { type: 'string' },
      'log-level': { type: 'string' },
      'log-dir': { type: 'string' },
      'no-build': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`Usage: npm run bench -- [options]
  --mode noop|real|both     task mode (default both)
  --rates 100,300           open-loop offered rates, flows/s (noop; real too unless --real-rates); none = no open-loop step
  --real-rates N,...        open-loop rates of real mode (default: half its saturation)
  --duration 10             seconds per step
  --no-saturation           skip the closed-loop saturation step
  --window 1000             flows in flight in the saturation closed loop
  --door nats|http          submission door (default nats)
  --out bench-results.json  JSON results file
  --quick                   short run (3 s steps, 1 s ceiling)
  --max-seconds 300         hard limit for the whole run
  --drain 5                 longest wait for callbacks after a step (s)
  --settle 20               longest wait for earlier steps' flows before a step starts (s)
  --warmup 2                unrecorded warm-up per mode (s)
  --no-ceiling              skip the JetStream ceiling measurement
  --ceiling-seconds 3       seconds per ceiling measurement
  --records 10              records per submission
  --cpu-prof DIR            run the services under node --cpu-prof, profiles to DIR/<mode>
  --log-level info          services' LOG_LEVEL
  --log-dir DIR             keep the services' logs in DIR/<mode>
  --no-build                do not rebuild dist/ when stale
`);
    process.exit(0);
  }
  const num = (v: string | undefined, name: string) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name}: expected a positive number, got "${v}"`);
    return n;
  };
  const list = (v: string | undefined, name: string) => (v === undefined ? undefined : v === 'none' ? [] : v.split(',').map((x) => num(x.trim(), name)!));
  const mode = values.mode;
  if (mode !== undefined && mode !== 'noop' && mode !== 'real' && mode !== 'both') throw new Error(`--mode: expected noop, real or both, got "${mode}"`);
  const door = values.door;
  if (door !== undefined && door !== 'nats' && door !== 'http') throw new Error(`--door: expected nats or http, got "${door}"`);
  return stripUndefined({
    mode,
    door,
    rates: list(values.rates, 'rates'),
    realRates: list(values['real-rates'], 'real-rates'),
    duration: num(values.duration, 'duration'),
    saturation: values['no-saturation'] ? false : values.saturation,
    window: num(values.window, 'window'),
    out: values.out,
    quick: values.quick,
    maxSeconds: num(values['max-seconds'], 'max-seconds'),
    drainSeconds: num(values.drain, 'drain'),
    settleSeconds: values.settle === '0' ? 0 : num(values.settle, 'settle'),
    warmupSeconds: values.warmup === '0' ? 0 : num(values.warmup, 'warmup'),
    ceiling: values['no-ceiling'] ? false : undefined,
    ceilingSeconds: num(values['ceiling-seconds'], 'ceiling-seconds'),
    records: num(values.records, 'records'),
    cpuProfDir: values['cpu-prof'],
    logLevel: values['log-level'],
    logDir: values['log-dir'],
    build: !values['no-build'],
  });
}

async function main() {
  let opts: Partial<BenchOptions>;
  try {
    opts = parseCli(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exit(2);
  }
  const maxS = opts.maxSeconds ?? DEFAULTS.maxSeconds;
  // Last resort: if teardown itself hangs, leave anyway (children get SIGKILL from their own exit).
  const hard = setTimeout(() => {
    process.stderr.write('bench: hard time limit reached; exiting\n');
    process.exit(3);
  }, (maxS + 45) * 1000);
  hard.unref();
  const onSignal = (sig: string) => {
    if (currentAbort.reason) process.exit(130);
    currentAbort.reason = `interrupted (${sig})`;
    process.stderr.write(`bench: ${sig}: stopping and cleaning up (again to force)\n`);
  };
  process.on('SIGINT', () => onSignal('SIGINT'));
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  const r = await runBench(opts);
  process.stdout.write(`${formatReport(r)}\n`);
  if (r.meta.options.out) process.stderr.write(`bench: results written to ${r.meta.options.out}\n`);
  process.exit(r.aborted && !r.steps.length ? 1 : 0);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) void main();
