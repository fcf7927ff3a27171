import { SERVICES } from '@jetflow/stack';
import { fmt, table } from '../stats.js';
import type { BenchResult, StepResult } from './results.js';
import { short } from './steps.js';

const TARGETS = {
  saturation: 800,
  p99At100: 20,
  p99At300: 50,
  cpuMsPerFlow: 2,
  utilisation: 0.5,
  servicesRssMb: 400,
  realP99AtHalf: 1_000,
};

/** The targets of docs/PERFORMANCE.md, from the first door and history setting that ran them. */
export function checkTargets(r: BenchResult): BenchResult['targets'] {
  const out: BenchResult['targets'] = [];
  const first = r.steps[0];
  const same = (s: StepResult) => !first || (s.door === first.door && s.history === first.history);
  const noop = r.steps.filter((s) => s.mode === 'noop' && same(s) && !s.afterBurst && s.kind !== 'burst');
  const sat = noop.find((s) => s.kind === 'saturation');
  const at = (rate: number) => noop.find((s) => s.kind === 'open' && s.offered === rate);
  out.push({
    target: `noop saturation >= ${TARGETS.saturation} flows/s`,
    measured: sat ? `${fmt(sat.completedPerSec)} flows/s` : 'not run',
    ok: sat ? sat.completedPerSec >= TARGETS.saturation : null,
  });
  for (const [rate, lim] of [
    [100, TARGETS.p99At100],
    [300, TARGETS.p99At300],
  ] as const) {
    const s = at(rate);
    out.push({
      target: `noop p99 <= ${lim} ms at ${rate} flows/s`,
      measured: s ? `${fmt(s.latencyMs.p99)} ms (${s.exactlyOnce.missing} missing)` : 'not run',
      ok: s ? s.latencyMs.p99 <= lim && s.exactlyOnce.missing === 0 : null,
    });
  }
  const cpuStep = sat ?? noop[noop.length - 1];
  out.push({
    target: `noop CPU <= ${TARGETS.cpuMsPerFlow} ms/flow (nats-server + services)`,
    measured: cpuStep ? `${fmt(cpuStep.cpuMsPerFlow.system, 2)} ms (${cpuStep.kind === 'saturation' ? 'saturation' : `${cpuStep.offered}/s`})` : 'not run',
    ok: cpuStep ? cpuStep.cpuMsPerFlow.system <= TARGETS.cpuMsPerFlow : null,
  });
  out.push({
    target: `noop >= ${TARGETS.utilisation * 100}% of the measured ceiling`,
    measured: sat?.utilisation ? `${fmt(sat.utilisation.combined * 100)}% (JetStream ${fmt(sat.utilisation.js * 100)}% + KV ${fmt(sat.utilisation.kv * 100)}%)` : 'not run',
    ok: sat?.utilisation ? sat.utilisation.combined >= TARGETS.utilisation : null,
  });
  out.push({
    target: `noop services RSS < ${TARGETS.servicesRssMb} MB at saturation`,
    measured: sat ? `${fmt(sat.servicesPeakRssMb)} MB (PSS, shared pages counted once: ${fmt(sat.servicesPeakPssMb)} MB)` : 'not run',
    ok: sat ? sat.servicesPeakRssMb < TARGETS.servicesRssMb : null,
  });
  const real = r.steps.filter((s) => s.mode === 'real' && same(s));
  const rsat = real.find((s) => s.kind === 'saturation');
  const half = real.find((s) => s.kind === 'open' && !s.afterBurst);
  out.push({
    target: `real p99 < ${TARGETS.realP99AtHalf} ms at half its saturation`,
    measured: half ? `${fmt(half.latencyMs.p99)} ms at ${half.offered}/s (saturation ${rsat ? fmt(rsat.completedPerSec) : '?'}/s)` : 'not run',
    ok: half ? half.latencyMs.p99 < TARGETS.realP99AtHalf && half.exactlyOnce.missing === 0 : null,
  });
  out.push({
    target: 'every flow completed exactly once',
    measured: `${r.exactlyOnce.once}/${r.exactlyOnce.accepted} once, ${r.exactlyOnce.missing} missing, ${r.exactlyOnce.duplicates} duplicated, ${r.exactlyOnce.unknown} unknown`,
    ok: r.exactlyOnce.ok,
  });
  return out;
}

/** A step's short name: `100/s`, `sat w=1000`, `burst 3000`, `100/s after burst`. */
export function stepName(s: StepResult): string {
  if (s.kind === 'burst') return `burst ${s.submitted}`;
  if (s.kind === 'saturation') return `sat w=${s.window}`;
  return `${s.offered}/s${s.afterBurst ? ' after burst' : ''}`;
}

export function describeStep(s: StepResult): string {
  return `${s.mode} ${s.door} history ${s.history} ${stepName(s)}: ${fmt(s.completedPerSec)} flows/s, p50 ${fmt(s.latencyMs.p50)} p99 ${fmt(s.latencyMs.p99)} max ${fmt(s.latencyMs.max)} ms, ${fmt(s.cpuMsPerFlow.system, 2)} ms CPU/flow, exactly-once ${s.exactlyOnce.ok ? 'yes' : 'NO'}`;
}

export function formatReport(r: BenchResult): string {
  const lines: string[] = [];
  const id = (s: StepResult) => [s.mode, s.door, s.history, stepName(s)];
  lines.push(
    `Jetflow bench — ${r.meta.startedAt} — node ${r.meta.node}, nats-server ${r.meta.natsServer}, ${r.meta.cpus} CPUs (${r.meta.cpuModel}), NATS identities ${r.meta.options.auth ? 'on' : 'off'}`,
  );
  if (r.ceiling) {
    const c = r.ceiling;
    lines.push(
      `Ceiling (same server, ${c.messageBytes} B messages): JetStream publish+consume ${fmt(c.jsPubConsumePerSec)} msg/s (server ${fmt(c.jsCpuUsPerMsg.server)} µs + client ${fmt(c.jsCpuUsPerMsg.client)} µs CPU/msg); KV CAS update ${fmt(c.kvUpdatePerSec)} op/s (server ${fmt(c.kvCpuUsPerOp.server)} µs + client ${fmt(c.kvCpuUsPerOp.client)} µs CPU/op)`,
    );
  }
  const procs = ['nats-server', ...SERVICES];
  if (r.stacks.length) {
    lines.push('');
    lines.push(
      table(
        ['mode', 'history', 'idle cpu % of a core', ...procs.map(short), 'nats msgs/s', 'js api/s', ...SERVICES.map((p) => `${short(p)} MB`)],
        r.stacks.map((s) => [
          s.mode,
          s.history,
          fmt(s.idleSystemCpuPct, 2),
          ...procs.map((p) => fmt(s.idleCpuPct[p], 2)),
          fmt(s.idleMsgsPerSec, 1),
          fmt(s.idleApiPerSec, 1),
          ...SERVICES.map((p) => fmt(s.idleRssMb[p], 0)),
        ]),
      ),
    );
  }
  lines.push('');
  lines.push(
    table(
      ['mode', 'door', 'history', 'step', 'backlog', 'done/s', 'p50 ms', 'p95 ms', 'p99 ms', 'max ms', 'flows', 'once', 'js msg/flow', 'kv w/flow', 'kv r/flow', 'util %'],
      r.steps.map((s) => [
        ...id(s),
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
  lines.push(
    table(
      ['mode', 'door', 'history', 'step', 'cpu ms/flow', ...procs.map(short), 'driver', 'cores used', ...SERVICES.map((p) => `${short(p)} MB`), 'svc MB', 'svc PSS MB', 'nats MB'],
      r.steps.map((s) => [
        ...id(s),
        fmt(s.cpuMsPerFlow.system, 3),
        ...procs.map((p) => fmt(s.cpuMsPerFlow.byProcess[p], 3)),
        fmt(s.cpuMsPerFlow.driver, 3),
        fmt(
          Object.entries(s.cpuCores).reduce((a, [k, v]) => a + (procs.includes(k) ? v : 0), 0),
          2,
        ),
        ...SERVICES.map((p) => fmt(s.peakRssMb[p], 0)),
        fmt(s.servicesPeakRssMb, 0),
        fmt(s.servicesPeakPssMb, 0),
        fmt(s.peakRssMb['nats-server'], 0),
      ]),
    ),
  );
  const streams = [...new Set(r.steps.flatMap((s) => Object.keys(s.streamMsgsPerFlow)))].sort();
  if (streams.length) {
    lines.push('');
    lines.push('Stored messages per flow, per stream (last_seq deltas; KV_* are KV writes):');
    lines.push(
      table(
        ['mode', 'door', 'history', 'step', ...streams.map((k) => k.replace(/^JETFLOW_/, '').replace(/^KV_jetflow_/, 'kv:'))],
        r.steps.map((s) => [...id(s), ...streams.map((k) => fmt(s.streamMsgsPerFlow[k] ?? 0, 2))]),
      ),
    );
  }
  lines.push('');
  lines.push('Targets (docs/PERFORMANCE.md):');
  for (const t of r.targets) lines.push(`  ${t.ok === null ? '·' : t.ok ? '✓' : '✗'} ${t.target}: ${t.measured}`);
  if (r.aborted) lines.push(`\nStopped early: ${r.aborted}`);
  lines.push(`\nTotal ${fmt(r.elapsedS)} s.`);
  return lines.join('\n');
}
