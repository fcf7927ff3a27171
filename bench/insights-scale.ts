/**
 * insights at scale, in real mode (the models, the pools, S3): one flow at a time through the default
 * local stack (the test harness's: nats-server with identities, the four services from dist/ with
 * their default limits, local S3 and DynamoDB in this process), printing per flow the time from the
 * submission to its callback, the CPU per record of each process, and when each task ran.
 *
 *   node --import tsx bench/insights-scale.ts                       # 1,000 and 10,000 over HTTP, 50,000 by inputRef
 *   node --import tsx bench/insights-scale.ts --http 1000 --ref 20000 --runs 2
 *   node --import tsx bench/insights-scale.ts --cpu-prof /tmp/prof  # V8 profiles of the services (bench/profile.ts reads them)
 *   node --import tsx bench/insights-scale.ts --env JETFLOW_WORKER_THREADS=4 --out scale.json
 *   node --import tsx bench/insights-scale.ts --replicas 2      # two of each worker service (on a larger machine)
 *
 * Sizes over HTTP travel in the body (10,000 at most: the insights input schema); `--ref` sizes are
 * JSON lines in the local S3 under uploads/default/ and go as `inputRef`. Each flow gets a deadline of
 * `--deadline` ms (default 120,000) so a slow run is measured rather than cut off at insights' 10 s.
 * Run `npm run build` first (the services run from dist/).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { performance } from 'node:perf_hooks';
import { resolve } from 'node:path';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { createS3Client } from '@jetflow/storage';
import { makeFeedbackBatch, startCallbackReceiver, startJetflow } from '@jetflow/testing';
import { cpuMs, selfCpuMs } from './proc.js';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

interface Opts {
  http: number[];
  ref: number[];
  runs: number;
  deadline: number;
  cpuProf?: string;
  env: Record<string, string>;
  out?: string;
  /** Replicas of each worker service (dataset-generator, analyst). */
  replicas: number;
}

function parse(argv: string[]): Opts {
  const o: Opts = { http: [1_000, 10_000], ref: [50_000], runs: 1, deadline: 120_000, env: {}, replicas: 1 };
  const sizes = (v: string) => (v === 'none' ? [] : v.split(',').map((x) => Number(x.replace(/_/g, ''))));
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const v = () => {
      const x = argv[++i];
      if (x === undefined) throw new Error(`${a} needs a value`);
      return x;
    };
    if (a === '--http') o.http = sizes(v());
    else if (a === '--ref') o.ref = sizes(v());
    else if (a === '--runs') o.runs = Number(v());
    else if (a === '--deadline') o.deadline = Number(v());
    else if (a === '--cpu-prof') o.cpuProf = resolve(v());
    else if (a === '--out') o.out = v();
    else if (a === '--replicas') o.replicas = Number(v());
    else if (a === '--env') {
      const [k, ...rest] = v().split('=');
      o.env[k!] = rest.join('=');
    } else if (a === '--help') {
      process.stdout.write('usage: bench/insights-scale.ts [--http 1000,10000] [--ref 50000] [--runs N] [--deadline MS] [--replicas N] [--cpu-prof DIR] [--env K=V]... [--out FILE]\n');
      process.exit(0);
    } else throw new Error(`unknown option ${a}`);
  }
  for (const n of [...o.http, ...o.ref]) if (!Number.isInteger(n) || n < 1) throw new Error(`not a size: ${n}`);
  if (o.http.some((n) => n > 10_000)) throw new Error('--http sizes are at most 10,000 (the insights input schema); give larger ones to --ref');
  return o;
}

interface TaskView {
  name: string;
  status: string;
  dispatchedAt: string | null;
  finishedAt: string | null;
  durationMs: number | null;
  chunks?: { count: number };
}

async function main() {
  const o = parse(process.argv.slice(2));
  const serviceEnv: Record<string, string> = {};
  if (o.cpuProf) {
    mkdirSync(o.cpuProf, { recursive: true });
    Object.assign(serviceEnv, { NODE_OPTIONS: `--import ${resolve('bench/cpu-prof-preload.mjs')}`, JETFLOW_CPU_PROF_DIR: o.cpuProf });
  }
  const cb = await startCallbackReceiver();
  if (!Number.isInteger(o.replicas) || o.replicas < 1) throw new Error(`--replicas: not a count: ${o.replicas}`);
  const j = await startJetflow({ env: { ...o.env, ...serviceEnv }, replicas: { 'dataset-generator': o.replicas, analyst: o.replicas } });
  process.stdout.write(`cores ${availableParallelism()}, worker replicas ${o.replicas}, JETFLOW_WORKER_THREADS ${o.env.JETFLOW_WORKER_THREADS ?? 'default'}\n`);
  const s3 = createS3Client({ s3Endpoint: j.aws!.s3Endpoint, region: 'us-east-1', credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
  const procs = () => [
    ...(j.nats?.pid ? [{ name: 'nats-server', pid: j.nats.pid }] : []),
    ...j.stack.procs.filter((p) => p.proc.pid).map((p) => ({ name: p.index ? `${p.name}-${p.index}` : p.name, pid: p.proc.pid! })),
  ];
  const sample = () => {
    const m: Record<string, number> = {};
    for (const p of procs()) m[p.name] = cpuMs(p.pid) ?? Number.NaN;
    m['driver+local-aws'] = selfCpuMs();
    return m;
  };
  const results: unknown[] = [];
  let seq = 0;
  try {
    // One small flow first: the models and pools are warm, the JIT too, before anything is measured.
    await runOne(300, 'http', true);
    for (let r = 0; r < o.runs; r++) {
      for (const n of o.http) results.push(await runOne(n, 'http'));
      for (const n of o.ref) results.push(await runOne(n, 'inputRef'));
    }
  } finally {
    s3.destroy();
    await j.stop();
    await cb.close();
  }
  if (o.out) writeFileSync(o.out, JSON.stringify({ at: new Date().toISOString(), options: o, results }, null, 2));
  if (o.cpuProf) process.stdout.write(`\nprofiles in ${o.cpuProf} (node --import tsx bench/profile.ts ${o.cpuProf})\n`);

  async function runOne(n: number, door: 'http' | 'inputRef', warmup = false) {
    const { records } = makeFeedbackBatch({ n, seed: 1000 + n, outliers: Math.max(1, Math.round(n / 1000)) });
    const key = `bench-${process.pid}-${++seq}`;
    let json: Record<string, unknown>;
    if (door === 'inputRef') {
      const s3Key = `uploads/default/${key}.jsonl`;
      await s3.send(new PutObjectCommand({ Bucket: 'jetflow-data', Key: s3Key, Body: records.map((x) => JSON.stringify(x)).join('\n') + '\n' }));
      json = { flow: 'insights', inputRef: `s3://jetflow-data/${s3Key}` };
    } else json = { flow: 'insights', input: { records } };
    Object.assign(json, { callbackUrl: cb.url, idempotencyKey: key, deadlineMs: o.deadline });
    const before = sample();
    const t0 = performance.now();
    const res = await j.api('/v1/flows', { method: 'POST', json });
    const acceptedMs = performance.now() - t0;
    if (res.status !== 202) throw new Error(`submit ${n}: ${res.status} ${await res.text()}`);
    const { flowId } = (await res.json()) as { flowId: string };
    await cb.waitForFlows([flowId], o.deadline + 30_000);
    const totalMs = performance.now() - t0;
    const after = sample();
    const body = cb.byFlow(flowId)[0]!.body as unknown as { status: string; durationMs: number; errors: unknown[] };
    const view = (await (await j.api(`/v1/flows/${flowId}`)).json()) as { submittedAt: string; stages: Array<{ tasks: TaskView[] }> };
    if (warmup) return undefined;
    const cpu: Record<string, { ms: number; usPerRecord: number }> = {};
    let systemMs = 0;
    for (const k of Object.keys(after)) {
      const ms = after[k]! - (before[k] ?? Number.NaN);
      cpu[k] = { ms: Math.round(ms), usPerRecord: Math.round((ms * 1000) / n) };
      if (k !== 'driver+local-aws' && Number.isFinite(ms)) systemMs += ms;
    }
    const t = Date.parse(view.submittedAt);
    const tasks = view.stages
      .flatMap((s) => s.tasks)
      .map((x) => ({
        task: x.name,
        status: x.status,
        chunks: x.chunks?.count ?? null,
        startMs: x.dispatchedAt ? Date.parse(x.dispatchedAt) - t : null,
        endMs: x.finishedAt ? Date.parse(x.finishedAt) - t : null,
        durationMs: x.durationMs,
      }));
    const out = {
      records: n,
      door,
      flowId,
      status: body.status,
      errors: body.errors,
      acceptedMs: Math.round(acceptedMs),
      callbackMs: Math.round(totalMs),
      flowDurationMs: body.durationMs,
      cpu,
      systemCpuMs: Math.round(systemMs),
      systemUsPerRecord: Math.round((systemMs * 1000) / n),
      tasks,
    };
    print(out);
    return out;
  }
}

function print(r: {
  records: number;
  door: string;
  status: string;
  acceptedMs: number;
  callbackMs: number;
  cpu: Record<string, { ms: number; usPerRecord: number }>;
  systemCpuMs: number;
  systemUsPerRecord: number;
  tasks: Array<{ task: string; chunks: number | null; startMs: number | null; endMs: number | null }>;
}) {
  const lines = [
    `\n${r.records.toLocaleString('en')} records via ${r.door}: ${r.status}, callback after ${(r.callbackMs / 1000).toFixed(2)} s (accepted in ${r.acceptedMs} ms)`,
    `  CPU (ms, µs/record): ${Object.entries(r.cpu)
      .map(([k, v]) => `${k} ${v.ms} (${v.usPerRecord})`)
      .join(', ')}; system ${r.systemCpuMs} ms (${r.systemUsPerRecord} µs/record)`,
    '  tasks (from submission, s):',
    ...r.tasks.map(
      (x) =>
        `    ${x.task.padEnd(11)} ${x.chunks !== null ? `${String(x.chunks).padStart(4)} chunks` : '          '}  ${((x.startMs ?? 0) / 1000).toFixed(2).padStart(6)} → ${((x.endMs ?? 0) / 1000).toFixed(2).padStart(6)}`,
    ),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`insights-scale: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
