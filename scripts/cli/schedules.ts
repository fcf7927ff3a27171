import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import type { Api } from './api.js';
import { UsageError } from './exit.js';
import { c, table } from './format.js';

/** A schedule as GET /v1/schedules/{id} answers it. */
export interface ScheduleAnswer {
  id: string;
  cron: string;
  timezone: string;
  overlap: string;
  paused: boolean;
  nextFireAt: string | null;
  lastFireAt: string | null;
  lastFlowId: string | null;
  fired: number;
  skipped: number;
  missed: number;
  submission: { flow?: string };
}

export interface SchedulesCommandDeps {
  api: () => Api;
  json: () => boolean;
  print: (s: string) => void;
}

export function schedulesTable(rows: ScheduleAnswer[]): string {
  if (!rows.length) return 'no schedules';
  return table(
    ['ID', 'CRON', 'TIMEZONE', 'FLOW', 'OVERLAP', 'STATE', 'NEXT', 'FIRED', 'SKIPPED', 'MISSED', 'LAST FLOW'],
    rows.map((s) => [
      s.id,
      s.cron,
      s.timezone,
      s.submission.flow ?? '',
      s.overlap,
      s.paused ? c.yellow('paused') : c.green('active'),
      s.nextFireAt ?? c.dim('-'),
      String(s.fired),
      String(s.skipped),
      String(s.missed),
      s.lastFlowId ?? c.dim('-'),
    ]),
    [7, 8, 9],
  );
}

/** `jetflow schedules list|get|create FILE|delete|pause|resume` over /v1/schedules. */
export function registerSchedulesCommands(program: Command, d: SchedulesCommandDeps): void {
  const cmd = program.command('schedules').description('cron schedules: each fire time submits a flow (README, "Schedules")');
  const one = (s: ScheduleAnswer) => (d.json() ? d.print(JSON.stringify(s, null, 2)) : d.print(schedulesTable([s])));
  const path = (id: string) => `/v1/schedules/${encodeURIComponent(id)}`;
  cmd
    .command('list')
    .description("the tenant's schedules")
    .action(async () => {
      const r = await d.api().json<{ schedules: ScheduleAnswer[] }>('GET', '/v1/schedules');
      if (d.json()) d.print(JSON.stringify(r, null, 2));
      else d.print(schedulesTable(r.schedules));
    });
  cmd
    .command('get')
    .description('one schedule with its counts, as JSON')
    .argument('<id>')
    .action(async (id: string) => d.print(JSON.stringify(await d.api().json('GET', path(id)), null, 2)));
  cmd
    .command('create')
    .description('create a schedule from a JSON file: { "id", "cron", "timezone", "submission": {…}, "overlap": "skip" | "allow" }')
    .argument('<file>', 'the schedule JSON, "-" for stdin')
    .action(async (file: string) => {
      let text: string;
      try {
        text = readFileSync(file === '-' ? 0 : file, 'utf8');
      } catch (err) {
        throw new UsageError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
      try {
        JSON.parse(text);
      } catch (err) {
        throw new UsageError(`the schedule is not valid JSON: ${(err as Error).message}`);
      }
      one(await d.api().json<ScheduleAnswer>('POST', '/v1/schedules', text));
    });
  cmd
    .command('delete')
    .description('delete a schedule (flows it fired run on)')
    .argument('<id>')
    .action(async (id: string) => {
      const r = await d.api().json<{ id: string; deleted: boolean }>('DELETE', path(id));
      d.print(d.json() ? JSON.stringify(r, null, 2) : `deleted ${r.id}`);
    });
  for (const verb of ['pause', 'resume'] as const)
    cmd
      .command(verb)
      .description(verb === 'pause' ? 'pause a schedule: no firing until resumed' : 'resume a schedule from the next fire time after now')
      .argument('<id>')
      .action(async (id: string) => one(await d.api().json<ScheduleAnswer>('POST', `${path(id)}/${verb}`)));
}
