/**
 * Where a flow's latency goes, hop by hop: submits flows through the NATS door at a fixed rate to a fresh
 * stack, then reads each flow's state (task dispatch/start/finish times written by the orchestrator and the
 * workers) against the callback's arrival, and prints p50/p99 per phase and the phases of the slowest 1 %.
 *
 *   node --import tsx bench/phases.ts [--rate 300] [--seconds 10] [--mode noop|real]
 *
 * Phases: submit → saga start; stage 0 dispatch → last task started; stage 0 run; last stage-0 result →
 * first stage-1 dispatch; stage 1 dispatch → start; stage 1 run; last stage-1 result → flow end; flow end →
 * callback arrival. Clock: every process reads the same machine clock, so the times are comparable.
 */
import { parseArgs } from 'node:util';
import { startCallbackReceiver, startJetflow, sampleSubmission } from '@jetflow/testing';
import { deriveFlowId } from '@jetflow/flows';

const { values } = parseArgs({ options: { rate: { type: 'string', default: '300' }, seconds: { type: 'string', default: '10' }, mode: { type: 'string', default: 'noop' } } });
const rate = Number(values.rate);
const secs = Number(values.seconds);
if (!(rate > 0) || !(secs > 0) || !['noop', 'real'].includes(values.mode)) throw new Error('usage: --rate <flows/s> --seconds <s> --mode noop|real');
const real = values.mode === 'real';
const cb = await startCallbackReceiver({ secret: 'test-callback-secret' });
const j = await startJetflow({ env: { JETFLOW_TASK_MODE: values.mode }, aws: real });
try {
  const js = j.nc.jetstream();
  const due = new Map<string, number>();
  const t0 = Date.now() + 200;
  for (let i = 0; i < rate * secs; i++) {
    const at = t0 + (i * 1000) / rate;
    const w = at - Date.now();
    if (w > 0) await new Promise((r) => setTimeout(r, w));
    const msgId = `phases-${i}`;
    due.set(deriveFlowId('default', msgId), at);
    void js.publish('jetflow.ingest.default.insights', JSON.stringify(sampleSubmission(cb.url)), { msgID: msgId });
  }
  await cb.waitForFlows([...due.keys()], 120_000);
  const kv = await js.views.kv('jetflow_flows');
  type T = { stage: number; dispatchedAt: number; startedAt: number; finishedAt: number };
  const rows: Array<Record<string, number>> = [];
  const slowest: Array<{ flowId: string; index: number; total: number; atMs: number }> = [];
  let index = 0;
  for (const [flowId, at] of due) {
    slowest.push({ flowId, index: index++, total: cb.byFlow(flowId)[0]!.at - at, atMs: at - t0 });
    const d = cb.byFlow(flowId)[0]!;
    const e = await kv.get(flowId);
    const s = JSON.parse(new TextDecoder().decode(e!.value)) as { startedAt: number; finishedAt: number; tasks: Record<string, T> };
    const tasks = Object.values(s.tasks);
    const st = (k: number) => tasks.filter((x) => x.stage === k);
    const max = (a: number[]) => Math.max(...a);
    const min = (a: number[]) => Math.min(...a);
    rows.push({
      total: d.at - at,
      'submit → start': s.startedAt - at,
      's0 dispatch → started': max(st(0).map((x) => x.startedAt - x.dispatchedAt)),
      's0 run': max(st(0).map((x) => x.finishedAt - x.startedAt)),
      's0 done → s1 dispatch': min(st(1).map((x) => x.dispatchedAt)) - max(st(0).map((x) => x.finishedAt)),
      's1 dispatch → started': max(st(1).map((x) => x.startedAt - x.dispatchedAt)),
      's1 run': max(st(1).map((x) => x.finishedAt - x.startedAt)),
      's1 done → flow end': s.finishedAt - max(st(1).map((x) => x.finishedAt)),
      'flow end → callback': d.at - s.finishedAt,
    });
  }
  rows.sort((a, b) => a.total! - b.total!);
  slowest.sort((a, b) => b.total - a.total);
  const slow = rows.slice(Math.floor(rows.length * 0.99));
  console.log(`${rows.length} flows at ${rate}/s, ${values.mode} mode (ms)`);
  console.log(`${'phase'.padEnd(24)} ${'p50'.padStart(7)} ${'p99'.padStart(7)}  slowest 1 %: mean`);
  for (const k of Object.keys(rows[0]!)) {
    const v = rows.map((r) => r[k]!).sort((a, b) => a - b);
    const mean = slow.reduce((a, r) => a + r[k]!, 0) / slow.length;
    console.log(`${k.padEnd(24)} ${v[Math.floor(v.length / 2)]!.toFixed(1).padStart(7)} ${v[Math.floor(v.length * 0.99)]!.toFixed(1).padStart(7)}  ${mean.toFixed(1)}`);
  }
  console.log(
    'slowest flows:',
    slowest
      .slice(0, 3)
      .map((f) => `${f.flowId} (#${f.index}, submitted at +${f.atMs.toFixed(0)} ms): ${f.total.toFixed(0)} ms`)
      .join('; '),
  );
} finally {
  await j.stop();
  await cb.close();
}
process.exit(0);
