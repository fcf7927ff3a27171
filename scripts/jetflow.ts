#!/usr/bin/env node
// The jetflow CLI. Kept light on purpose (commander and node builtins only): it starts in
// milliseconds and talks to ingest over HTTP like any client. `bench` loads its code on demand.
import { readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { Api, ApiError } from './cli/api.js';
import { cliVersion, resolveSettings } from './cli/config.js';
import { EXIT, UsageError, exitCodeOfError } from './cli/exit.js';
import { ago, c, clip, duration, status, table } from './cli/format.js';
import { exitCodeOf, summary, watchFlow } from './cli/watch.js';
import { withStart } from './cli/start.js';
import { registerFlowsCommands } from './cli/flows.js';
import { registerWorkersCommand } from './cli/workers.js';
import { registerSchedulesCommands } from './cli/schedules.js';
import { bulkOptions, redriveByFilter, registerBulkCancel, type BulkOptions } from './cli/bulk.js';

interface Globals {
  url?: string;
  apiKey?: string;
  json?: boolean;
}

const program = new Command('jetflow')
  .description('Operate Jetflow: submit and follow flows, list and redrive dead letters, inspect consumers.')
  .addOption(new Option('--url <url>', 'ingest HTTP API (default: JETFLOW_URL, .jetflow/local.json, http://127.0.0.1:8080)'))
  .addOption(new Option('--api-key <key>', 'API key (default: JETFLOW_API_KEY, or .jetflow/local.json)'))
  .option('--json', 'print raw JSON instead of tables')
  .version(cliVersion(), '-V, --version', 'print the CLI version')
  .addHelpText(
    'after',
    `\nExit codes: ${EXIT.ok} ok; ${EXIT.failed} refused by the server, or the flow failed or was cancelled; ${EXIT.partial} the flow ended partial; ${EXIT.usage} usage; ${EXIT.auth} no or bad API key; ${EXIT.notFound} not found; ${EXIT.server} server error or overloaded (retry); ${EXIT.unreachable} ingest unreachable.`,
  )
  .enablePositionalOptions()
  // Usage errors come back as CommanderError (exit code EXIT.usage below) instead of exiting with 1.
  .exitOverride()
  .showHelpAfterError('(run jetflow --help for usage)');

const globals = () => program.opts<Globals>();
const api = () => new Api(resolveSettings(globals()));
const print = (s: string): void => void process.stdout.write(`${s}\n`);
const printJson = (v: unknown): void => print(JSON.stringify(v, null, 2));

async function readInput(file: string | undefined): Promise<string> {
  if (file && file !== '-') {
    try {
      return readFileSync(file, 'utf8');
    } catch (err) {
      throw new UsageError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }
  if (process.stdin.isTTY) throw new UsageError('no submission: give a JSON file, or pipe one on stdin (jetflow submit < flow.json)');
  const chunks: Buffer[] = [];
  for await (const ch of process.stdin) chunks.push(ch as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

program
  .command('submit')
  .description('submit a flow from a JSON file or stdin; prints the flow id')
  .argument('[file]', 'the submission JSON (README, "Submit a flow"; GET /docs on ingest), "-" or omitted for stdin')
  .option('-w, --watch', 'then follow it until it ends (exit code as for watch)')
  .option('-p, --priority <n>', 'priority 1..10 (default 5): under a backlog, higher first (README, "Priorities"); replaces the file\'s')
  .option('--delay <ms|duration>', "start it later: milliseconds or a duration (90s, 5m, 1h30m); replaces the file's delayMs/startAt")
  .option('--start-at <time>', "start it at an RFC 3339 time (2030-01-31T12:00:00Z); replaces the file's delayMs/startAt")
  .action(async (file: string | undefined, o: { watch?: boolean; priority?: string; delay?: string; startAt?: string }) => {
    // Refused before the submission is read: a usage error whatever the file holds.
    if (o.delay !== undefined && o.startAt !== undefined) throw new UsageError('--delay and --start-at exclude each other: give one of them');
    let text = await readInput(file);
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch (err) {
      throw new UsageError(`the submission is not valid JSON: ${(err as Error).message}`);
    }
    if (o.priority !== undefined) {
      if (!/^([1-9]|10)$/.test(o.priority)) throw new UsageError(`--priority: expected an integer 1..10, got "${o.priority}"`);
      if (!body || typeof body !== 'object' || Array.isArray(body)) throw new UsageError('--priority: the submission is not a JSON object');
      text = JSON.stringify({ ...(body as Record<string, unknown>), priority: Number(o.priority) });
    }
    if (o.delay !== undefined || o.startAt !== undefined) {
      if (!body || typeof body !== 'object' || Array.isArray(body)) throw new UsageError(`${o.delay !== undefined ? '--delay' : '--start-at'}: the submission is not a JSON object`);
      text = JSON.stringify(withStart(JSON.parse(text) as Record<string, unknown>, o));
    }
    const r = await api().json<{ flowId: string; status: string }>('POST', '/v1/flows', text);
    if (globals().json) printJson(r);
    else print(r.flowId);
    if (o.watch) await follow(r.flowId);
  });

program
  .command('get')
  .description('print a flow (status, stages, tasks, results) as JSON')
  .argument('<flowId>')
  .action(async (flowId: string) => printJson(await api().json('GET', `/v1/flows/${encodeURIComponent(flowId)}`)));

async function follow(flowId: string) {
  const v = await watchFlow(api(), flowId, process.stderr);
  if (globals().json) printJson(v);
  else process.stderr.write(`${summary(v)}\n`);
  process.exitCode = exitCodeOf(v.status);
}

program.command('watch').description('follow a flow live until it ends; exit 0 succeeded, 2 partial, 1 failed or cancelled').argument('<flowId>').action(follow);

program
  .command('cancel')
  .description('cancel a running flow')
  .argument('<flowId>')
  .option('--reason <text>', 'recorded in the flow')
  .action(async (flowId: string, o: { reason?: string }) => {
    const r = await api().json<{ flowId: string; status: string }>('POST', `/v1/flows/${encodeURIComponent(flowId)}/cancel`, o.reason ? { reason: o.reason } : {});
    if (globals().json) printJson(r);
    else print(`${r.flowId} ${r.status}`);
  });

program
  .command('signal')
  .description('send a signal to a flow: the task waiting for NAME (waitFor) takes it, its payload as output; kept if no task waits yet')
  .argument('<flowId>')
  .argument('<name>', 'the signal name')
  .option('--data <json>', 'the payload (JSON; default null)')
  .option('--key <key>', 'idempotency key: the same key twice is one signal')
  .action(async (flowId: string, name: string, o: { data?: string; key?: string }) => {
    let payload: unknown = null;
    if (o.data !== undefined) {
      try {
        payload = JSON.parse(o.data);
      } catch (err) {
        throw new UsageError(`--data: not JSON: ${(err as Error).message}`);
      }
    }
    const r = await api().json<{ flowId: string; signalId: string; status: string }>(
      'POST',
      `/v1/flows/${encodeURIComponent(flowId)}/signals/${encodeURIComponent(name)}`,
      JSON.stringify(payload),
      o.key ? { 'idempotency-key': o.key } : undefined,
    );
    if (globals().json) printJson(r);
    else print(`${r.flowId} signal ${name} ${r.status} (${r.signalId})`);
  });

for (const verb of ['pause', 'resume'] as const)
  program
    .command(verb)
    .description(verb === 'pause' ? 'pause a flow: no new task is dispatched until resumed (running ones finish)' : 'resume a paused flow: what became ready is dispatched')
    .argument('<kind>', 'flow, or definition or subject (an operator key)')
    .argument('<id>', 'the flow id, the definition name or the task subject')
    .option('--reason <text>', 'recorded with the pause')
    .action(async (kind: string, id: string, o: { reason?: string }) => {
      if (kind === 'subject') {
        const r = await api().json<{ subject: string; paused: boolean }>('POST', `/v1/subjects/${encodeURIComponent(id)}/${verb}`, o.reason ? { reason: o.reason } : {});
        if (globals().json) printJson(r);
        else print(`subject ${r.subject} ${r.paused ? 'paused' : 'resumed'}`);
        return;
      }
      if (kind === 'definition') {
        const d = await api().json<{ flow: string; paused: boolean; resumedFlows?: number }>(
          'POST',
          `/v1/flow-definitions/${encodeURIComponent(id)}/${verb}`,
          o.reason ? { reason: o.reason } : {},
        );
        if (globals().json) printJson(d);
        else print(`definition ${d.flow} ${d.paused ? 'paused' : `resumed (${d.resumedFlows ?? 0} flows resumed)`}`);
        return;
      }
      if (kind !== 'flow') throw new UsageError(`${verb} ${kind}: expected flow, definition or subject (jetflow ${verb} flow <flowId> | definition <name> | subject <task subject>)`);
      const r = await api().json<{ flowId: string; status: string }>('POST', `/v1/flows/${encodeURIComponent(id)}/${verb}`, o.reason ? { reason: o.reason } : {});
      if (globals().json) printJson(r);
      else print(`${r.flowId} ${r.status}`);
    });

interface FlowSummary {
  flowId: string;
  flow: string;
  status: string;
  submittedAt: string;
  durationMs: number | null;
  tasks: { total: number; succeeded: number; failed: number };
  priority?: number;
}

const positiveInt = (name: string) => (v: string) => {
  if (!/^[1-9]\d{0,5}$/.test(v)) throw new UsageError(`--${name}: expected a positive integer, got "${v}"`);
  return Number(v);
};

/** The API's most items per page; the CLI pages on for a larger --limit. */
const API_PAGE_MAX = 200;

/**
 * Reads pages, following nextCursor, until `limit` items or the end: a page may be short, even empty,
 * while older items exist (the server bounds the work per page).
 */
async function collect<T>(path: string, key: string, query: URLSearchParams, limit: number): Promise<{ items: T[]; nextCursor: string | null }> {
  const client = api();
  const items: T[] = [];
  let cursor = query.get('cursor');
  for (;;) {
    const q = new URLSearchParams(query);
    q.set('limit', String(Math.min(API_PAGE_MAX, limit - items.length)));
    if (cursor) q.set('cursor', cursor);
    const page = await client.json<Record<string, unknown>>('GET', `${path}?${q.toString()}`);
    const got = page[key];
    if (!Array.isArray(got)) throw new Error(`unexpected answer from ${path}: no "${key}" list`);
    items.push(...(got as T[]));
    const next = typeof page.nextCursor === 'string' && page.nextCursor ? page.nextCursor : null;
    if (next !== null && next === cursor) throw new Error(`${path} answered the same cursor twice; stopping`);
    cursor = next;
    if (!cursor || items.length >= limit) return { items, nextCursor: cursor };
  }
}

program
  .command('list')
  .description("list recent flows of your tenant, most recently changed first (follows the listing's pages until --limit flows)")
  .option('--status <list>', 'only these statuses, comma-separated (running, succeeded, partial, failed, cancelled)')
  .option('--limit <n>', 'most flows', positiveInt('limit'), 20)
  .option('--cursor <cursor>', 'continue after an earlier listing (its nextCursor)')
  .action(async (o: { status?: string; limit: number; cursor?: string }) => {
    const q = new URLSearchParams();
    if (o.status) q.set('status', o.status);
    if (o.cursor) q.set('cursor', o.cursor);
    const r = await collect<FlowSummary>('/v1/flows', 'flows', q, o.limit);
    if (globals().json) return printJson({ flows: r.items, nextCursor: r.nextCursor });
    if (!r.items.length) return print(c.dim('no flows'));
    print(
      table(
        // PRIO last: the columns before it are where scripts found them before priorities.
        ['STATUS', 'FLOW ID', 'FLOW', 'TASKS', 'SUBMITTED', 'DURATION', 'PRIO'],
        r.items.map((f) => [
          status(f.status),
          f.flowId,
          f.flow,
          `${f.tasks.succeeded}/${f.tasks.total}${f.tasks.failed ? c.red(` ${f.tasks.failed} failed`) : ''}`,
          ago(f.submittedAt),
          duration(f.durationMs),
          f.priority === undefined ? '-' : String(f.priority),
        ]),
        [5, 6],
      ),
    );
    if (r.nextCursor) print(c.dim(`more: add --cursor ${r.nextCursor}`));
  });

interface DeadLetter {
  seq: number;
  source: string;
  code: string;
  reason: string;
  attempts: number | null;
  flowId: string | null;
  originalSubject: string;
  time: string;
}

const dlq = program.command('dlq').alias('deadletters').description('dead letters: messages that could not be processed (also: jetflow deadletters …)');
dlq
  .command('list')
  .description("list your tenant's dead letters, newest first")
  .option('--source <source>', 'only from task, ingest, callback or result')
  .option('--limit <n>', 'most dead letters', positiveInt('limit'), 50)
  .option('--cursor <cursor>', 'continue after an earlier listing (its nextCursor)')
  .action(async (o: { source?: string; limit: number; cursor?: string }) => {
    const q = new URLSearchParams();
    if (o.source) q.set('source', o.source);
    if (o.cursor) q.set('cursor', o.cursor);
    const r = await collect<DeadLetter>('/v1/deadletters', 'deadLetters', q, o.limit);
    if (globals().json) return printJson({ deadLetters: r.items, nextCursor: r.nextCursor });
    if (!r.items.length) return print(c.dim('no dead letters'));
    const width = Math.max(30, (process.stdout.columns || 160) - 110);
    print(
      table(
        ['SEQ', 'WHEN', 'SOURCE', 'CODE', 'ORIGINAL SUBJECT', 'ATTEMPTS', 'FLOW', 'REASON'],
        r.items.map((d) => [String(d.seq), ago(d.time), d.source, c.red(d.code), d.originalSubject, d.attempts === null ? '-' : String(d.attempts), d.flowId ?? '-', clip(d.reason, width)]),
        [0, 5],
      ),
    );
    if (r.nextCursor) print(c.dim(`more: add --cursor ${r.nextCursor}`));
  });
dlq
  .command('show')
  .description('print a dead letter with its headers and body')
  .argument('<seq>')
  .action(async (seq: string) => printJson(await api().json('GET', `/v1/deadletters/${encodeURIComponent(seq)}`)));
bulkOptions(
  dlq
    .command('redrive')
    .description('send dead letters back to their original subject (then delete them): by seq, or every one a --filter selects (keys: source, code, subject, flowId, after, before, tenant)')
    .argument('[seq...]', 'sequence numbers from dlq list'),
  'dead letters',
).action(async (seqs: string[], o: BulkOptions) => {
  const byFilter = o.filter !== undefined || o.all === true || o.dryRun === true;
  if (byFilter && seqs.length) throw new UsageError('give sequence numbers or --filter/--all/--dry-run, not both');
  if (byFilter) return redriveByFilter({ api, json: () => Boolean(globals().json), print }, o);
  if (!seqs.length) throw new UsageError('give the sequence numbers to redrive, or --filter key=value (--dry-run to count first)');
  if (o.limit) throw new UsageError('--limit goes with --filter');
  const client = api();
  let failed = 0;
  for (const seq of seqs) {
    try {
      const r = await client.json<{ seq: number; subject: string; stream: string; streamSeq: number; duplicate: boolean }>('POST', `/v1/deadletters/${encodeURIComponent(seq)}/redrive`);
      if (globals().json) printJson(r);
      else print(`${c.green('redriven')} ${r.seq} → ${r.subject} (${r.stream} #${r.streamSeq}${r.duplicate ? ', already redriven' : ''})`);
    } catch (err) {
      // The exit code says why the first one failed.
      if (!failed++) process.exitCode = exitCodeOfError(err);
      reportError(err, `dead letter ${seq}`);
    }
  }
});

interface Consumers {
  sampledAt: string;
  consumers: Array<{
    stream: string;
    name: string;
    numPending: number;
    numAckPending: number;
    numRedelivered: number;
    numWaiting: number;
    delivered: number;
    deliveredPerSec: number | null;
  }>;
}

program
  .command('route')
  .description('which consumer gets a task: the stream, durable consumer and service for a subject or pattern')
  .argument('[subject]', 'a task subject or wildcard pattern', 'jetflow.task.>')
  .action(async (subject: string) => {
    const r = await api().json<{ routes: Array<{ subject: string; stream: string; consumer: string; servedBy: string; usedBy: Array<{ flow: string; stage: string; task: string }> }> }>(
      'GET',
      `/v1/routes?subject=${encodeURIComponent(subject)}`,
    );
    if (globals().json) return printJson(r);
    if (!r.routes.length) {
      print(`no task subject matches ${subject}`);
      process.exitCode = EXIT.notFound;
      return;
    }
    print(
      table(
        ['subject', 'stream', 'consumer', 'served by', 'used by'],
        r.routes.map((x) => [x.subject, x.stream, x.consumer, x.servedBy, x.usedBy.map((u) => `${u.flow}/${u.stage}/${u.task}`).join(', ')]),
      ),
    );
  });

program
  .command('consumers')
  .description('JetStream consumers of the Jetflow streams: lag, in flight, redeliveries, throughput')
  .option('-w, --watch [seconds]', 'refresh every few seconds (throughput needs two samples)')
  .action(async (o: { watch?: string | boolean }) => {
    const client = api();
    const every = o.watch === undefined || o.watch === false ? 0 : Math.max(1, Number(o.watch === true ? 2 : o.watch) || 2);
    for (;;) {
      const r = await client.json<Consumers>('GET', '/v1/consumers');
      if (globals().json) printJson(r);
      else {
        const n = (x: number) => (x === 0 ? c.dim('0') : x.toLocaleString('en'));
        const out = table(
          ['STREAM', 'CONSUMER', 'PENDING', 'ACK PENDING', 'REDELIVERED', 'WAITING', 'DELIVERED', 'RATE'],
          r.consumers.map((x) => [
            x.stream,
            x.name,
            n(x.numPending),
            n(x.numAckPending),
            n(x.numRedelivered),
            n(x.numWaiting),
            x.delivered.toLocaleString('en'),
            x.deliveredPerSec === null ? c.dim('-') : `${x.deliveredPerSec}/s`,
          ]),
          [2, 3, 4, 5, 6, 7],
        );
        if (every && process.stdout.isTTY) process.stdout.write('\x1b[H\x1b[2J');
        print(out);
        if (every) print(c.dim(`sampled ${new Date(r.sampledAt).toLocaleTimeString()}, every ${every}s; Ctrl-C to stop`));
      }
      if (!every) return;
      await new Promise((res) => setTimeout(res, every * 1000));
    }
  });

registerFlowsCommands(program, { api, json: () => Boolean(globals().json), print });
registerBulkCancel(
  program.commands.find((x) => x.name() === 'flows')!,
  { api, json: () => Boolean(globals().json), print },
);
registerWorkersCommand(program, { api, json: () => Boolean(globals().json), print });
registerSchedulesCommands(program, { api, json: () => Boolean(globals().json), print });

program
  .command('start')
  .description('start the local stack (NATS, local S3/DynamoDB, the four services); writes .jetflow/local.json for the CLI')
  .option('--http-port <port>', 'ingest HTTP port (default JETFLOW_HTTP_PORT or 8080)')
  .option('--grpc-port <port>', 'ingest gRPC port (default JETFLOW_GRPC_PORT or 50051)')
  .addOption(new Option('--task-mode <mode>', 'real models, or noop tasks').choices(['real', 'noop']))
  .action(async (o: { httpPort?: string; grpcPort?: string; taskMode?: 'real' | 'noop' }) => {
    const port = (v: string | undefined, name: string) => {
      if (v === undefined) return undefined;
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1 || n > 65_535) throw new UsageError(`--${name}: expected a port number, got "${v}"`);
      return n;
    };
    // Loaded only here: the local stack brings the supervisor and the local AWS servers.
    const { runLocalStack } = await import('./local-stack.js');
    const httpPort = port(o.httpPort, 'http-port');
    const grpcPort = port(o.grpcPort, 'grpc-port');
    await runLocalStack({ ...(httpPort ? { httpPort } : {}), ...(grpcPort ? { grpcPort } : {}), ...(o.taskMode ? { taskMode: o.taskMode } : {}) });
  });

program
  .command('bench')
  .description('run the benchmark (bench/run.ts) against a fresh local stack; options pass through (jetflow bench --help)')
  .helpOption(false)
  .passThroughOptions()
  .allowUnknownOption()
  .argument('[options...]')
  .action(async (args: string[]) => {
    // Loaded only here: the benchmark pulls in the stack supervisor and its own dependencies.
    const bench = await import('../bench/run.js');
    const r = await bench.runBench(bench.parseCli(args));
    print(bench.formatReport(r));
    if (r.aborted && !r.steps.length) process.exitCode = 1;
  });

function reportError(err: unknown, where?: string) {
  const prefix = where ? `${where}: ` : '';
  if (err instanceof ApiError) {
    process.stderr.write(`${c.red('error')} ${prefix}${err.code}: ${err.message}\n`);
    for (const d of err.details) process.stderr.write(`  ${d.path || '(body)'}: ${d.message}\n`);
  } else {
    process.stderr.write(`${c.red('error')} ${prefix}${(err as Error)?.message ?? String(err)}\n`);
  }
}

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    // Commander has printed the message (or the help, or the version) already.
    process.exitCode = err.exitCode === 0 ? EXIT.ok : EXIT.usage;
  } else {
    reportError(err);
    process.exitCode = exitCodeOfError(err);
  }
}
