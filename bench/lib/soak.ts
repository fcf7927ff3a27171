import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { deriveFlowId } from '@jetflow/flows';
import { SERVICES, type ServiceName } from '@jetflow/stack';
import { memMb } from '../proc.js';
import { fmt, percentiles, table, type Percentiles } from '../stats.js';
import { round } from './cpu.js';
import { benchFlow, submissionBody, submitter, type Submitter } from './doors.js';
import type { History, TaskMode } from './options.js';
import { API_KEY, TENANT, startBenchNats, startBenchServices } from './stack.js';
import { svgChart } from './svg.js';

export type SoakDoor = 'http' | 'nats';

export interface SoakOptions {
  /** Offered flows/s, open loop. */
  rate: number;
  minutes: number;
  /** Seconds between kills (SIGKILL of a random worker or orchestrator); 0 = never. */
  killEverySeconds: number;
  /** Directory for soak-report.json and soak.svg. */
  out: string;
  doors: SoakDoor[];
  mode: TaskMode;
  history: History;
  /** After the last submission, how long accepted flows may take before they count as lost (s). */
  graceSeconds: number;
  sampleSeconds: number;
  /** Width of the latency windows (s). */
  windowSeconds: number;
  records: number;
  auth: boolean;
  logLevel: string;
  logDir: string | undefined;
  progress: boolean;
}

export const SOAK_DEFAULTS: SoakOptions = {
  rate: 20,
  minutes: 30,
  killEverySeconds: 180,
  out: 'soak-results',
  doors: ['http'],
  mode: 'real',
  history: 'on',
  graceSeconds: 60,
  sampleSeconds: 5,
  windowSeconds: 60,
  records: 10,
  auth: true,
  logLevel: 'info',
  logDir: undefined,
  progress: true,
};

/** Which services the soak kills: the workers and the orchestrator (ingest is the door the driver talks to). */
export const KILLABLE: readonly ServiceName[] = ['orchestrator', 'dataset-generator', 'analyst'];

interface Delivery {
  at: number;
  deliveryId: string;
  hash: string;
  status: string;
}

interface SoakFlow {
  /** Scheduled time, ms since the soak started. */
  t: number;
  door: SoakDoor;
  accepted: boolean;
  refused?: string;
  deliveries: Delivery[];
}

/** What the deliveries of accepted flows say, per the at-least-once contract of the callback. */
export interface DeliveryCounts {
  accepted: number;
  completed: number;
  /** Accepted, and no callback by the end of the grace. */
  lost: number;
  /** A flow delivered twice with another delivery id or another body: the flow ran twice. */
  duplicated: number;
  /** Deliveries repeated with the same Jetflow-Delivery-Id and the same body (HTTP at-least-once), and their flows. */
  httpRetries: { deliveries: number; flows: number };
  notSucceeded: number;
}

/** Classifies each accepted flow by its deliveries (pure: the soak's verdict, unit-tested). */
export function classifyDeliveries(flows: Iterable<{ accepted: boolean; deliveries: Array<{ deliveryId: string; hash: string; status: string }> }>): DeliveryCounts {
  const c: DeliveryCounts = { accepted: 0, completed: 0, lost: 0, duplicated: 0, httpRetries: { deliveries: 0, flows: 0 }, notSucceeded: 0 };
  for (const f of flows) {
    if (!f.accepted) continue;
    c.accepted++;
    const [first, ...rest] = f.deliveries;
    if (!first) {
      c.lost++;
      continue;
    }
    c.completed++;
    if (first.status !== 'succeeded') c.notSucceeded++;
    if (!rest.length) continue;
    const retries = rest.filter((d) => d.deliveryId === first.deliveryId && d.hash === first.hash).length;
    if (retries < rest.length) c.duplicated++;
    if (retries) {
      c.httpRetries.deliveries += retries;
      c.httpRetries.flows++;
    }
  }
  return c;
}

/**
 * The growth of a memory series in MB/hour, by least squares with one intercept per process id: a
 * restarted service starts low again, which a single line would read as shrinking (or, restarted
 * early, as growing). Undefined with fewer than two samples of any one process.
 */
export function slopeMbPerHour(samples: Array<{ tS: number; pid: number; mb: number }>): number | undefined {
  const byPid = new Map<number, Array<{ tS: number; mb: number }>>();
  for (const s of samples) if (Number.isFinite(s.mb)) (byPid.get(s.pid) ?? byPid.set(s.pid, []).get(s.pid)!).push(s);
  let sxy = 0;
  let sxx = 0;
  for (const seg of byPid.values()) {
    if (seg.length < 2) continue;
    const mx = seg.reduce((a, s) => a + s.tS, 0) / seg.length;
    const my = seg.reduce((a, s) => a + s.mb, 0) / seg.length;
    for (const s of seg) {
      sxy += (s.tS - mx) * (s.mb - my);
      sxx += (s.tS - mx) ** 2;
    }
  }
  return sxx > 0 ? (sxy / sxx) * 3600 : undefined;
}

export interface SoakReport {
  meta: { startedAt: string; node: string; natsServer: string; options: SoakOptions };
  submitted: number;
  refused: number;
  counts: DeliveryCounts;
  /** Up to 20 lost flow ids, to look up. */
  lostFlowIds: string[];
  unknownCallbacks: number;
  latencyMs: Percentiles;
  /** Latency percentiles of the flows submitted in each window. */
  windows: Array<{ fromS: number; toS: number } & Percentiles>;
  kills: Array<{ tS: number; service: ServiceName; pid: number | undefined }>;
  restarts: Partial<Record<ServiceName, number>>;
  rss: {
    samples: Array<{ tS: number; mb: Record<string, number>; pid: Record<string, number> }>;
    /** Growth per process from slopeFromS on (MB/hour); null without two samples of one pid. */
    slopeMbPerHour: Record<string, number | null>;
    slopeFromS: number;
    firstMb: Record<string, number>;
    lastMb: Record<string, number>;
  };
  plot: string;
  aborted: string | null;
  elapsedS: number;
}

/** The callback receiver of the soak: every delivery of every flow, with its delivery id and a hash of its body. */
async function startSoakReceiver(onDelivery: (flowId: string, d: Delivery) => void, onUnknown: () => void): Promise<{ url: string; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const at = performance.now();
      res.writeHead(200, { 'content-length': '2' }).end('ok');
      const raw = Buffer.concat(chunks);
      let body: { flowId?: unknown; status?: unknown };
      try {
        body = JSON.parse(raw.toString('utf8')) as typeof body;
      } catch {
        return onUnknown();
      }
      if (typeof body?.flowId !== 'string') return onUnknown();
      onDelivery(body.flowId, {
        at,
        deliveryId: String(req.headers['jetflow-delivery-id'] ?? ''),
        hash: createHash('sha256').update(raw).digest('hex'),
        status: typeof body.status === 'string' ? body.status : '',
      });
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const addr = server.address();
  return {
    url: `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}/hook`,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** `npm run soak`: the stack at a fixed rate for a long time while its workers and orchestrator are killed. */
export async function runSoak(partial: Partial<SoakOptions> = {}, abort: { reason: string | undefined } = { reason: undefined }): Promise<SoakReport> {
  const o: SoakOptions = { ...SOAK_DEFAULTS, ...Object.fromEntries(Object.entries(partial).filter(([, v]) => v !== undefined)) };
  const log = (s: string) => {
    if (o.progress) process.stderr.write(`${s}\n`);
  };
  const outDir = resolve(o.out);
  mkdirSync(outDir, { recursive: true });
  const flows = new Map<string, SoakFlow>();
  let unknown = 0;
  // Times are ms since the driving started (flows, deliveries, kills, RSS samples); reset when it starts.
  let origin = performance.now();
  const now = () => performance.now() - origin;
  const receiver = await startSoakReceiver(
    (id, d) => {
      const f = flows.get(id);
      if (f) f.deliveries.push({ ...d, at: d.at - origin });
      else unknown++;
    },
    () => unknown++,
  );
  const report: SoakReport = {
    meta: { startedAt: new Date().toISOString(), node: process.version, natsServer: '', options: o },
    submitted: 0,
    refused: 0,
    counts: classifyDeliveries([]),
    lostFlowIds: [],
    unknownCallbacks: 0,
    latencyMs: percentiles([]),
    windows: [],
    kills: [],
    restarts: {},
    rss: { samples: [], slopeMbPerHour: {}, slopeFromS: 0, firstMb: {}, lastMb: {} },
    plot: join(outDir, 'soak.svg'),
    aborted: null,
    elapsedS: 0,
  };
  const cleanups: Array<() => Promise<void>> = [() => receiver.close()];
  const t0 = performance.now();
  try {
    const nats = await startBenchNats({ auth: o.auth });
    cleanups.push(() => nats.close());
    report.meta.natsServer = nats.version;
    const svc = await startBenchServices(nats, {
      mode: o.mode,
      history: o.history,
      logLevel: o.logLevel,
      logDir: o.logDir,
      cpuProfDir: undefined,
      restartOnExit: true,
      log,
    });
    cleanups.push(() => svc.stop());
    log(
      `soak: ${o.mode} mode, history ${o.history}, ${o.rate} flows/s through ${o.doors.join('+')} for ${o.minutes} min, a kill every ${o.killEverySeconds || '∞'} s; logs in ${svc.logDir}`,
    );
    const body = submissionBody(receiver.url, o.records, benchFlow(o.mode));
    const subs: Submitter[] = o.doors.map((d) => submitter(d, { tenant: TENANT, apiKey: API_KEY, tenantNc: nats.tenantNc, http: svc.http, grpc: svc.grpc }, body));
    cleanups.push(async () => {
      for (const s of subs) await s.close();
    });

    origin = performance.now();
    // RSS of every process on an interval, with its pid (a restart starts a new series).
    const procNames = ['nats-server', ...SERVICES];
    const pidOf = (name: string) => (name === 'nats-server' ? nats.pid : svc.pid(name as ServiceName));
    const sampleRss = () => {
      const mb: Record<string, number> = {};
      const pid: Record<string, number> = {};
      for (const name of procNames) {
        const p = pidOf(name);
        if (!p) continue;
        const m = memMb(p);
        // A killed process not yet reaped has no VmRSS: not a sample.
        if (!m || m.rss <= 0) continue;
        mb[name] = round(m.rss, 1);
        pid[name] = p;
      }
      report.rss.samples.push({ tS: round(now() / 1000, 2), mb, pid });
    };
    sampleRss();
    const rssTimer = setInterval(sampleRss, o.sampleSeconds * 1000);
    cleanups.push(async () => clearInterval(rssTimer));

    const durationMs = o.minutes * 60_000;
    const kills = o.killEverySeconds > 0 ? setInterval(() => void kill(), o.killEverySeconds * 1000) : undefined;
    cleanups.push(async () => clearInterval(kills));
    const kill = async () => {
      if (now() >= durationMs) return;
      const service = KILLABLE[Math.floor(Math.random() * KILLABLE.length)]!;
      const pid = svc.pid(service);
      report.kills.push({ tS: round(now() / 1000, 2), service, pid });
      log(`soak: t=${(now() / 1000).toFixed(0)}s SIGKILL ${service} (pid ${pid}); the supervisor restarts it`);
      await svc.stack.kill(service, 0, 'SIGKILL').catch(() => undefined);
    };

    // Open loop: arrivals at t0 + i/rate, alternating doors; latency from the scheduled time.
    const n = Math.max(1, Math.round(o.rate * o.minutes * 60));
    let i = 0;
    let lastLog = 0;
    const tag = Date.now().toString(36);
    await new Promise<void>((res) => {
      const tick = () => {
        const t = now();
        while (i < n && (i * 1000) / o.rate <= t) {
          const at = (i * 1000) / o.rate;
          const sub = subs[i % subs.length]!;
          const key = `soak-${tag}-${i}`;
          const f: SoakFlow = { t: at, door: sub.door as SoakDoor, accepted: false, deliveries: [] };
          flows.set(deriveFlowId(TENANT, key), f);
          sub.submit(key, (ok, why) => {
            if (ok) f.accepted = true;
            else f.refused = why ?? 'refused';
          });
          i++;
        }
        if (t - lastLog >= 10_000) {
          lastLog = t;
          let accepted = 0;
          let done = 0;
          for (const f of flows.values()) {
            if (f.accepted) accepted++;
            if (f.deliveries.length) done++;
          }
          const rss = report.rss.samples.at(-1)?.mb ?? {};
          log(
            `soak: t=${(t / 1000).toFixed(0)}s sent=${i} accepted=${accepted} completed=${done} in-flight=${accepted - done} rss ${Object.entries(rss)
              .map(([k, v]) => `${k} ${v}`)
              .join(' ')} MB`,
          );
        }
        if (i >= n || abort.reason) return res();
        setTimeout(tick, Math.max(0, (i * 1000) / o.rate - now()));
      };
      tick();
    });
    clearInterval(kills);
    // Grace: every accepted flow gets its callback, or counts as lost. Then a little longer for late duplicates.
    const graceUntil = performance.now() + o.graceSeconds * 1000;
    const pending = () => [...flows.values()].filter((f) => f.refused === undefined && (!f.accepted || !f.deliveries.length)).length;
    while (performance.now() < graceUntil && pending() > 0 && !abort.reason) await sleep(200);
    await sleep(2_000);
    clearInterval(rssTimer);
    sampleRss();
    for (const name of SERVICES) {
      const r = svc.stack.find(name)?.restarts ?? 0;
      if (r) report.restarts[name] = r;
    }
  } catch (err) {
    report.aborted = `error: ${(err as Error).stack ?? String(err)}`;
  } finally {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  }
  report.aborted ??= abort.reason ?? null;
  finishReport(report, flows, unknown, o);
  report.elapsedS = round((performance.now() - t0) / 1000, 1);
  writeFileSync(join(outDir, 'soak-report.json'), `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(report.plot, soakSvg(report));
  return report;
}

function finishReport(r: SoakReport, flows: Map<string, SoakFlow>, unknown: number, o: SoakOptions): void {
  const all = [...flows.entries()];
  r.submitted = all.length;
  r.refused = all.filter(([, f]) => f.refused !== undefined).length;
  r.counts = classifyDeliveries(all.map(([, f]) => f));
  r.lostFlowIds = all
    .filter(([, f]) => f.accepted && !f.deliveries.length)
    .slice(0, 20)
    .map(([id]) => id);
  r.unknownCallbacks = unknown;
  const done = all.filter(([, f]) => f.accepted && f.deliveries.length).map(([, f]) => f);
  r.latencyMs = roundP(percentiles(done.map((f) => f.deliveries[0]!.at - f.t)));
  const windowMs = o.windowSeconds * 1000;
  const nWin = Math.max(1, Math.ceil((o.minutes * 60_000) / windowMs));
  r.windows = [];
  for (let w = 0; w < nWin; w++) {
    const from = w * windowMs;
    const to = Math.min((w + 1) * windowMs, o.minutes * 60_000);
    const xs = done.filter((f) => f.t >= from && f.t < to).map((f) => f.deliveries[0]!.at - f.t);
    r.windows.push({ fromS: round(from / 1000, 1), toS: round(to / 1000, 1), ...roundP(percentiles(xs)) });
  }
  const names = [...new Set(r.rss.samples.flatMap((s) => Object.keys(s.mb)))];
  // The slope leaves out the start (heaps and JIT caches grow to their working size): the first quarter, at most 2 minutes.
  r.rss.slopeFromS = round(Math.min(120, (o.minutes * 60) / 4), 1);
  for (const name of names) {
    const series = r.rss.samples.filter((s) => s.mb[name] !== undefined).map((s) => ({ tS: s.tS, pid: s.pid[name]!, mb: s.mb[name]! }));
    const slope = slopeMbPerHour(series.filter((s) => s.tS >= r.rss.slopeFromS));
    r.rss.slopeMbPerHour[name] = slope === undefined ? null : round(slope, 2);
    if (series.length) {
      r.rss.firstMb[name] = series[0]!.mb;
      r.rss.lastMb[name] = series.at(-1)!.mb;
    }
  }
}

const roundP = (p: Percentiles): Percentiles => ({ n: p.n, p50: round(p.p50, 1), p95: round(p.p95, 1), p99: round(p.p99, 1), max: round(p.max, 1), mean: round(p.mean, 1) });

/** Latency p50/p99 per window and RSS per process over time, kills marked. */
export function soakSvg(r: SoakReport): string {
  const markers = r.kills.map((k) => ({ x: k.tS / 60, label: `kill ${k.service}` }));
  const mid = (w: { fromS: number; toS: number }) => (w.fromS + w.toS) / 2 / 60;
  const names = [...new Set(r.rss.samples.flatMap((s) => Object.keys(s.mb)))];
  const o = r.meta.options;
  const xRange: [number, number] = [0, Math.max(o.minutes, (r.rss.samples.at(-1)?.tS ?? 0) / 60)];
  // A restarted process is a new line: a gap where the pid changes.
  const rssPoints = (n: string) => {
    const pts: Array<[number, number]> = [];
    let pid: number | undefined;
    for (const s of r.rss.samples) {
      if (s.pid[n] !== undefined && pid !== undefined && s.pid[n] !== pid) pts.push([s.tS / 60, Number.NaN]);
      pid = s.pid[n] ?? pid;
      pts.push([s.tS / 60, s.mb[n] ?? Number.NaN]);
    }
    return pts;
  };
  return svgChart(
    [
      {
        title: 'Callback latency per window (from the scheduled submission)',
        xLabel: 'minutes',
        yLabel: 'ms',
        series: [
          { name: 'p50', points: r.windows.map((w) => [mid(w), w.p50]) },
          { name: 'p99', points: r.windows.map((w) => [mid(w), w.p99]) },
        ],
        markers,
        xRange,
      },
      {
        title: 'RSS per process',
        xLabel: 'minutes',
        yLabel: 'MB',
        series: names.map((n) => ({ name: n, points: rssPoints(n) })),
        markers,
        xRange,
      },
    ],
    `Jetflow soak: ${o.rate} flows/s, ${o.mode} mode, history ${o.history}, ${o.doors.join('+')}, ${r.kills.length} kills (dashed)`,
  );
}

export function formatSoak(r: SoakReport): string {
  const c = r.counts;
  const lines: string[] = [];
  const o = r.meta.options;
  lines.push(
    `Jetflow soak — ${r.meta.startedAt} — node ${r.meta.node}, nats-server ${r.meta.natsServer}; ${o.rate} flows/s for ${o.minutes} min through ${o.doors.join('+')}, ${o.mode} mode, history ${o.history}`,
  );
  lines.push(
    `submitted ${r.submitted}, refused ${r.refused}, accepted ${c.accepted}, completed ${c.completed}, lost ${c.lost}, duplicated ${c.duplicated}, HTTP at-least-once retries ${c.httpRetries.deliveries} (${c.httpRetries.flows} flows), not succeeded ${c.notSucceeded}, unknown callbacks ${r.unknownCallbacks}`,
  );
  if (r.lostFlowIds.length) lines.push(`lost (first ${r.lostFlowIds.length}): ${r.lostFlowIds.join(' ')}`);
  lines.push(`latency ms: p50 ${fmt(r.latencyMs.p50)} p95 ${fmt(r.latencyMs.p95)} p99 ${fmt(r.latencyMs.p99)} max ${fmt(r.latencyMs.max)} (${r.latencyMs.n} flows)`);
  lines.push(
    `kills: ${r.kills.map((k) => `${k.tS.toFixed(0)}s ${k.service}`).join(', ') || 'none'}; restarts: ${
      Object.entries(r.restarts)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ') || 'none'
    }`,
  );
  lines.push('');
  lines.push(
    table(
      ['window s', 'flows', 'p50 ms', 'p95 ms', 'p99 ms', 'max ms'],
      r.windows.map((w) => [`${w.fromS}–${w.toS}`, String(w.n), fmt(w.p50), fmt(w.p95), fmt(w.p99), fmt(w.max)]),
    ),
  );
  lines.push('');
  const names = Object.keys(r.rss.slopeMbPerHour);
  lines.push(
    table(
      ['process', 'first MB', 'last MB', 'slope MB/hour'],
      names.map((n) => [n, fmt(r.rss.firstMb[n]), fmt(r.rss.lastMb[n]), fmt(r.rss.slopeMbPerHour[n] ?? undefined, 2)]),
    ),
  );
  lines.push('');
  lines.push(`plot: ${r.plot}`);
  if (r.aborted) lines.push(`Stopped early: ${r.aborted}`);
  return lines.join('\n');
}
