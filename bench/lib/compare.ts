import { SERVICES } from '@jetflow/stack';
import { fmt, table } from '../stats.js';
import type { BenchResult, StepResult } from './results.js';
import { stepName } from './report.js';
import { short } from './steps.js';

/** The change from a to b in %, signed; undefined when it has no meaning (a missing, or a zero base). */
export function changePct(a: number | undefined, b: number | undefined): number | undefined {
  if (a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b)) return undefined;
  if (a === 0) return b === 0 ? 0 : undefined;
  return ((b - a) / Math.abs(a)) * 100;
}

const pct = (x: number | undefined) => (x === undefined ? '–' : `${x > 0 ? '+' : ''}${x.toFixed(1)} %`);

/** Steps match by mode, door, history and step (a burst by position, whatever its flow count). */
const key = (s: StepResult) => `${s.mode} ${s.door} history ${s.history} ${s.kind === 'burst' ? 'burst' : stepName(s)}`;

const FIGURES: Array<[string, (s: StepResult) => number | undefined]> = [
  ['done/s', (s) => s.completedPerSec],
  ['p50 ms', (s) => s.latencyMs.p50],
  ['p95 ms', (s) => s.latencyMs.p95],
  ['p99 ms', (s) => s.latencyMs.p99],
  ['max ms', (s) => s.latencyMs.max],
  ['cpu ms/flow', (s) => s.cpuMsPerFlow.system],
  ...['nats-server', ...SERVICES].map((p): [string, (s: StepResult) => number | undefined] => [`  ${short(p)} ms/flow`, (s) => s.cpuMsPerFlow.byProcess[p]]),
  ['js msg/flow', (s) => s.jsMsgsPerFlow],
  ['kv w/flow', (s) => s.kvWritesPerFlow],
  ['kv r/flow', (s) => s.kvReadsPerFlow],
  ['svc RSS MB', (s) => s.servicesPeakRssMb],
  ['svc PSS MB', (s) => s.servicesPeakPssMb],
];

/** Two results files side by side: every figure of every step both ran, with the change in %. */
export function formatCompare(a: BenchResult, b: BenchResult, names: [string, string] = ['A', 'B']): string {
  const lines: string[] = [];
  lines.push(`A: ${names[0]} — ${a.meta.startedAt}, node ${a.meta.node}, nats-server ${a.meta.natsServer}, ${a.meta.cpus} CPUs`);
  lines.push(`B: ${names[1]} — ${b.meta.startedAt}, node ${b.meta.node}, nats-server ${b.meta.natsServer}, ${b.meta.cpus} CPUs`);
  const rows: string[][] = [];
  const row = (what: string, figure: string, x: number | undefined, y: number | undefined, digits = 2) => rows.push([what, figure, fmt(x, digits), fmt(y, digits), pct(changePct(x, y))]);
  if (a.ceiling || b.ceiling) {
    row('ceiling', 'JetStream msg/s', a.ceiling?.jsPubConsumePerSec, b.ceiling?.jsPubConsumePerSec);
    row('ceiling', 'KV CAS op/s', a.ceiling?.kvUpdatePerSec, b.ceiling?.kvUpdatePerSec);
  }
  for (const sa of a.stacks) {
    const sb = b.stacks.find((s) => s.mode === sa.mode && s.history === sa.history);
    if (!sb) continue;
    const what = `${sa.mode} history ${sa.history} idle`;
    row(what, 'cpu % of a core', sa.idleSystemCpuPct, sb.idleSystemCpuPct);
    for (const p of Object.keys(sa.idleCpuPct)) if (p !== 'driver' && p in sb.idleCpuPct) row(what, `${p} cpu %`, sa.idleCpuPct[p], sb.idleCpuPct[p]);
    row(what, 'nats-server msgs/s', sa.idleMsgsPerSec, sb.idleMsgsPerSec, 1);
    row(what, 'JetStream API requests/s', sa.idleApiPerSec, sb.idleApiPerSec, 1);
  }
  const bByKey = new Map(b.steps.map((s) => [key(s), s]));
  const onlyA: string[] = [];
  for (const sa of a.steps) {
    const sb = bByKey.get(key(sa));
    if (!sb) {
      onlyA.push(key(sa));
      continue;
    }
    bByKey.delete(key(sa));
    for (const [figure, get] of FIGURES) row(key(sa), figure, get(sa), get(sb));
  }
  lines.push('');
  lines.push(table(['step', 'figure', 'A', 'B', 'change'], rows));
  if (onlyA.length) lines.push(`\nOnly in A: ${onlyA.join('; ')}`);
  if (bByKey.size) lines.push(`\nOnly in B: ${[...bByKey.keys()].join('; ')}`);
  return lines.join('\n');
}
