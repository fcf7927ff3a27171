import type { Command } from 'commander';
import type { Api } from './api.js';
import { EXIT, UsageError } from './exit.js';
import { c } from './format.js';

export interface BulkCommandDeps {
  api: () => Api;
  json: () => boolean;
  print: (s: string) => void;
}

export interface BulkOptions {
  filter?: string[];
  dryRun?: boolean;
  all?: boolean;
  limit?: number;
  reason?: string;
}

/** `--filter key=value`, repeatable: the filter object of a bulk request (the server names what is wrong in it). */
export function filterOfOptions(pairs: string[] = []): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of pairs) {
    const eq = p.indexOf('=');
    if (eq < 1) throw new UsageError(`--filter: expected key=value (e.g. flow=insights, status=running, metadata=batch=7), got "${p}"`);
    const key = p.slice(0, eq);
    if (Object.hasOwn(out, key)) throw new UsageError(`--filter: ${key} given twice`);
    out[key] = p.slice(eq + 1);
  }
  return out;
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

const positive = (v: string) => {
  if (!/^[1-9][0-9]*$/.test(v)) throw new UsageError(`--limit: expected a positive integer, got "${v}"`);
  return Number(v);
};

interface Totals {
  dryRun: boolean;
  matched: number;
  complete?: boolean;
  ids: Array<string | number>;
  idsTruncated?: boolean;
  done: number;
  already: number;
  failed: number;
  failures: Array<Record<string, unknown> & { code: string; message: string }>;
  calls: number;
}

/**
 * One bulk action to its end: a dry run is one call (the count and the first ids); a real run follows
 * `next` until the server says it is done, so what one call may do (its limit) is no limit here.
 */
async function runBulk(d: BulkCommandDeps, path: string, body: Record<string, unknown>, keys: { ids: string; done: string; already: string }): Promise<Totals> {
  const api = d.api();
  const t: Totals = { dryRun: body.dryRun === true, matched: 0, ids: [], done: 0, already: 0, failed: 0, failures: [], calls: 0 };
  let cursor: string | undefined;
  for (;;) {
    const r = await api.json<Record<string, unknown> & { matched: number; next: string | null }>('POST', path, { ...body, ...(cursor ? { cursor } : {}) });
    t.calls++;
    t.matched += r.matched;
    if (t.dryRun) {
      t.ids = r[keys.ids] as Array<string | number>;
      t.idsTruncated = r[`${keys.ids}Truncated`] as boolean;
      t.complete = r.complete as boolean;
      return t;
    }
    t.done += Number(r[keys.done] ?? 0);
    t.already += Number(r[keys.already] ?? 0);
    t.failed += Number(r.failed ?? 0);
    t.failures.push(...((r.failures as Totals['failures']) ?? []));
    if (!r.next) return t;
    if (r.next === cursor) throw new Error(`${path} answered the same cursor twice; stopping`);
    cursor = r.next;
  }
}

function exitFor(t: Totals): number {
  if (!t.failed) return EXIT.ok;
  // Failures the server may not have next time (the broker was away): retry; else refused.
  return t.failures.some((f) => f.code === 'unavailable' || f.code === 'overloaded' || f.code === 'internal') ? EXIT.server : EXIT.failed;
}

function report(d: BulkCommandDeps, t: Totals, o: { noun: string; verb: string; done: string; already: string; id: string }) {
  if (d.json()) return d.print(JSON.stringify(t, null, 2));
  const n = (k: number) => `${k} ${o.noun}${k === 1 ? '' : 's'}`;
  if (t.dryRun) {
    d.print(`${c.bold('dry run')}: would ${o.verb} ${n(t.matched)}${t.complete ? '' : ' (at least: the count stopped)'}; nothing was changed`);
    for (const id of t.ids) d.print(`  ${String(id)}`);
    if (t.idsTruncated) d.print(c.dim(`  … and ${t.matched - t.ids.length} more`));
    return;
  }
  d.print(`${c.green(o.done)} ${t.done}, ${o.already} ${t.already}, ${t.failed ? c.red(`failed ${t.failed}`) : 'failed 0'} (of ${n(t.matched)} matched)`);
  for (const f of t.failures) process.stderr.write(`${c.red('failed')} ${String(f[o.id])}: ${f.code}: ${f.message}\n`);
  if (t.failed) process.stderr.write('run the same command again to retry what failed: it acts only on what still matches\n');
}

function bodyOf(o: BulkOptions): Record<string, unknown> {
  const filter = filterOfOptions(o.filter);
  return {
    ...(Object.keys(filter).length ? { filter } : {}),
    ...(o.dryRun ? { dryRun: true } : {}),
    ...(o.all ? { all: true } : {}),
    ...(o.limit ? { limit: o.limit } : {}),
    ...(o.reason ? { reason: o.reason } : {}),
  };
}

/** `jetflow dlq redrive --filter …` (also `jetflow deadletters redrive`): POST /v1/deadletters:redrive. */
export async function redriveByFilter(d: BulkCommandDeps, o: BulkOptions): Promise<void> {
  const t = await runBulk(d, '/v1/deadletters:redrive', bodyOf(o), { ids: 'seqs', done: 'redriven', already: 'alreadyRedriven' });
  report(d, t, { noun: 'dead letter', verb: 'redrive', done: 'redriven', already: 'already redriven', id: 'seq' });
  process.exitCode = exitFor(t);
}

/** The options of a bulk command. */
export function bulkOptions(cmd: Command, what: string): Command {
  return cmd
    .option('--filter <key=value>', `select ${what} (repeatable; the keys of the listing's query)`, collect)
    .option('--dry-run', 'count and list what would be acted on, change nothing')
    .option('--all', 'act on everything the key reaches when no --filter is given')
    .option('--limit <n>', 'most acted on per request (the CLI follows `next` to the end)', positive);
}

/** `jetflow flows cancel --filter …`: POST /v1/flows:cancel, on the `flows` command. */
export function registerBulkCancel(flows: Command, d: BulkCommandDeps): void {
  bulkOptions(
    flows
      .command('cancel')
      .description('cancel every running or scheduled flow a filter selects (keys: status, flow, idempotencyKey, metadata, submittedAfter, submittedBefore, tenant); --dry-run counts them'),
    'flows',
  )
    .option('--reason <text>', 'recorded in each flow')
    .action(async (o: BulkOptions) => {
      const t = await runBulk(d, '/v1/flows:cancel', bodyOf(o), { ids: 'flowIds', done: 'cancelled', already: 'alreadyFinished' });
      report(d, t, { noun: 'flow', verb: 'cancel', done: 'cancelled', already: 'already finished', id: 'flowId' });
      process.exitCode = exitFor(t);
    });
}
