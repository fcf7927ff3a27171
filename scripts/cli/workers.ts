import type { Command } from 'commander';
import type { Api } from './api.js';
import { EXIT } from './exit.js';
import { ago, c, table } from './format.js';

/** GET /v1/workers as the CLI reads it. */
export interface WorkersAnswer {
  sampledAt: string;
  staleAfterIntervals: number;
  workers: Array<{
    id: string;
    name: string;
    service: string;
    version: string;
    host: string;
    pid: number;
    subjects: string[];
    concurrency: number;
    busy: number;
    startedAt: string;
    heartbeatAt: string;
    status: 'live' | 'stale';
  }>;
  subjects: Array<{ subject: string; instances: number; slots: number; busy: number; pending: number | null }>;
}

export interface WorkersCommandDeps {
  api: () => Api;
  json: () => boolean;
  print: (s: string) => void;
}

/** The two tables: worker instances, then who serves each subject (a subject nobody serves stands out). */
export function workersTables(r: WorkersAnswer, now = Date.now()): string {
  const live = (s: string) => (s === 'live' ? c.green(s) : c.yellow(s));
  const instances = r.workers.length
    ? table(
        ['WORKER', 'INSTANCE', 'SERVICE', 'VERSION', 'HOST', 'PID', 'SLOTS', 'BUSY', 'STATUS', 'SEEN', 'SUBJECTS'],
        r.workers.map((w) => [
          w.name,
          w.id,
          w.service,
          w.version,
          w.host,
          String(w.pid),
          String(w.concurrency),
          String(w.busy),
          live(w.status),
          ago(w.heartbeatAt, now),
          w.subjects.join(', '),
        ]),
        [5, 6, 7],
      )
    : 'no workers announced';
  const subjects = table(
    ['SUBJECT', 'INSTANCES', 'SLOTS', 'BUSY', 'PENDING'],
    r.subjects.map((s) => [s.subject, s.instances ? String(s.instances) : c.red('0'), String(s.slots), String(s.busy), s.pending === null ? c.dim('-') : String(s.pending)]),
    [1, 2, 3, 4],
  );
  return `${instances}\n\n${subjects}`;
}

/** `jetflow workers`: the worker registry (operator key). */
export function registerWorkersCommand(program: Command, d: WorkersCommandDeps): void {
  program
    .command('workers')
    .description('the worker registry: every worker instance (live or stale) with its subjects and slots, and who serves each task subject')
    .option('--subject <subject>', 'only instances serving this task subject (exit code 5 when none is live)')
    .action(async (o: { subject?: string }) => {
      const r = await d.api().json<WorkersAnswer>('GET', '/v1/workers');
      const view = o.subject ? { ...r, workers: r.workers.filter((w) => w.subjects.includes(o.subject!)), subjects: r.subjects.filter((s) => s.subject === o.subject) } : r;
      if (d.json()) d.print(JSON.stringify(view, null, 2));
      else d.print(workersTables(view));
      if (o.subject && !view.workers.some((w) => w.status === 'live')) process.exitCode = EXIT.notFound;
    });
}
