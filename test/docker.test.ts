import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { builtinModules } from 'node:module';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { parse, parseAllDocuments } from 'yaml';

/** The Dockerfile checked without a Docker engine: its stages, what each copies and runs, against the repository after `npm run build`. */
interface Instr {
  op: string;
  args: string;
  flags: Record<string, string>;
}
interface Stage {
  name: string;
  from: string;
  instrs: Instr[];
}

function parseDockerfile(text: string): { args: Record<string, string>; stages: Stage[] } {
  const lines = text
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  const args: Record<string, string> = {};
  const stages: Stage[] = [];
  for (const line of lines) {
    const m = /^(\w+)\s+(.*)$/.exec(line);
    assert.ok(m, `Dockerfile line: ${line}`);
    const op = m[1]!.toUpperCase();
    let rest = m[2]!;
    const flags: Record<string, string> = {};
    for (let f = /^--(\w[\w-]*)=(\S+)\s+/.exec(rest); f; f = /^--(\w[\w-]*)=(\S+)\s+/.exec(rest)) {
      flags[f[1]!] = f[2]!;
      rest = rest.slice(f[0].length);
    }
    if (op === 'ARG' && !stages.length) {
      const [k, v] = rest.split('=');
      args[k!] = v ?? '';
    } else if (op === 'FROM') {
      const fm = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(rest)!;
      stages.push({ name: fm[2] ?? String(stages.length), from: fm[1]!.replace(/\$\{(\w+)\}/g, (_, k: string) => args[k] ?? ''), instrs: [] });
    } else {
      assert.ok(stages.length, `${op} before FROM`);
      stages.at(-1)!.instrs.push({ op, args: rest, flags });
    }
  }
  return { args, stages };
}

const { stages } = parseDockerfile(readFileSync('Dockerfile', 'utf8'));
const stage = (name: string) => {
  const s = stages.find((x) => x.name === name);
  assert.ok(s, `stage ${name}`);
  return s;
};
const runtime = stages.at(-1)!;
const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { scripts: Record<string, string>; dependencies: Record<string, string>; engines: { node: string } };
const execForm = (args: string) => JSON.parse(args) as string[];
/** Stages inherit from one another: the chain of a stage and its FROM stages. */
const lineage = (s: Stage): Stage[] => {
  const parent = stages.find((x) => x.name === s.from);
  return parent ? [s, ...lineage(parent)] : [s];
};
const workdir = (s: Stage) =>
  lineage(s)
    .flatMap((x) => x.instrs.filter((i) => i.op === 'WORKDIR'))
    .at(0)?.args ?? '/';

function assertBuilt() {
  assert.ok(existsSync('dist/services/ingest/src/main.js'), 'dist/ is missing: run npm run build first (npm test does)');
}

describe('Dockerfile', () => {
  test('multi-stage on an exactly pinned Node 20 image; the runtime stage is the default target', () => {
    assert.ok(stages.length >= 3);
    for (const s of stages) {
      if (stages.some((x) => x.name === s.from)) continue;
      assert.match(s.from, /^node:20\.\d+\.\d+-bookworm-slim(@sha256:[0-9a-f]{64})?$/, `${s.name}: FROM ${s.from} is pinned`);
    }
    assert.equal(runtime.name, 'runtime');
    assert.match(pkg.engines.node, />=20/);
  });

  test('runtime: production dependencies only, numeric non-root user, exec-form command, no shell entrypoint', () => {
    const deps = stage('prod-deps');
    assert.ok(
      deps.instrs.some((i) => i.op === 'RUN' && /\bnpm ci\b.*--omit=dev/.test(i.args)),
      'npm ci --omit=dev',
    );
    const copies = runtime.instrs.filter((i) => i.op === 'COPY');
    const modules = copies.filter((c) => c.args.split(/\s+/)[0]!.includes('node_modules'));
    assert.deepEqual(
      modules.map((c) => c.flags.from),
      ['prod-deps'],
      'node_modules from the production install only',
    );
    // dist/, and libs/: the workspace packages, whose package.json exports point into their built dist/.
    assert.ok(!copies.some((c) => c.flags.from === 'build' && !/\/(dist|libs)\s/.test(`${c.args} `)), 'from the build stage only dist/ and the built libs');
    const users = lineage(runtime).flatMap((s) => s.instrs.filter((i) => i.op === 'USER'));
    assert.match(users[0]?.args ?? '', /^[1-9]\d*(:[1-9]\d*)?$/, 'USER is a numeric non-root uid (Kubernetes runAsNonRoot checks numbers)');
    assert.equal(users[0]!.args.split(':')[0], '1000', 'uid 1000, the runAsUser of deploy/k8s');
    for (const s of stages) {
      for (const i of s.instrs.filter((x) => x.op === 'CMD' || x.op === 'ENTRYPOINT')) {
        assert.ok(i.args.startsWith('['), `${s.name}: ${i.op} in exec form, not through a shell`);
        assert.ok(!['sh', 'bash', '/bin/sh', '/bin/bash'].includes(execForm(i.args)[0]!), `${s.name}: ${i.op} is not a shell`);
      }
      assert.ok(!s.instrs.some((i) => i.op === 'ENTRYPOINT'), `${s.name}: no ENTRYPOINT (the command picks the service)`);
    }
    assert.ok(
      runtime.instrs.some((i) => i.op === 'RUN' && /rm -rf .*\/npm\b/.test(i.args)),
      'npm is not left in the runtime image',
    );
  });

  test("every file a stage copies exists (repository files, and the build stage's outputs after npm run build)", () => {
    assertBuilt();
    for (const s of stages) {
      for (const c of s.instrs.filter((i) => i.op === 'COPY')) {
        const parts = c.args.split(/\s+/);
        const sources = parts.slice(0, -1);
        for (const src of sources) {
          // The build stage's WORKDIR is the repository root; npm run build leaves the same tree here.
          const path = c.flags.from ? src.replace(new RegExp(`^${workdir(stage(c.flags.from))}/?`), '') : src;
          assert.ok(existsSync(path), `${s.name}: COPY ${c.flags.from ? `--from=${c.flags.from} ` : ''}${src}: ${path} exists`);
          if (c.flags.from)
            assert.ok(
              stages.some((x) => x.name === c.flags.from),
              `${s.name}: stage ${c.flags.from} exists`,
            );
        }
      }
      for (const r of s.instrs.filter((i) => i.op === 'RUN')) {
        for (const m of r.args.matchAll(/npm run (\S+)/g)) assert.ok(pkg.scripts[m[1]!], `${s.name}: npm run ${m[1]} is a package.json script`);
      }
    }
  });

  test('what the services read from disk at run time is in the runtime image', () => {
    const copied = runtime.instrs.filter((i) => i.op === 'COPY').map((c) => c.args.split(/\s+/)[0]!.replace(/^\/app\//, ''));
    // The built libs with libs/models/assets (assetsDir), the dashboard (services/ingest/ui), the version in the ops API (package.json).
    for (const need of ['dist', 'libs', 'services/ingest/ui', 'package.json', 'node_modules']) assert.ok(copied.includes(need), `runtime copies ${need}`);
    for (const lib of readdirSync('libs').filter((n) => existsSync(join('libs', n, 'package.json')))) {
      const exp = (JSON.parse(readFileSync(join('libs', lib, 'package.json'), 'utf8')) as { exports: Record<string, { default: string }> }).exports['.']!;
      assert.match(exp.default, /^\.\/dist\//, `@jetflow/${lib} runs from its built dist/`);
    }
    for (const f of ['libs/models/assets/vocab.json', 'libs/models/assets/sentiment.onnx', 'services/ingest/ui/index.html']) assert.ok(existsSync(f));
  });

  test('every command in the Dockerfile, compose and the Kubernetes manifests runs a file that exists in dist/', () => {
    assertBuilt();
    const commands: Array<[string, string[]]> = [];
    for (const s of stages) for (const i of s.instrs.filter((x) => x.op === 'CMD')) commands.push([`Dockerfile ${s.name}`, execForm(i.args)]);
    const compose = parse(readFileSync('docker-compose.yml', 'utf8'), { merge: true }) as { services: Record<string, { command?: string[]; build?: unknown }> };
    for (const [name, s] of Object.entries(compose.services)) if (s.build && s.command) commands.push([`compose ${name}`, s.command]);
    for (const dir of ['deploy/k8s/base']) {
      for (const f of readdirSync(dir).filter((x) => x.endsWith('.yaml'))) {
        for (const d of parseAllDocuments(readFileSync(join(dir, f), 'utf8'))) {
          const o = d.toJSON() as { spec?: { template?: { spec?: { containers?: Array<{ image: string; command?: string[] }> } } } };
          for (const c of o?.spec?.template?.spec?.containers ?? []) if (c.image.startsWith('jetflow:') && c.command) commands.push([`k8s ${f}`, c.command]);
        }
      }
    }
    assert.ok(commands.length >= 11, `${commands.length} commands`);
    for (const [where, cmd] of commands) {
      assert.equal(cmd[0], 'node', `${where}: runs node`);
      assert.match(cmd[1]!, /^(dist|libs\/[a-z0-9-]+\/dist)\//, `${where}: a compiled file`);
      assert.ok(existsSync(cmd[1]!), `${where}: ${cmd[1]} exists after npm run build`);
    }
  });

  test('the services need only production dependencies (every package their compiled code imports is in dependencies)', () => {
    assertBuilt();
    /** A lib's package.json, by its workspace name `@jetflow/<name>`. */
    const libPkg = (name: string) => {
      const file = join('libs', name.slice('@jetflow/'.length), 'package.json');
      return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as { exports: Record<string, { default: string }>; dependencies?: Record<string, string> }) : undefined;
    };
    const builtins = new Set([...builtinModules, ...builtinModules.map((m) => `node:${m}`)]);
    const entries = ['ingest', 'orchestrator', 'dataset-generator', 'analyst'].map((s) => `dist/services/${s}/src/main.js`);
    for (const s of ['dataset-generator', 'analyst']) entries.push(`dist/services/${s}/src/pool-worker.js`);
    const seen = new Set<string>();
    const packages = new Map<string, string>();
    // startLocalAws() (libs/storage) requires these lazily for the laptop stack and the tests; no service calls it.
    const laptopOnly = new Set(['s3rver', 'dynalite']);
    const walk = (file: string) => {
      if (seen.has(file)) return;
      seen.add(file);
      const src = readFileSync(file, 'utf8');
      for (const m of src.matchAll(
        /(?:^|[\s;])(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)|^import\s+['"]([^'"]+)['"]|\brequire\(\s*['"]([^'"]+)['"]\s*\)/gm,
      )) {
        const spec = (m[1] ?? m[2] ?? m[3] ?? m[4])!;
        if (spec.startsWith('.')) {
          const target = resolve(dirname(file), spec);
          assert.ok(existsSync(target), `${file}: ${spec} exists`);
          walk(target);
        } else if (!builtins.has(spec)) {
          const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!;
          const lib = name.startsWith('@jetflow/') ? libPkg(name) : undefined;
          if (lib) {
            // A workspace lib: its own built code, whose npm imports its package.json must declare.
            const target = join('libs', name.slice('@jetflow/'.length), lib.exports['.']!.default);
            assert.ok(existsSync(target), `${file}: ${spec} is built (${target})`);
            walk(target);
          }
          const owner = /^libs\/([a-z0-9-]+)\/dist\//.exec(file)?.[1];
          if (owner && !name.startsWith('@jetflow/'))
            assert.ok(libPkg(`@jetflow/${owner}`)?.dependencies?.[name] || laptopOnly.has(name), `${file}: ${name} is in libs/${owner}/package.json dependencies`);
          if (!packages.has(name)) packages.set(name, file);
        }
      }
    };
    for (const e of entries) walk(e);
    assert.ok(packages.size > 10, `found ${packages.size} packages`);
    for (const [name, from] of packages) {
      if (laptopOnly.has(name) && from.endsWith('libs/storage/dist/local-aws.js')) continue;
      assert.ok(pkg.dependencies[name], `${name} (imported by ${from}) is a production dependency`);
    }
  });

  test('.dockerignore keeps secrets and local state out of the build context', () => {
    const ignore = readFileSync('.dockerignore', 'utf8').split('\n');
    for (const p of ['.git', 'node_modules', '.jetflow', '.env', 'deploy/k8s/overlays/*/secrets']) assert.ok(ignore.includes(p), `.dockerignore has ${p}`);
  });
});
