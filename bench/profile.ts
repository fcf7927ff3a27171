/**
 * Summarises V8 .cpuprofile files (node --cpu-prof, e.g. from `npm run bench -- --cpu-prof DIR`):
 * top functions by self and by inclusive time, and time by package, as a share of busy (non-idle)
 * time. Usage: node --import tsx bench/profile.ts FILE_OR_DIR... [--top 25]
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  file: string;
  wallMs: number;
  busyMs: number;
  idleMs: number;
  gcMs: number;
  self: Array<{ fn: string; ms: number; pct: number }>;
  inclusive: Array<{ fn: string; ms: number; pct: number }>;
  packages: Array<{ pkg: string; ms: number; pct: number }>;
}

const root = process.cwd();

function where(cf: CallFrame): string {
  const name = cf.functionName || '(anonymous)';
  if (!cf.url) return name;
  let u = cf.url.replace(/^file:\/\//, '');
  const nm = u.lastIndexOf('/node_modules/');
  if (nm >= 0) u = u.slice(nm + '/node_modules/'.length);
  else if (u.startsWith('/')) u = relative(root, u);
  return `${name} ${u}:${cf.lineNumber + 1}`;
}

function packageOf(cf: CallFrame): string {
  const u = cf.url;
  if (!u) return cf.functionName.startsWith('(') ? cf.functionName : '(native)';
  if (u.startsWith('node:')) return `node:${u.slice(5).split('/')[0]}`;
  const nm = u.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const rest = u.slice(nm + '/node_modules/'.length).split('/');
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  const m = /\/(libs|services)\/([^/]+)\//.exec(u);
  return m ? `${m[1]}/${m[2]}` : u.startsWith('file:') ? 'app' : '(other)';
}

/** Who calls a function (matched by substring of "name file:line"): inclusive ms by caller chain of depth `depth`. */
export function callers(file: string, match: string, depth = 3, top = 15): Array<{ chain: string; ms: number }> {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of p.nodes) byId.set(n.id, n);
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const agg = new Map<string, number>();
  for (let i = 0; i < p.samples.length; i++) {
    const dt = (p.timeDeltas[i + 1] ?? 0) / 1000;
    // innermost matching frame, then its callers
    let id: number | undefined = p.samples[i];
    while (id !== undefined && !where(byId.get(id)!.callFrame).includes(match)) id = parent.get(id);
    if (id === undefined) continue;
    const chain: string[] = [];
    for (let up = parent.get(id); up !== undefined && chain.length < depth; up = parent.get(up)) chain.push(where(byId.get(up)!.callFrame));
    const k = chain.join(' <- ');
    agg.set(k, (agg.get(k) ?? 0) + dt);
  }
  return [...agg.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([chain, ms]) => ({ chain, ms: Math.round(ms) }));
}

export function summarise(file: string, top = 25): ProfileSummary {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of p.nodes) byId.set(n.id, n);
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<string, number>();
  const incl = new Map<string, number>();
  const pkgs = new Map<string, number>();
  let idle = 0;
  let gc = 0;
  let total = 0;
  for (let i = 0; i < p.samples.length; i++) {
    // timeDeltas[i] is the time since the previous sample: attribute the next delta to this sample.
    const dt = (p.timeDeltas[i + 1] ?? 0) / 1000;
    const node = byId.get(p.samples[i]!);
    if (!node) continue;
    total += dt;
    const fn = node.callFrame.functionName;
    if (fn === '(idle)') {
      idle += dt;
      continue;
    }
    if (fn === '(garbage collector)') gc += dt;
    const key = where(node.callFrame);
    self.set(key, (self.get(key) ?? 0) + dt);
    const pk = packageOf(node.callFrame);
    pkgs.set(pk, (pkgs.get(pk) ?? 0) + dt);
    const seen = new Set<string>();
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      const k = where(byId.get(id)!.callFrame);
      if (seen.has(k) || k === '(root)') continue;
      seen.add(k);
      incl.set(k, (incl.get(k) ?? 0) + dt);
    }
  }
  const busy = total - idle;
  const rank = (m: Map<string, number>) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([fn, ms]) => ({ fn, ms: Math.round(ms), pct: Math.round((ms / busy) * 1000) / 10 }));
  return {
    file,
    wallMs: Math.round((p.endTime - p.startTime) / 1000),
    busyMs: Math.round(busy),
    idleMs: Math.round(idle),
    gcMs: Math.round(gc),
    self: rank(self),
    inclusive: rank(incl),
    packages: rank(pkgs).map(({ fn, ms, pct }) => ({ pkg: fn, ms, pct })),
  };
}

/** The service a profile belongs to, from the pids.json the bench writes beside the profiles. */
function serviceOf(file: string): string {
  const pid = /^CPU\.\d+\.\d+\.(\d+)\./.exec(basename(file))?.[1];
  try {
    const pids = JSON.parse(readFileSync(join(dirname(file), 'pids.json'), 'utf8')) as Record<string, string>;
    return (pid && pids[pid]) || '?';
  } catch {
    return '?';
  }
}

export function formatSummary(s: ProfileSummary): string {
  const out = [`== ${serviceOf(s.file)} (${basename(s.file)}): wall ${s.wallMs} ms, busy ${s.busyMs} ms (GC ${s.gcMs} ms), idle ${s.idleMs} ms`];
  out.push('-- by package (self time, % of busy)');
  for (const x of s.packages) out.push(`${x.pct.toFixed(1).padStart(6)}%  ${String(x.ms).padStart(6)} ms  ${x.pkg}`);
  out.push('-- top self time');
  for (const x of s.self) out.push(`${x.pct.toFixed(1).padStart(6)}%  ${String(x.ms).padStart(6)} ms  ${x.fn}`);
  out.push('-- top inclusive time');
  for (const x of s.inclusive) out.push(`${x.pct.toFixed(1).padStart(6)}%  ${String(x.ms).padStart(6)} ms  ${x.fn}`);
  return out.join('\n');
}

function files(paths: string[]): string[] {
  const out: string[] = [];
  for (const p of paths) {
    if (statSync(p).isDirectory()) {
      for (const f of readdirSync(p)) {
        const fp = join(p, f);
        if (statSync(fp).isDirectory()) out.push(...files([fp]));
        else if (f.endsWith('.cpuprofile')) out.push(fp);
      }
    } else out.push(p);
  }
  return out;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const args = process.argv.slice(2);
  const ti = args.indexOf('--top');
  const top = ti >= 0 ? Number(args.splice(ti, 2)[1]) : 25;
  const ci = args.indexOf('--callers');
  const match = ci >= 0 ? args.splice(ci, 2)[1] : undefined;
  for (const f of files(args)) {
    if (match) {
      process.stdout.write(`== ${serviceOf(f)}: callers of ${match}\n`);
      for (const c of callers(f, match, 4, top)) process.stdout.write(`${String(c.ms).padStart(6)} ms  ${c.chain}\n`);
      process.stdout.write('\n');
    } else process.stdout.write(`${formatSummary(summarise(f, top))}\n\n`);
  }
}
