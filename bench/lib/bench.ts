import { spawnSync } from 'node:child_process';
import { readdirSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { SERVICES, repoRoot } from '@jetflow/stack';
import { measureCeiling } from '../ceiling.js';
import { RssSampler, cpuMs, memMb, selfCpuMs, type Tracked } from '../proc.js';
import { BenchReceiver } from '../receiver.js';
import { idleCpu, round, type CpuProc } from './cpu.js';
import { benchFlow, submissionBody, submitter, type Submitter } from './doors.js';
import { resolveOptions, type BenchOptions, type TaskMode } from './options.js';
import { checkTargets, describeStep } from './report.js';
import { RESULTS_FORMAT, writeResults, type BenchResult } from './results.js';
import { startBenchNats, startBenchServices, API_KEY, TENANT, type BenchNats, type BenchServices } from './stack.js';
import { runStep, type FlowRec, type Measured, type StepCtx, type StepSpec } from './steps.js';
import { countKvReads } from './store.js';

/** Set by the CLI on SIGINT/SIGTERM: steps stop, everything is torn down. */
/** Seconds a stack is left alone after it is up, before its idle CPU is measured. */
const IDLE_SETTLE_MS = 3_000;

export const currentAbort: { reason: string | undefined } = { reason: undefined };

type PlanItem = Omit<StepSpec, 'step' | 'label' | 'durationS'> & { durationS?: number };

/** The steps of one door: noop climbs the rates, saturates, then bursts; real saturates first, then runs at half of it. */
function planFor(o: BenchOptions, mode: TaskMode): PlanItem[] {
  const plan: PlanItem[] = [];
  if (mode === 'noop') {
    for (const r of o.rates) plan.push({ kind: 'open', rate: r });
    if (o.saturation) plan.push({ kind: 'saturation' });
    if (o.burst > 0) {
      plan.push({ kind: 'burst', flows: o.burst, noDrain: true });
      // Its flows queue behind the burst's: a longer drain.
      plan.push({ kind: 'open', rate: o.burstRate, durationS: o.burstSeconds, noSettle: true, afterBurst: true, drainS: o.drainSeconds + o.settleSeconds });
    }
  } else {
    if (o.saturation) plan.push({ kind: 'saturation' });
    for (const r of o.realRates ?? (o.saturation ? [] : o.rates)) plan.push({ kind: 'open', rate: r });
  }
  return plan;
}

/**
 * `npm run bench`: the insights flow through the real services and a real nats-server (with the deployed
 * identities), per task mode, history setting and door: open loop at fixed rates, closed loop at
 * saturation, a burst and the fixed-rate step right after it; plus the stack's idle CPU and this
 * machine's JetStream ceiling, measured in the same run. See docs/PERFORMANCE.md for how to read it.
 */
export async function runBench(partial: Partial<BenchOptions> = {}): Promise<BenchResult> {
  const o = resolveOptions(partial);
  const t0 = performance.now();
  const deadline = t0 + o.maxSeconds * 1000;
  const log = (s: string) => {
    if (o.progress) process.stderr.write(`${s}\n`);
  };
  const timeLeft = () => deadline - performance.now();
  let aborted: string | null = null;
  currentAbort.reason = undefined;
  if (o.build) ensureBuilt(log);

  const cleanups: Array<() => Promise<void>> = [];
  const result: BenchResult = {
    format: RESULTS_FORMAT,
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
    stacks: [],
    steps: [],
    exactlyOnce: { accepted: 0, once: 0, missing: 0, duplicates: 0, unknown: 0, ok: false },
    targets: [],
    aborted: null,
    elapsedS: 0,
  };

  const flows = new Map<string, FlowRec>();
  const completions = { n: 0 };
  const receiver = await new BenchReceiver().start();
  cleanups.push(() => receiver.close());
  try {
    const nats: BenchNats = await startBenchNats({ auth: o.auth });
    cleanups.push(() => nats.close());
    result.meta.natsServer = nats.version;
    log(`bench: nats-server ${nats.version} pid ${nats.pid} on ${nats.server.url} (monitor ${nats.monitor}, identities ${o.auth ? 'on' : 'off'}), callbacks to ${receiver.url}`);
    if (o.ceiling) {
      log(`bench: measuring the JetStream ceiling (${o.ceilingSeconds} s each)…`);
      result.ceiling = await measureCeiling({ nc: nats.nc, seconds: o.ceilingSeconds, serverCpuMs: () => cpuMs(nats.pid), clientCpuMs: selfCpuMs, log });
    }
    const reads = countKvReads(nats.nc);

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
        completions.n++;
        onCompleted?.(rec);
      }
    };

    const modes: TaskMode[] = o.mode === 'both' ? ['noop', 'real'] : [o.mode];
    let stepNo = 0;
    outer: for (const mode of modes) {
      for (const history of o.history) {
        if (aborted) break outer;
        if (timeLeft() < 20_000) {
          aborted = `time limit: skipped ${mode} mode with history ${history} and what follows`;
          break outer;
        }
        let crashed: string | undefined;
        const svc: BenchServices = await startBenchServices(nats, {
          mode,
          history,
          logLevel: o.logLevel,
          logDir: o.logDir,
          cpuProfDir: o.cpuProfDir,
          onCrash: (why) => (crashed ??= why),
          log,
        });
        const stopSvc = () => svc.stop();
        cleanups.push(stopSvc);
        const procs: CpuProc[] = [{ name: 'nats-server', pid: () => nats.pid, system: true }, ...SERVICES.map((name) => ({ name, pid: () => svc.pid(name), system: true }))];
        if (svc.aws) {
          const awsPid = svc.aws.pid;
          procs.push({ name: 'local-aws', pid: () => awsPid, system: false });
        }
        const tracked: Tracked[] = procs.map((p) => ({ name: p.name, pid: p.pid() ?? 0, peakRss: 0 }));
        if (o.cpuProfDir) writeFileSync(resolve(o.cpuProfDir, mode, 'pids.json'), `${JSON.stringify(Object.fromEntries(tracked.map((t) => [t.pid, t.name])))}\n`);
        await sleep(500);
        const idleRss: Record<string, number> = {};
        for (const t of tracked) idleRss[t.name] = round(memMb(t.pid)?.rss ?? Number.NaN, 1);
        log(`bench: ${mode} mode, history ${history}: services up (${tracked.map((t) => `${t.name}=${t.pid}`).join(' ')}), logs in ${svc.logDir}`);
        if (o.idleSeconds > 0) {
          // The services' own start (connections, provisioning, first pulls, JIT) is not idleness: a stack
          // started on the server of an earlier one can pass the consumer check on that stack's pull requests
          // (the result partitions' last 30 s), so the window could begin while the services still start.
          await sleep(IDLE_SETTLE_MS);
          const idle = await idleCpu(procs, o.idleSeconds, nats.monitor);
          result.stacks.push({
            mode,
            history,
            idleCpuPct: idle.pct,
            idleSystemCpuPct: idle.systemPct,
            idleSeconds: o.idleSeconds,
            idleRssMb: idleRss,
            ...(idle.msgsPerSec !== undefined ? { idleMsgsPerSec: idle.msgsPerSec, idleApiPerSec: idle.apiPerSec } : {}),
          });
          log(
            `bench: idle for ${o.idleSeconds} s: ${idle.systemPct} % of a core (nats-server + services: ${procs
              .filter((p) => p.system)
              .map((p) => `${p.name} ${idle.pct[p.name]} %`)
              .join(', ')}); nats-server ${idle.msgsPerSec} msgs/s, ${idle.apiPerSec} JetStream API requests/s`,
          );
        }
        const sampler = new RssSampler(tracked);
        sampler.start(200);
        const payload = submissionBody(receiver.url, o.records, benchFlow(o.mode));

        for (const door of o.doors) {
          const sub: Submitter = submitter(door, { tenant: TENANT, apiKey: API_KEY, tenantNc: nats.tenantNc, http: svc.http, grpc: svc.grpc }, payload);
          const closeSub = () => sub.close();
          cleanups.push(closeSub);
          const ctx: StepCtx = {
            o,
            mode,
            history,
            nc: nats.nc,
            monitor: nats.monitor,
            flows,
            completions,
            procs,
            tracked,
            sampler,
            reads,
            submitter: sub,
            setOnCompleted: (f) => (onCompleted = f),
            log,
            stopped: () => aborted ?? currentAbort.reason ?? crashed ?? (timeLeft() <= 0 ? 'time limit' : undefined),
            timeLeft,
            ceiling: result.ceiling,
            idleRss,
          };
          const tag = `${mode} ${door} h-${history}`;
          // Warm-up (JIT, connections, consumers), not recorded.
          if (o.warmupSeconds > 0) await runStep(ctx, { kind: 'open', rate: Math.min(100, o.rates[0] ?? 100), durationS: o.warmupSeconds, step: -1, label: `${tag} warm-up` });
          const plan = planFor(o, mode);
          let pendingBurst: Measured | undefined;
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
              aborted = `time limit: skipped ${plan.length - i} ${tag} step(s)`;
              break;
            }
            const durationS = Math.min(p.durationS ?? o.duration, budget);
            const spec: StepSpec = {
              ...p,
              durationS,
              step: stepNo++,
              label: `${tag} ${p.kind === 'open' ? `${p.rate}/s${p.afterBurst ? ' after burst' : ''}` : p.kind === 'burst' ? `burst ${p.flows}` : 'saturation'}`,
            };
            const m = await runStep(ctx, spec);
            if (!m) continue;
            if (p.kind === 'burst') {
              pendingBurst = m;
              continue;
            }
            const r = m.finish();
            result.steps.push(r);
            log(`bench: ${describeStep(r)}`);
            if (pendingBurst) {
              // The burst is finished after its following step, when its own flows have completed.
              await pendingBurst.settle(Math.min(o.drainSeconds * 1000, Math.max(0, timeLeft() - 15_000)));
              const b = pendingBurst.finish();
              result.steps.splice(result.steps.length - 1, 0, b);
              log(`bench: ${describeStep(b)}`);
              pendingBurst = undefined;
            }
            if (mode === 'real' && p.kind === 'saturation' && !o.realRates && r.completedPerSec > 0) plan.push({ kind: 'open', rate: Math.max(1, Math.round(r.completedPerSec / 2)) });
          }
          if (pendingBurst) result.steps.push(pendingBurst.finish());
          await sub.close();
          cleanups.splice(cleanups.indexOf(closeSub), 1);
          if (aborted) break;
        }
        sampler.stop();
        await svc.stop();
        cleanups.splice(cleanups.indexOf(stopSvc), 1);
        if (crashed) aborted ??= crashed;
      }
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
  if (o.out) writeResults(o.out, result);
  return result;
}

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
  const src = Math.max(
    newestMtime(join(root, 'libs'), (f) => f.endsWith('.ts') && !f.endsWith('.test.ts')),
    newestMtime(join(root, 'services'), (f) => f.endsWith('.ts') && !f.endsWith('.test.ts')),
  );
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
