/**
 * `npm run bench`: the CLI of the benchmark library in bench/lib (runBench, the report, --compare).
 * See docs/PERFORMANCE.md for what it measures and how to read the output.
 */
import { pathToFileURL } from 'node:url';
import { currentAbort, runBench } from './lib/bench.js';
import { formatCompare } from './lib/compare.js';
import { DEFAULTS, USAGE, parseCommand, type BenchOptions } from './lib/options.js';
import { formatReport } from './lib/report.js';
import { readResults } from './lib/results.js';

export { runBench, ensureBuilt } from './lib/bench.js';
export { DEFAULTS, parseCommand, type BenchOptions, type Door, type History, type TaskMode } from './lib/options.js';
export { checkTargets, formatReport } from './lib/report.js';
export { formatCompare } from './lib/compare.js';
export { readResults, type BenchResult, type StackResult, type StepResult } from './lib/results.js';

/**
 * The run options of a command line (`jetflow bench` passes its arguments here). --help prints the
 * usage and --compare prints the comparison, then both exit: neither is a run.
 */
export function parseCli(argv: string[]): Partial<BenchOptions> {
  const cli = parseCommand(argv);
  if ('help' in cli) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  if ('compare' in cli) {
    const [a, b] = cli.compare;
    process.stdout.write(`${formatCompare(readResults(a), readResults(b), [a, b])}\n`);
    process.exit(0);
  }
  return cli.run;
}

async function main() {
  let opts: Partial<BenchOptions>;
  try {
    opts = parseCli(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`bench: ${(err as Error).message}\n`);
    process.exit(2);
  }
  const maxS = opts.maxSeconds ?? DEFAULTS.maxSeconds;
  // Last resort: if teardown itself hangs, leave anyway (children get SIGKILL from their own exit).
  const hard = setTimeout(
    () => {
      process.stderr.write('bench: hard time limit reached; exiting\n');
      process.exit(3);
    },
    (maxS + 45) * 1000,
  );
  hard.unref();
  const onSignal = (sig: string) => {
    if (currentAbort.reason) process.exit(130);
    currentAbort.reason = `interrupted (${sig})`;
    process.stderr.write(`bench: ${sig}: stopping and cleaning up (again to force)\n`);
  };
  process.on('SIGINT', () => onSignal('SIGINT'));
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  const r = await runBench(opts);
  process.stdout.write(`${formatReport(r)}\n`);
  if (r.meta.options.out) process.stderr.write(`bench: results written to ${r.meta.options.out}\n`);
  process.exit(r.aborted && !r.steps.length ? 1 : 0);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) void main();
