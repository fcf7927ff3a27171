/**
 * `npm run soak`: the CLI of the soak in bench/lib/soak.ts. The stack at a fixed rate for a given time
 * (default 30 minutes) while a random worker or the orchestrator is SIGKILLed every few minutes;
 * reports accepted, completed, lost and duplicated flows, latency per window, RSS per service over
 * time with its slope, and writes an SVG plot. See docs/PERFORMANCE.md.
 */
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { ensureBuilt } from './lib/bench.js';
import { stripUndefined } from './lib/options.js';
import { formatSoak, runSoak, type SoakDoor, type SoakOptions } from './lib/soak.js';

export const SOAK_USAGE = `Usage: npm run soak -- [options]
  --rate 20                 offered flows/s (open loop); pick half of the bench's saturation
  --minutes 30              how long to submit
  --kill-every 3m           SIGKILL a random worker or the orchestrator this often (s, m or h; 0 = never)
  --door http               http, nats or http,nats (alternating)
  --mode real               task mode: real or noop
  --history on              DynamoDB flow history on (local DynamoDB) or off
  --grace 60s               after the last submission, how long a flow may take before it counts as lost
  --sample 5s               RSS sampling interval
  --window 60s              width of the latency windows
  --records 10              records per submission
  --out soak-results        directory for soak-report.json and soak.svg
  --no-auth                 NATS without identities
  --log-level info          services' LOG_LEVEL
  --log-dir DIR             keep the services' logs in DIR
  --no-build                do not rebuild dist/ when stale
`;

/** "90s", "3m", "1.5h" in seconds; a bare number is refused (minutes or seconds?), except 0. */
export function parseDuration(v: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)(s|m|h)$/.exec(v.trim());
  if (v.trim() === '0') return 0;
  if (!m) throw new Error(`${flag}: expected a duration with a unit such as 10s, 3m or 1h, got "${v}"`);
  return Number(m[1]) * { s: 1, m: 60, h: 3600 }[m[2] as 's' | 'm' | 'h'];
}

export function parseSoakCli(argv: string[]): Partial<SoakOptions> & { help?: boolean; build?: boolean } {
  const { values } = parseArgs({
    args: argv,
    options: {
      rate: { type: 'string' },
      minutes: { type: 'string' },
      'kill-every': { type: 'string' },
      door: { type: 'string' },
      mode: { type: 'string' },
      history: { type: 'string' },
      grace: { type: 'string' },
      sample: { type: 'string' },
      window: { type: 'string' },
      records: { type: 'string' },
      out: { type: 'string' },
      'no-auth': { type: 'boolean' },
      'log-level': { type: 'string' },
      'log-dir': { type: 'string' },
      'no-build': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) return { help: true };
  const pos = (v: string | undefined, flag: string) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n <= 0) throw new Error(`${flag}: expected a positive number, got "${v}"`);
    return n;
  };
  const dur = (v: string | undefined, flag: string, zeroOk = false) => {
    if (v === undefined) return undefined;
    const s = parseDuration(v, flag);
    if (s === 0 && !zeroOk) throw new Error(`${flag}: must be more than 0, got "${v}"`);
    return s;
  };
  let doors: SoakDoor[] | undefined;
  if (values.door !== undefined) {
    const names = values.door.split(',').map((d) => d.trim());
    for (const d of names) if (d !== 'http' && d !== 'nats') throw new Error(`--door: expected http, nats or http,nats, got "${d}"`);
    doors = names as SoakDoor[];
  }
  if (values.mode !== undefined && values.mode !== 'real' && values.mode !== 'noop') throw new Error(`--mode: expected real or noop, got "${values.mode}"`);
  if (values.history !== undefined && values.history !== 'on' && values.history !== 'off') throw new Error(`--history: expected on or off, got "${values.history}"`);
  const records = pos(values.records, '--records');
  if (records !== undefined && !Number.isInteger(records)) throw new Error(`--records: expected a whole number, got "${values.records}"`);
  return stripUndefined({
    rate: pos(values.rate, '--rate'),
    minutes: pos(values.minutes, '--minutes'),
    killEverySeconds: dur(values['kill-every'], '--kill-every', true),
    doors,
    mode: values.mode,
    history: values.history,
    graceSeconds: dur(values.grace, '--grace'),
    sampleSeconds: dur(values.sample, '--sample'),
    windowSeconds: dur(values.window, '--window'),
    records,
    out: values.out,
    auth: values['no-auth'] ? false : undefined,
    logLevel: values['log-level'],
    logDir: values['log-dir'],
    build: !values['no-build'],
  });
}

async function main() {
  let opts: ReturnType<typeof parseSoakCli>;
  try {
    opts = parseSoakCli(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`soak: ${(err as Error).message}\n`);
    process.exit(2);
  }
  if (opts.help) {
    process.stdout.write(SOAK_USAGE);
    process.exit(0);
  }
  const { build, help: _help, ...run } = opts;
  if (build) ensureBuilt((s) => process.stderr.write(`${s}\n`));
  const abort: { reason: string | undefined } = { reason: undefined };
  const onSignal = (sig: string) => {
    if (abort.reason) process.exit(130);
    abort.reason = `interrupted (${sig})`;
    process.stderr.write(`soak: ${sig}: stopping, waiting for in-flight flows, then reporting (again to force)\n`);
  };
  process.on('SIGINT', () => onSignal('SIGINT'));
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  const r = await runSoak(run, abort);
  process.stdout.write(`${formatSoak(r)}\n`);
  process.exit(r.aborted && !r.submitted ? 1 : r.counts.lost || r.counts.duplicated ? 4 : 0);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) void main();
