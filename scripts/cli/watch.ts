import { setTimeout as sleep } from 'node:timers/promises';
import { ApiError, type Api } from './api.js';
import { c, duration, icon, status } from './format.js';

interface TaskView {
  name: string;
  status: string;
  attempts: number;
  durationMs: number | null;
  error: { code: string; message: string } | null;
}
export interface FlowView {
  flowId: string;
  flow: string;
  status: string;
  submittedAt?: string | null;
  durationMs?: number | null;
  endReason?: string | null;
  stages: Array<{ name: string; tasks: TaskView[] }>;
  errors?: Array<{ task: string; code: string; message: string }>;
}
interface FlowEvent {
  type: string;
  status?: string;
  task?: string;
  message?: string;
  attempt?: number;
  atMs?: string;
}

export const TERMINAL = new Set(['succeeded', 'partial', 'failed', 'cancelled']);

/** Redraws a block of lines in place on a terminal; prints events as lines otherwise. */
class Display {
  private drawn = 0;
  private readonly started = Date.now();
  constructor(
    private readonly out: NodeJS.WriteStream,
    private readonly live = Boolean(out.isTTY),
  ) {}

  lines(v: FlowView): string[] {
    const elapsed = v.durationMs ?? Date.now() - (v.submittedAt ? new Date(v.submittedAt).getTime() : this.started);
    const head = `${c.bold(v.flowId)}  ${v.flow}  ${status(v.status)}  ${c.dim(duration(elapsed))}`;
    const width = Math.max(8, ...v.stages.map((s) => s.name.length));
    const stages = v.stages.map((s) => {
      const tasks = s.tasks.map(
        (t) => `${icon(t.status)} ${t.name}${t.attempts > 1 ? c.dim(` ×${t.attempts}`) : ''}${t.status === 'succeeded' && t.durationMs !== null ? c.dim(` ${duration(t.durationMs)}`) : ''}`,
      );
      return `  ${s.name.padEnd(width)}  ${tasks.join('   ')}`;
    });
    return [head, ...stages];
  }

  render(v: FlowView) {
    if (!this.live) return;
    const lines = this.lines(v);
    let s = this.drawn ? `\x1b[${this.drawn}F` : '';
    for (const l of lines) s += `\x1b[2K${l}\n`;
    this.out.write(s);
    this.drawn = lines.length;
  }

  event(v: FlowView, e: FlowEvent) {
    if (this.live) return this.render(v);
    const at = e.atMs && v.submittedAt ? `+${duration(Number(e.atMs) - new Date(v.submittedAt).getTime())}` : '';
    this.out.write(`${c.dim(at.padStart(9))}  ${e.type}${e.task ? ` ${e.task}` : ''}${e.message ? c.dim(`  ${e.message}`) : ''}\n`);
  }

  first(v: FlowView) {
    if (this.live) return this.render(v);
    this.out.write(`${this.lines(v).join('\n')}\n`);
  }
}

function apply(v: FlowView, e: FlowEvent) {
  if (e.status && e.status !== 'rejected') v.status = e.status;
  const t = e.task ? v.stages.flatMap((s) => s.tasks).find((x) => x.name === e.task) : undefined;
  if (!t) return;
  if (e.type === 'task.dispatched') t.status = 'dispatched';
  else if (e.type === 'task.succeeded') t.status = 'succeeded';
  else if (e.type === 'task.failed') t.status = 'failed';
  else if (e.type === 'task.retrying') {
    t.status = 'retrying';
    t.attempts = Math.max(t.attempts, (e.attempt ?? 0) + 1);
  }
}

/**
 * Follows a flow over GET /v1/flows/{id}/events until it ends and returns its final state.
 * A flow submitted a moment ago may not have state yet: 404 is retried for `graceMs`.
 */
export async function watchFlow(api: Api, flowId: string, out: NodeJS.WriteStream, graceMs = 5_000): Promise<FlowView> {
  const display = new Display(out);
  const path = `/v1/flows/${encodeURIComponent(flowId)}/events`;
  const until = Date.now() + graceMs;
  let view: FlowView | undefined;
  for (let attempt = 0; ; attempt++) {
    try {
      for await (const m of api.events(path)) {
        if (m.event === 'snapshot') {
          const snap = JSON.parse(m.data) as FlowView;
          const firstTime = !view;
          view = { ...snap, stages: snap.stages ?? [] };
          if (firstTime) display.first(view);
          else display.render(view);
          if (TERMINAL.has(view.status)) return view;
        } else if (m.event === 'event' && view) {
          const e = JSON.parse(m.data) as FlowEvent;
          apply(view, e);
          display.event(view, e);
        }
      }
      // The stream ended early (ingest restarting, a proxy timeout): look, then follow again.
      const now = await api.json<FlowView>('GET', `/v1/flows/${encodeURIComponent(flowId)}`);
      if (TERMINAL.has(now.status)) {
        display.render(now);
        return now;
      }
    } catch (err) {
      const retry = (err instanceof ApiError && err.status === 404 && Date.now() < until) || (err instanceof ApiError && err.status === 0 && attempt < 5);
      if (!retry) throw err;
    }
    await sleep(Math.min(1_000, 100 * 2 ** Math.min(attempt, 4)));
  }
}

/** One-line outcome plus the errors, for the end of a watch. */
export function summary(v: FlowView): string {
  const head = `${icon(v.status === 'partial' ? 'timed_out' : v.status)} ${v.flowId} ${status(v.status)}${v.durationMs !== null && v.durationMs !== undefined ? ` in ${duration(v.durationMs)}` : ''}${v.endReason ? c.dim(` (${v.endReason})`) : ''}`;
  const errs = (v.errors ?? []).map((e) => `  ${c.red(e.task)}  ${e.code}: ${e.message}`);
  return [head, ...errs].join('\n');
}

/** Exit code of a finished flow: 0 succeeded, 2 partial, 1 failed or cancelled. */
export const exitCodeOf = (s: string) => (s === 'succeeded' ? 0 : s === 'partial' ? 2 : 1);
