/**
 * The libs as workspace packages (ARCHITECTURE.md "Packages"): each libs/<name> is `@jetflow/<name>` with
 * one entry (its src/index.ts; built, dist/index.js); nothing reaches into another package's files; every
 * import is a declared dependency; and the dependencies between the libs form no cycle. Static: reads
 * the package.json files and the imports of every source file.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, relative, resolve, sep } from 'node:path';

interface Pkg {
  name: string;
  private?: boolean;
  type?: string;
  exports?: Record<string, unknown>;
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
}
const SCOPE = '@jetflow/';
const readJson = <T>(f: string) => JSON.parse(readFileSync(f, 'utf8')) as T;
const libs = readdirSync('libs')
  .filter((n) => existsSync(join('libs', n, 'src', 'index.ts')))
  .sort();
const pkgs = new Map(libs.map((n) => [n, readJson<Pkg>(join('libs', n, 'package.json'))]));

function walk(dir: string, out: string[] = []): string[] {
  if (!existsSync(dir)) return out;
  for (const e of readdirSync(dir)) {
    if (['node_modules', 'dist', 'gen', 'assets', '__pycache__'].includes(e) || e.startsWith('.')) continue;
    const p = join(dir, e);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (/\.(ts|mts|mjs|js)$/.test(e)) out.push(p);
  }
  return out;
}
const SPEC = /(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)(['"])([^'"\n]+)\1/gm;
const specifiers = (text: string) => [...text.matchAll(SPEC)].map((m) => m[2]!);
/** The package a repository file belongs to: `libs/<name>`, `packages/<name>`, or `.` (services, scripts, bench, test). */
const ownerOf = (file: string) => {
  const [top, name] = file.split(sep);
  return top === 'libs' || top === 'packages' ? `${top}/${name}` : '.';
};
const isTest = (file: string) => /\.test\.(ts|mts)$/.test(file) || ['test', 'bench'].includes(file.split(sep)[0]!);
/** The bare package name of a specifier (`@scope/name` or `name`), or undefined for relative and node: ones. */
function packageOf(spec: string): string | undefined {
  if (spec.startsWith('.') || spec.startsWith('/') || spec.startsWith('node:') || builtinModules.includes(spec.split('/')[0]!)) return undefined;
  return spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0];
}

/** The subpaths (`./threads`) each package of packages/* exports besides its main entry, by package name. */
const packageSubpaths = new Map(
  readdirSync('packages')
    .filter((p) => existsSync(join('packages', p, 'package.json')))
    .map((p) => {
      const pkg = readJson<Pkg>(join('packages', p, 'package.json'));
      return [pkg.name, new Set(Object.keys(pkg.exports ?? {}).filter((k) => k !== '.'))] as const;
    }),
);

/**
 * Why an import from `file` breaks the package rules, if it does: a relative path into another package's
 * directory, or a `@jetflow/<name>/…` subpath a lib (one entry) or a package's exports do not have. The
 * entry of packages/* (their src/index) by path is the one exception: ingest and the bench use
 * @jetflow/worker's source, which its build bundles.
 */
function deepImport(file: string, spec: string, subpaths: ReadonlyMap<string, ReadonlySet<string>> = packageSubpaths): string | undefined {
  if (spec.startsWith(SCOPE) && spec.split('/').length > 2) {
    const name = spec.split('/').slice(0, 2).join('/');
    if (subpaths.get(name)?.has(`./${spec.split('/').slice(2).join('/')}`)) return undefined;
    return `${spec} names a file inside the package; import ${name}`;
  }
  if (!spec.startsWith('.')) return undefined;
  const target = relative('.', resolve(dirname(file), spec));
  const into = ownerOf(target);
  if (into === '.' || into === ownerOf(file)) return undefined;
  if (into.startsWith('packages/') && /^packages\/[^/]+\/src\/index\.(js|ts)$/.test(target.split(sep).join('/')) && ownerOf(file) === '.') return undefined;
  return `${spec} reaches into ${into}; import ${into.startsWith('libs/') ? SCOPE + into.slice(5) : 'its package'} instead`;
}

/** A cycle in a dependency graph, as the path that closes it, or undefined. */
function findCycle(graph: Map<string, string[]>): string[] | undefined {
  const state = new Map<string, 'open' | 'done'>();
  const path: string[] = [];
  const visit = (n: string): string[] | undefined => {
    if (state.get(n) === 'done') return undefined;
    if (state.get(n) === 'open') return [...path.slice(path.indexOf(n)), n];
    state.set(n, 'open');
    path.push(n);
    for (const d of graph.get(n) ?? []) {
      const c = visit(d);
      if (c) return c;
    }
    path.pop();
    state.set(n, 'done');
    return undefined;
  };
  for (const n of graph.keys()) {
    const c = visit(n);
    if (c) return c;
  }
  return undefined;
}

const files = ['libs', 'services', 'scripts', 'bench', 'test', 'packages', 'examples'].flatMap((d) => walk(d));

describe('workspace packages', () => {
  test('the checks can fail: a deep import, a subpath and a cycle are caught', () => {
    assert.match(deepImport('services/ingest/src/main.ts', '../../../libs/messaging/src/utf8.js') ?? '', /reaches into libs\/messaging; import @jetflow\/messaging/);
    assert.match(deepImport('libs/flows/src/a.ts', '../../messaging/src/index.js') ?? '', /reaches into libs\/messaging/);
    assert.match(deepImport('test/x.test.ts', '@jetflow/flows/src/ids.js') ?? '', /names a file inside the package/);
    assert.equal(deepImport('services/a/src/t.ts', '@jetflow/sdk/threads', new Map([['@jetflow/sdk', new Set(['./threads'])]])), undefined, 'an exported subpath');
    assert.match(deepImport('services/a/src/t.ts', '@jetflow/sdk/src/x.js', new Map([['@jetflow/sdk', new Set(['./threads'])]])) ?? '', /names a file inside/);
    assert.equal(deepImport('libs/flows/src/a.ts', './ids.js'), undefined);
    assert.equal(deepImport('services/ingest/src/a.ts', '@jetflow/flows'), undefined);
    assert.deepEqual(
      findCycle(
        new Map([
          ['a', ['b']],
          ['b', ['c']],
          ['c', ['a']],
        ]),
      ),
      ['a', 'b', 'c', 'a'],
    );
    assert.equal(
      findCycle(
        new Map([
          ['a', ['b']],
          ['b', []],
        ]),
      ),
      undefined,
    );
  });

  test('each lib is @jetflow/<name>: private ESM with one entry, its src/index.ts (built: dist/index.js), mapped for tsc, tsx and esbuild', () => {
    const base = readJson<{ compilerOptions: { paths: Record<string, string[]> } }>('tsconfig.base.json');
    const rootPkg = readJson<{ workspaces: string[] }>('package.json');
    assert.ok(rootPkg.workspaces.includes('libs/*'), 'libs/* are workspaces');
    for (const [n, p] of pkgs) {
      assert.equal(p.name, `${SCOPE}${n}`);
      assert.equal(p.private, true, `${p.name} is private`);
      assert.equal(p.type, 'module', `${p.name} is ESM`);
      assert.deepEqual(Object.keys(p.exports ?? {}), ['.'], `${p.name} has one entry`);
      assert.deepEqual(p.exports!['.'], { types: './dist/index.d.ts', default: './dist/index.js' }, `${p.name}'s entry is its built index`);
      assert.deepEqual(base.compilerOptions.paths[`${SCOPE}${n}`], [`./libs/${n}/src/index.ts`], `tsconfig.base.json maps ${p.name} to its source`);
      assert.ok(existsSync(join('libs', n, 'tsconfig.json')), `${p.name} builds with its own tsconfig.json`);
    }
    for (const [name, [target]] of Object.entries(base.compilerOptions.paths))
      assert.match(target ?? '', /^\.\/(libs|packages)\/[a-z0-9-]+\/src\/[a-z0-9-]+\.ts$/, `${name} maps to the source of a workspace package's entry`);
  });

  test('no import reaches into another package: relative paths stay inside their package, @jetflow/* names only the entry', () => {
    const bad: string[] = [];
    for (const f of files) for (const s of specifiers(readFileSync(f, 'utf8'))) if (deepImport(f, s)) bad.push(`${f}: ${deepImport(f, s)}`);
    assert.deepEqual(bad, [], 'run node scripts/codemods/lib-imports.mjs (it rewrites what the entry exports)');
  });

  test("every package a lib imports is in its package.json (tests' imports may be devDependencies), at the root's version", () => {
    const root = readJson<Pkg>('package.json');
    const missing: string[] = [];
    for (const f of files.filter((x) => x.startsWith(`libs${sep}`))) {
      const lib = f.split(sep)[1]!;
      const p = pkgs.get(lib);
      if (!p) continue;
      const text = readFileSync(f, 'utf8');
      const bare = [...specifiers(text), ...[...text.matchAll(/createRequire\([^)]*\)\(\s*'([^']+)'\s*\)/g)].map((m) => m[1]!)];
      for (const name of bare.map(packageOf)) {
        if (!name || name === p.name) continue;
        const v = p.dependencies?.[name] ?? (isTest(f) || !name.startsWith(SCOPE) ? p.devDependencies?.[name] : undefined);
        if (!v) missing.push(`${f} imports ${name}: not in ${p.name}'s ${isTest(f) ? 'devDependencies' : 'dependencies'}`);
        else if (!name.startsWith(SCOPE) && v !== (root.dependencies?.[name] ?? root.devDependencies?.[name])) missing.push(`${p.name}: ${name}@${v}, the root pins another version`);
      }
    }
    assert.deepEqual([...new Set(missing)], []);
  });

  test('the dependencies between the libs form no cycle, and name only libs', () => {
    const graph = new Map(
      [...pkgs.values()].map((p) => {
        const deps = Object.keys(p.dependencies ?? {}).filter((d) => d.startsWith(SCOPE));
        for (const d of deps) assert.ok(libs.includes(d.slice(SCOPE.length)), `${p.name} depends on ${d}, which is no lib`);
        return [p.name, deps];
      }),
    );
    assert.equal(findCycle(graph)?.join(' → '), undefined, 'a cycle between libs: move the shared piece down into the lower lib or a new one');
  });

  test('the codemod finds nothing to change (package.json deps, tsconfig references and paths are in sync with the imports)', () => {
    assert.doesNotThrow(() => execFileSync(process.execPath, ['scripts/codemods/lib-imports.mjs', '--check'], { encoding: 'utf8', stdio: 'pipe' }));
  });
});
