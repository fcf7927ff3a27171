import { parseArgs } from 'node:util';

export type TaskMode = 'noop' | 'real';
/** nats: JSON on the NATS door; nats-proto: a SubmitFlowRequest there; http: POST /v1/flows; grpc: SubmitFlow. */
export type Door = 'nats' | 'nats-proto' | 'http' | 'grpc';
/** on: the DynamoDB flow history (the local stack's default), with a local DynamoDB; off: JETFLOW_HISTORY=off. */
export type History = 'on' | 'off';

export const DOORS: readonly Door[] = ['nats', 'nats-proto', 'http', 'grpc'];

export interface BenchOptions {
  mode: TaskMode | 'both';
  /** Offered rates (flows/s) for the open-loop steps of noop mode (and real mode unless realRates). */
  rates: number[];
  /** Open-loop rates of real mode; default: half of real mode's measured saturation. */
  realRates: number[] | undefined;
  /** Seconds per step. */
  duration: number;
  saturation: boolean;
  /** Flows in flight in the closed loops (saturation and burst). */
  window: number;
  /** Doors to submit through; each runs the whole plan on the same stack. */
  doors: Door[];
  /** History settings; each starts its own stack. */
  history: History[];
  /** Flows of the saturation burst before the after-burst step; 0 = no burst. */
  burst: number;
  /** Offered rate (flows/s) and seconds of the fixed-rate step right after the burst. */
  burstRate: number;
  burstSeconds: number;
  /** Quiet seconds after a stack starts over which its idle CPU is measured; 0 = skip. */
  idleSeconds: number;
  /** NATS with identities (libs/security), as deployed: services as their roles, the NATS door as the tenant. */
  auth: boolean;
  /** JSON results file; empty or undefined = none (the CLI defaults to bench-results.json). */
  out: string | undefined;
  quick: boolean;
  /** Hard limit for the whole run (s): remaining steps are skipped, a hung run is torn down. */
  maxSeconds: number;
  /** Longest wait after a step for its flows' callbacks (s). */
  drainSeconds: number;
  /** Longest extra wait before the next step while earlier flows are still in flight (s), so steps do not overlap. */
  settleSeconds: number;
  warmupSeconds: number;
  ceiling: boolean;
  ceilingSeconds: number;
  /** Records per submission (the real handlers' work grows with it). */
  records: number;
  /** Directory for node --cpu-prof profiles of the services (one run, then summarise with bench/profile.ts). */
  cpuProfDir: string | undefined;
  logLevel: string;
  /** Run `tsc` first when dist/ is older than the sources. */
  build: boolean;
  progress: boolean;
  logDir: string | undefined;
}

export const QUICK: Partial<BenchOptions> = { duration: 3, ceilingSeconds: 1, warmupSeconds: 0.5, drainSeconds: 4, settleSeconds: 5, window: 300, burst: 0, idleSeconds: 1 };
export const DEFAULTS: BenchOptions = {
  mode: 'both',
  rates: [100, 300],
  realRates: undefined,
  duration: 10,
  saturation: true,
  window: 1_000,
  doors: ['nats'],
  history: ['on'],
  burst: 3_000,
  burstRate: 100,
  burstSeconds: 20,
  idleSeconds: 5,
  auth: true,
  out: 'bench-results.json',
  quick: false,
  maxSeconds: 300,
  drainSeconds: 5,
  settleSeconds: 20,
  warmupSeconds: 2,
  ceiling: true,
  ceilingSeconds: 3,
  records: 10,
  cpuProfDir: undefined,
  logLevel: 'info',
  build: false,
  progress: true,
  logDir: undefined,
};

export function resolveOptions(partial: Partial<BenchOptions>): BenchOptions {
  return { ...DEFAULTS, ...(partial.quick ? QUICK : {}), ...stripUndefined(partial) };
}

export function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

export const USAGE = `Usage: npm run bench -- [options]
       npm run bench -- --compare BEFORE.json AFTER.json
  --mode noop|real|both     task mode (default both)
  --door nats,...           doors, each runs the plan: nats (JSON), nats-proto (SubmitFlowRequest), http, grpc (default nats)
  --history on,off          DynamoDB flow history on (the local stack's default; starts a local DynamoDB) and/or off (default on)
  --rates 100,300           open-loop offered rates, flows/s (noop; real too unless --real-rates); none = no open-loop step
  --real-rates N,...        open-loop rates of real mode (default: half its saturation)
  --duration 10             seconds per step
  --no-saturation           skip the closed-loop saturation step
  --window 1000             flows in flight in the closed loops (saturation, burst)
  --burst 3000              flows of a saturation burst followed at once by a fixed-rate step; 0 = none (noop mode)
  --burst-rate 100          offered flows/s of the step right after the burst
  --burst-seconds 20        seconds of the step right after the burst
  --idle-seconds 5          quiet interval after start over which the stack's idle CPU is measured; 0 = skip
  --no-auth                 NATS without identities (default: as deployed, libs/security)
  --out bench-results.json  JSON results file
  --compare A.json B.json   print two results files side by side with the change in %, and exit
  --quick                   short run (3 s steps, 1 s ceiling, no burst)
  --max-seconds 300         hard limit for the whole run
  --drain 5                 longest wait for callbacks after a step (s)
  --settle 20               longest wait for earlier steps' flows before a step starts (s)
  --warmup 2                unrecorded warm-up per mode and door (s)
  --no-ceiling              skip the JetStream ceiling measurement
  --ceiling-seconds 3       seconds per ceiling measurement
  --records 10              records per submission
  --cpu-prof DIR            run the services under node --cpu-prof, profiles to DIR/<mode>
  --log-level info          services' LOG_LEVEL
  --log-dir DIR             keep the services' logs in DIR/<mode>
  --no-build                do not rebuild dist/ when stale
`;

export type Cli = { help: true } | { compare: [string, string] } | { run: Partial<BenchOptions> };

/** Parses the bench's command line; a bad value throws an error naming the flag and the value. */
export function parseCommand(argv: string[]): Cli {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      mode: { type: 'string' },
      door: { type: 'string' },
      history: { type: 'string' },
      rates: { type: 'string' },
      'real-rates': { type: 'string' },
      duration: { type: 'string' },
      saturation: { type: 'boolean' },
      'no-saturation': { type: 'boolean' },
      window: { type: 'string' },
      burst: { type: 'string' },
      'burst-rate': { type: 'string' },
      'burst-seconds': { type: 'string' },
      'idle-seconds': { type: 'string' },
      'no-auth': { type: 'boolean' },
      out: { type: 'string' },
      compare: { type: 'boolean' },
      quick: { type: 'boolean' },
      'max-seconds': { type: 'string' },
      drain: { type: 'string' },
      settle: { type: 'string' },
      warmup: { type: 'string' },
      'no-ceiling': { type: 'boolean' },
      'ceiling-seconds': { type: 'string' },
      records: { type: 'string' },
      'cpu-prof': { type: 'string' },
      'log-level': { type: 'string' },
      'log-dir': { type: 'string' },
      'no-build': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: true,
  });
  if (values.help) return { help: true };
  if (values.compare) {
    if (positionals.length !== 2) throw new Error(`--compare: expected two results files (before and after), got ${positionals.length}`);
    return { compare: [positionals[0]!, positionals[1]!] };
  }
  if (positionals.length) throw new Error(`unexpected argument "${positionals[0]}" (only --compare takes files)`);
  const num = (v: string | undefined, name: string, zeroOk = false) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n < 0 || (n === 0 && !zeroOk)) throw new Error(`--${name}: expected a ${zeroOk ? 'non-negative' : 'positive'} number, got "${v}"`);
    return n;
  };
  const list = (v: string | undefined, name: string) => (v === undefined ? undefined : v === 'none' ? [] : v.split(',').map((x) => num(x.trim(), name)!));
  const oneOfList = <T extends string>(v: string | undefined, name: string, allowed: readonly T[]): T[] | undefined => {
    if (v === undefined) return undefined;
    const items = v.split(',').map((x) => x.trim());
    for (const x of items) if (!allowed.includes(x as T)) throw new Error(`--${name}: expected ${allowed.join(', ')} (comma-separated), got "${x}"`);
    if (new Set(items).size !== items.length) throw new Error(`--${name}: "${v}" names a value twice`);
    return items as T[];
  };
  const mode = values.mode;
  if (mode !== undefined && mode !== 'noop' && mode !== 'real' && mode !== 'both') throw new Error(`--mode: expected noop, real or both, got "${mode}"`);
  const burst = num(values.burst, 'burst', true);
  if (burst !== undefined && !Number.isInteger(burst)) throw new Error(`--burst: expected a whole number of flows, got "${values.burst}"`);
  return {
    run: stripUndefined({
      mode,
      doors: oneOfList(values.door, 'door', DOORS),
      history: oneOfList(values.history, 'history', ['on', 'off'] as const),
      rates: list(values.rates, 'rates'),
      realRates: list(values['real-rates'], 'real-rates'),
      duration: num(values.duration, 'duration'),
      saturation: values['no-saturation'] ? false : values.saturation,
      window: num(values.window, 'window'),
      burst,
      burstRate: num(values['burst-rate'], 'burst-rate'),
      burstSeconds: num(values['burst-seconds'], 'burst-seconds'),
      idleSeconds: num(values['idle-seconds'], 'idle-seconds', true),
      auth: values['no-auth'] ? false : undefined,
      out: values.out,
      quick: values.quick,
      maxSeconds: num(values['max-seconds'], 'max-seconds'),
      drainSeconds: num(values.drain, 'drain'),
      settleSeconds: num(values.settle, 'settle', true),
      warmupSeconds: num(values.warmup, 'warmup', true),
      ceiling: values['no-ceiling'] ? false : undefined,
      ceilingSeconds: num(values['ceiling-seconds'], 'ceiling-seconds'),
      records: num(values.records, 'records'),
      cpuProfDir: values['cpu-prof'],
      logLevel: values['log-level'],
      logDir: values['log-dir'],
      build: !values['no-build'],
    }),
  };
}
