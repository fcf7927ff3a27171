#!/usr/bin/env node
// The libs as workspace packages, kept so by re-running this (idempotent): `node scripts/codemods/lib-imports.mjs`.
//   1. Every import that reaches into another package's libs/<name>/src/… by a relative path becomes
//      `@jetflow/<name>`, when the file it names is what that package's index exports (index.ts itself,
//      or a module the index re-exports with `export … from './<file>.js'`). Any other such import is
//      listed and the script exits 1: export it from the index (curate) or move the code, then re-run.
//      Imports of one package merged into one statement.
//   2. Each lib's package.json gets the dependencies its imports need: `@jetflow/*` as "*", npm packages
//      at the version the root package.json pins; imports only its tests make go to devDependencies
//      (and so does a package the root has as a dev dependency). Its tsconfig.json references the
//      @jetflow libs it depends on. The root package.json declares the @jetflow libs services,
//      scripts and bench import; packages/* (bundled) get them as devDependencies.
//   3. tsconfig.base.json's paths (`@jetflow/<name>` → its src/index.ts, for tsc --noEmit, tsx and esbuild)
//      and tsconfig.json's references list every lib. Other @jetflow names (packages/*) are left as they are.
// Then prettier formats what it wrote. `--check` writes nothing and exits 1 if anything would change.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const check = process.argv.includes('--check');
const SCOPE = '@jetflow/';
const builtins = new Set([...builtinModules, ...builtinModules.map((m) => `node:${m}`)]);
const SKIP_DIRS = new Set(['node_modules', 'dist', 'gen', '.jetflow', 'test-artifacts', 'assets', '__pycache__']);
const SOURCE = /\.(ts|mts|mjs|js)$/;

const libs = readdirSync(join(root, 'libs'))
  .filter((n) => existsSync(join(root, 'libs', n, 'src', 'index.ts')))
  .sort();

function walk(dir, out = []) {
  if (!existsSync(dir)) return out;
  for (const e of readdirSync(dir)) {
    if (SKIP_DIRS.has(e) || e.startsWith('.')) continue;
    const p = join(dir, e);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (SOURCE.test(e)) out.push(p);
  }
  return out;
}
const files = ['libs', 'services', 'scripts', 'bench', 'test', 'packages', 'examples'].flatMap((d) => walk(join(root, d)));

/** The package a file belongs to: `libs/<name>`, `packages/<name>`, or the root. */
function ownerOf(file) {
  const [top, name] = relative(root, file).split(sep);
  return top === 'libs' || top === 'packages' ? `${top}/${name}` : '.';
}
/** Tests, and what only developers run (the bench): their imports are dev dependencies. */
const isTest = (file) => /\.test\.(ts|mts)$/.test(file) || ['test', 'bench'].includes(relative(root, file).split(sep)[0]);

/** What a lib's index re-exports: the `./<file>` modules named in its `export … from` statements. */
const indexExports = new Map(
  libs.map((n) => {
    const text = readFileSync(join(root, 'libs', n, 'src', 'index.ts'), 'utf8');
    return [n, new Set([...text.matchAll(/^export\s[^;]*?from\s*'\.\/([^']+)\.js'/gm)].map((m) => m[1]))];
  }),
);

// Static and dynamic imports and re-exports: `from '…'`, `import '…'`, `import('…')`.
const SPEC = /(\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)(['"])([^'"\n]+)\2/gm;
const problems = [];
const changed = [];
/** Files this run wrote, for prettier. */
const written = [];
/** Bare specifiers each package imports, split by whether only tests import them. */
const uses = new Map();
const use = (owner, name, test) => {
  let u = uses.get(owner);
  if (!u) uses.set(owner, (u = { run: new Set(), test: new Set() }));
  (test ? u.test : u.run).add(name);
};

for (const file of files) {
  const before = readFileSync(file, 'utf8');
  const owner = ownerOf(file);
  let text = before.replace(SPEC, (all, lead, q, spec) => {
    if (!spec.startsWith('.')) return all;
    const target = relative(root, resolve(dirname(file), spec)).split(sep);
    if (target[0] !== 'libs' || target[2] !== 'src' || !libs.includes(target[1]) || owner === `libs/${target[1]}`) return all;
    const lib = target[1];
    const mod = target
      .slice(3)
      .join('/')
      .replace(/\.(js|ts|mts)$/, '');
    if (mod !== 'index' && !indexExports.get(lib).has(mod)) {
      problems.push(`${relative(root, file)}: ${spec} (not exported by libs/${lib}/src/index.ts)`);
      return all;
    }
    return `${lead}${q}${SCOPE}${lib}${q}`;
  });
  text = mergeImports(text);
  if (text !== before) {
    changed.push(file);
    if (!check) writeFileSync(file, text);
    written.push(file);
  }
  for (const m of text.matchAll(SPEC)) noteBare(owner, m[3], isTest(file));
  for (const m of text.matchAll(/\brequire\)?\(\s*'([^']+)'\s*\)|createRequire\([^)]*\)\(\s*'([^']+)'\s*\)/g)) noteBare(owner, m[1] ?? m[2], isTest(file));
}

function noteBare(owner, spec, test) {
  if (spec.startsWith('.') || spec.startsWith('/') || builtins.has(spec) || spec.startsWith('node:')) return;
  const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0];
  if (name === `${SCOPE}${owner.split('/')[1]}` && owner.startsWith('libs/')) return;
  use(owner, name, test);
  // The root's build compiles the packages' sources it imports (ingest uses @jetflow/worker's), so what they
  // import of the libs the root's dist needs at run time too.
  if (owner.startsWith('packages/') && name.startsWith(SCOPE)) use('.', name, test);
}

/** `import { a } from 'P'` and `import { type b } from 'P'` (or `import type { b }`) as one statement per @jetflow package. */
function mergeImports(text) {
  const re = /^import (type )?\{([^}]*)\} from '(@jetflow\/[a-z0-9-]+)';\n/gm;
  const groups = new Map();
  for (const m of text.matchAll(re)) {
    const g = groups.get(m[3]) ?? [];
    g.push(m);
    groups.set(m[3], g);
  }
  for (const [spec, ms] of groups) {
    if (ms.length < 2) continue;
    const allTypes = ms.every((m) => m[1]);
    const names = [];
    for (const m of ms)
      for (const raw of m[2].split(',')) {
        const n = raw.trim();
        if (!n) continue;
        const item = m[1] && !allTypes && !n.startsWith('type ') ? `type ${n}` : n;
        if (!names.includes(item)) names.push(item);
      }
    const merged = `import ${allTypes ? 'type ' : ''}{ ${names.join(', ')} } from '${spec}';\n`;
    let first = true;
    text = text.replace(new RegExp(`^import (type )?\\{[^}]*\\} from '${spec.replace('/', '\\/')}';\\n`, 'gm'), () => {
      if (!first) return '';
      first = false;
      return merged;
    });
  }
  return text;
}

// ---- package.json and tsconfig files
const rootPkgFile = join(root, 'package.json');
const rootPkg = JSON.parse(readFileSync(rootPkgFile, 'utf8'));
const pinned = (name) => rootPkg.dependencies?.[name] ?? rootPkg.devDependencies?.[name];
const rootDev = (name) => !rootPkg.dependencies?.[name] && !!rootPkg.devDependencies?.[name];
function writeJson(file, obj) {
  const next = `${JSON.stringify(obj, null, 2)}\n`;
  const prev = existsSync(file) ? readFileSync(file, 'utf8') : '';
  if (JSON.stringify(JSON.parse(prev || 'null')) === JSON.stringify(obj)) return;
  changed.push(file);
  if (!check) writeFileSync(file, next);
  written.push(file);
}
/** A name this script manages: `@jetflow/<lib>` (not `@jetflow/worker`, the package of packages/worker). */
const isLibName = (n) => n.startsWith(SCOPE) && libs.includes(n.slice(SCOPE.length));
const sortObj = (o) => Object.fromEntries(Object.entries(o).sort(([a], [b]) => a.localeCompare(b)));

for (const lib of libs) {
  const dir = join(root, 'libs', lib);
  const pkgFile = join(dir, 'package.json');
  const old = existsSync(pkgFile) ? JSON.parse(readFileSync(pkgFile, 'utf8')) : {};
  const u = uses.get(`libs/${lib}`) ?? { run: new Set(), test: new Set() };
  const deps = {};
  const dev = {};
  for (const name of [...u.run, ...u.test].sort()) {
    const test = !u.run.has(name);
    const version = name.startsWith(SCOPE) ? '*' : pinned(name);
    if (!version) {
      problems.push(`libs/${lib} imports ${name}, which the root package.json does not pin`);
      continue;
    }
    if (name.startsWith(SCOPE) && !libs.includes(name.slice(SCOPE.length))) problems.push(`libs/${lib} imports ${name}, which is no lib`);
    (test || (!name.startsWith(SCOPE) && rootDev(name)) ? dev : deps)[name] = version;
  }
  const pkg = {
    name: `${SCOPE}${lib}`,
    version: rootPkg.version,
    private: true,
    description: old.description,
    type: 'module',
    exports: { '.': { types: './dist/index.d.ts', default: './dist/index.js' } },
    ...(Object.keys(deps).length ? { dependencies: sortObj(deps) } : {}),
    ...(Object.keys(dev).length ? { devDependencies: sortObj(dev) } : {}),
  };
  if (!pkg.description) delete pkg.description;
  writeJson(pkgFile, pkg);
  const refs = Object.keys(deps)
    .filter((n) => n.startsWith(SCOPE))
    .map((n) => ({ path: `../${n.slice(SCOPE.length)}` }));
  writeJson(join(dir, 'tsconfig.json'), {
    extends: '../../tsconfig.base.json',
    // The build info inside dist/: deleting dist/ makes tsc -b build the lib again.
    compilerOptions: { composite: true, rootDir: 'src', outDir: 'dist', tsBuildInfoFile: 'dist/tsconfig.tsbuildinfo' },
    include: ['src/**/*.ts'],
    exclude: ['src/**/*.test.ts'],
    ...(refs.length ? { references: refs } : {}),
  });
}

// The root package (services, scripts, bench, test) and the bundled packages.
{
  const u = uses.get('.') ?? { run: new Set(), test: new Set() };
  const deps = { ...rootPkg.dependencies };
  const dev = { ...rootPkg.devDependencies };
  for (const k of Object.keys(deps)) if (isLibName(k)) delete deps[k];
  for (const k of Object.keys(dev)) if (isLibName(k)) delete dev[k];
  for (const name of [...u.run, ...u.test].filter((n) => n.startsWith(SCOPE) && libs.includes(n.slice(SCOPE.length)))) (u.run.has(name) ? deps : dev)[name] = '*';
  const next = { ...rootPkg, dependencies: sortObj(deps), devDependencies: sortObj(dev) };
  writeJson(rootPkgFile, next);
}
for (const p of readdirSync(join(root, 'packages'))) {
  const file = join(root, 'packages', p, 'package.json');
  if (!existsSync(file)) continue;
  const pkg = JSON.parse(readFileSync(file, 'utf8'));
  const u = uses.get(`packages/${p}`) ?? { run: new Set(), test: new Set() };
  const dev = { ...pkg.devDependencies };
  for (const k of Object.keys(dev)) if (isLibName(k)) delete dev[k];
  // Bundled into the package's dist: needed to build it, not by whoever installs it.
  for (const name of [...u.run, ...u.test].filter((n) => n.startsWith(SCOPE) && libs.includes(n.slice(SCOPE.length)))) dev[name] = '*';
  const next = { ...pkg };
  if (Object.keys(dev).length) next.devDependencies = sortObj(dev);
  else delete next.devDependencies;
  writeJson(file, next);
}

const base = JSON.parse(readFileSync(join(root, 'tsconfig.base.json'), 'utf8'));
// The libs' entries, and whatever else is mapped (packages/worker's entries) as it is.
const otherPaths = Object.entries(base.compilerOptions.paths ?? {}).filter(([k]) => !isLibName(k));
base.compilerOptions.paths = Object.fromEntries([...libs.map((n) => [`${SCOPE}${n}`, [`./libs/${n}/src/index.ts`]]), ...otherPaths]);
writeJson(join(root, 'tsconfig.base.json'), base);
const apps = JSON.parse(readFileSync(join(root, 'tsconfig.json'), 'utf8'));
apps.references = libs.map((n) => ({ path: `libs/${n}` }));
writeJson(join(root, 'tsconfig.json'), apps);

if (!check && written.length) execFileSync(process.execPath, [join(root, 'node_modules/prettier/bin/prettier.cjs'), '--write', '--log-level=warn', ...written], { stdio: 'inherit' });
for (const f of changed) console.log(`${check ? 'would change' : 'changed'} ${relative(root, f)}`);
for (const p of problems) console.error(`cannot rewrite: ${p}`);
process.exit(problems.length || (check && changed.length) ? 1 : 0);
