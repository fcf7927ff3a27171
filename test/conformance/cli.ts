/**
 * `npm run conformance -- --servers nats://… [--user … --password … | --token …] [--worker-cmd "…"]
 * [--partitions 8] [--ack-wait-ms 2000] [--only a,b]`: runs the worker conformance kit (kit.ts,
 * docs/WORKERS.md) and exits 1 if a case failed. With --worker-cmd the kit starts the worker itself
 * (a shell command, NATS_URL set), waits until it pulls every conformance subject, and may kill -9 and
 * restart it (the kill-worker case).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { connect, type ConnectionOptions } from 'nats';
import { CONSUMERS, STREAMS } from '@jetflow/messaging';
import { CASE_NAMES, CONFORMANCE_SUBJECTS, formatReport, prepareConformance, runConformance } from './kit.js';

const USAGE = `usage: npm run conformance -- --servers nats://host:4222 [--user U --password P | --token T] [--worker-cmd "CMD"]
       [--partitions 8] [--ack-wait-ms 2000] [--only ${CASE_NAMES.slice(0, 2).join(',')},…]
cases: ${CASE_NAMES.join(', ')}`;

function fail(message: string): never {
  process.stderr.write(`${message}\n${USAGE}\n`);
  process.exit(2);
}

const { values } = parseArgs({
  options: {
    servers: { type: 'string' },
    user: { type: 'string' },
    password: { type: 'string' },
    token: { type: 'string' },
    'worker-cmd': { type: 'string' },
    partitions: { type: 'string' },
    'ack-wait-ms': { type: 'string' },
    only: { type: 'string' },
    help: { type: 'boolean' },
  },
});
if (values.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
if (!values.servers) fail('--servers is required');
const int = (name: string, v: string | undefined, min: number, max: number) => {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) fail(`--${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(v)}`);
  return n;
};
const partitions = int('partitions', values.partitions, 1, 256);
const ackWaitMs = int('ack-wait-ms', values['ack-wait-ms'], 500, 60_000);
const only = values.only
  ?.split(',')
  .map((s) => s.trim())
  .filter(Boolean);
for (const n of only ?? []) if (!CASE_NAMES.includes(n)) fail(`--only: no case named ${JSON.stringify(n)}`);
if ((values.user === undefined) !== (values.password === undefined)) fail('--user and --password go together');
const connection: Partial<ConnectionOptions> = {
  ...(values.user !== undefined ? { user: values.user, pass: values.password } : {}),
  ...(values.token !== undefined ? { token: values.token } : {}),
};
const servers = values.servers.split(',').map((s) => s.trim());
const base = { servers, connection, ...(partitions ? { partitions } : {}), ...(ackWaitMs ? { ackWaitMs } : {}) };

await prepareConformance(base);

let proc: ChildProcess | undefined;
/** Started once every conformance consumer has a pull request waiting (and the process is still up). */
const start = async () => {
  const cmd = values['worker-cmd']!;
  const p = spawn(cmd, { shell: true, detached: true, stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, NATS_URL: process.env.NATS_URL ?? servers.join(',') } });
  proc = p;
  let exited = false;
  p.once('exit', () => (exited = true));
  const nc = await connect({ servers, ...connection });
  try {
    const jsm = await nc.jetstreamManager();
    // Pull requests of a worker killed a moment ago may linger until they expire: give the new one a second first.
    await sleep(1_000);
    for (const end = Date.now() + 60_000; ;) {
      if (exited) throw new Error(`the worker command exited before it served: ${cmd}`);
      const waiting = await Promise.all(CONFORMANCE_SUBJECTS.map(async (s) => (await jsm.consumers.info(STREAMS.tasks, CONSUMERS.task(s))).num_waiting));
      if (waiting.every((n) => n > 0)) return;
      if (Date.now() > end) throw new Error(`the worker does not pull every conformance subject after 60 s: ${CONFORMANCE_SUBJECTS.join(', ')}`);
      await sleep(200);
    }
  } finally {
    await nc.close();
  }
};
const kill = async () => {
  const p = proc;
  if (!p || p.exitCode !== null) return;
  const gone = new Promise((r) => p.once('exit', r));
  process.kill(-p.pid!, 'SIGKILL');
  await gone;
};

let code = 1;
try {
  if (values['worker-cmd']) await start();
  const report = await runConformance({
    ...base,
    ...(only ? { only } : {}),
    ...(values['worker-cmd'] ? { worker: { kill, start } } : {}),
    onCase: (c) => process.stdout.write(`${c.outcome === 'passed' ? 'PASS' : c.outcome === 'failed' ? 'FAIL' : 'SKIP'} ${c.name}${c.message ? `: ${c.message}` : ''}\n`),
  });
  process.stdout.write(`\n${formatReport(report)}\n`);
  code = report.passed ? 0 : 1;
} finally {
  await kill();
}
process.exit(code);
