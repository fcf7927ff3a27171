/**
 * The built-in workers (dataset-generator, analyst) are the reference examples of @jetflow/worker: what
 * makes them workers comes from the SDK's public entries only, imported by the package name. (ESLint's
 * no-restricted-imports says the same in an editor; this holds it in the test suite, dynamic imports too.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';

const SERVICES = ['services/analyst/src', 'services/dataset-generator/src'];
// The worker runtime's libs, reached around the SDK; and the SDK's own files instead of its entries.
const RUNTIME_DEEP = /(^|\/)libs\/(messaging|pool|errors|worker-service)(\/|$)|^@jetflow\/(messaging|pool|errors|worker-service)$/;
const SDK_DEEP = /(^|\/)packages\/worker(\/|$)|^@jetflow\/worker\/(?!threads$)/;
const ENTRIES = new Set(['@jetflow/worker', '@jetflow/worker/threads']);

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') && !e.name.endsWith('.test.ts') ? [join(dir, e.name)] : [],
  );
}

interface Import {
  file: string;
  spec: string;
  /** Value names it imports (not `type` ones), for a named import. */
  values: string[];
}

function importsOf(file: string): Import[] {
  const src = readFileSync(file, 'utf8');
  const out: Import[] = [];
  for (const m of src.matchAll(/^\s*(import|export)\s+(type\s+)?([^'";]*?)\s*from\s*['"]([^'"]+)['"]/gm)) {
    const typeOnly = Boolean(m[2]);
    const names = /\{([^}]*)\}/.exec(m[3]!)?.[1] ?? '';
    const values = typeOnly
      ? []
      : names
          .split(',')
          .map((n) => n.trim())
          .filter((n) => n && !n.startsWith('type '))
          .map((n) => n.split(/\s+as\s+/)[0]!.trim());
    out.push({ file, spec: m[4]!, values });
  }
  for (const m of src.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g)) out.push({ file, spec: m[1]!, values: [] });
  return out;
}

const all = SERVICES.flatMap(sources).flatMap(importsOf);

test('the built-in workers reach the worker runtime only through @jetflow/worker (no deep import of libs/messaging, libs/pool, libs/errors, the worker config, or the SDK files)', () => {
  assert.ok(all.length > 40, `read ${all.length} imports`);
  const deep = all.filter((i) => RUNTIME_DEEP.test(i.spec) || SDK_DEEP.test(i.spec)).map((i) => `${relative('.', i.file)}: ${i.spec}`);
  assert.deepEqual(deep, []);
});

test("each built-in worker's process, handlers, pool and pool thread import the SDK by its package name", () => {
  for (const dir of SERVICES)
    for (const f of [
      'main.ts',
      'config.ts',
      'pool.ts',
      'pool-worker.ts',
      ...readdirSync(join(dir, 'handlers'))
        .filter((h) => !h.endsWith('.test.ts'))
        .map((h) => `handlers/${h}`),
    ]) {
      const specs = importsOf(join(dir, f)).map((i) => i.spec);
      assert.ok(
        specs.some((s) => ENTRIES.has(s)),
        `${dir}/${f} imports @jetflow/worker (has: ${specs.join(', ')})`,
      );
    }
});

test('what the built-in workers import from the SDK is exported by its entries: the source under tsx, and the bundle in the package dist when built', async () => {
  const wanted = new Map<string, Set<string>>();
  for (const i of all.filter((x) => ENTRIES.has(x.spec))) for (const v of i.values) (wanted.get(i.spec) ?? wanted.set(i.spec, new Set()).get(i.spec)!).add(v);
  assert.ok((wanted.get('@jetflow/worker')?.size ?? 0) >= 8, 'names imported from @jetflow/worker');
  const pkg = JSON.parse(readFileSync('packages/worker/package.json', 'utf8')) as { exports: Record<string, { import: string; types: string }> };
  for (const [spec, names] of wanted) {
    const sub = spec === '@jetflow/worker' ? '.' : `./${spec.slice('@jetflow/worker/'.length)}`;
    assert.ok(pkg.exports[sub], `packages/worker/package.json exports ${sub}`);
    // Under tsx (tsconfig paths): the package's source entry.
    assert.match(import.meta.resolve(spec), /\/packages\/worker\/src\/[a-z]+\.ts$/, `${spec} resolves to the SDK source under tsx`);
    const src = (await import(spec)) as Record<string, unknown>;
    for (const n of names) assert.ok(n in src, `${spec} (source) exports ${n}`);
    // What dist/services/* run (node_modules/@jetflow/worker links to packages/worker): the bundle.
    const bundle = join('packages/worker', pkg.exports[sub].import);
    if (!existsSync(bundle)) continue; // not built: npm run build makes it
    const built = (await import(pathToFileURL(bundle).href)) as Record<string, unknown>;
    for (const n of names) assert.ok(n in built, `${bundle} exports ${n}`);
  }
});
