// Bundles the package's entries (index, threads, and the SDK's own thread file) with what it uses from this repository's libs,
// so the tarball needs nothing but its declared dependencies; then emits the type declarations.
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
rmSync(join(here, 'dist'), { recursive: true, force: true });
await build({
  entryPoints: { index: join(here, 'src/index.ts'), thread: join(here, 'src/thread.ts'), threads: join(here, 'src/threads.ts') },
  // Shared code in chunks; the OpenTelemetry SDK's chunk loads only when a worker service turns tracing on.
  splitting: true,
  outdir: join(here, 'dist'),
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  sourcemap: true,
  external: [
    'nats',
    'nats/*',
    '@bufbuild/protobuf',
    '@bufbuild/protobuf/*',
    'pino',
    'piscina',
    'prom-client',
    '@opentelemetry/api',
    // Only runWorkerService with OTEL tracing on imports these (the built-in services have them).
    '@opentelemetry/sdk-node',
    '@opentelemetry/resources',
    '@opentelemetry/semantic-conventions',
  ],
  logLevel: 'warning',
});
execFileSync(process.execPath, [join(here, '../../node_modules/typescript/bin/tsc'), '-p', join(here, 'tsconfig.json')], { stdio: 'inherit' });
// The libs' declarations ship next to the package's own (dist/types/libs/<name>/src): the workspace
// names `@jetflow/<name>` they import each other by become relative paths an installed copy resolves.
const types = join(here, 'dist', 'types');
for (const entry of readdirSync(types, { recursive: true, withFileTypes: true })) {
  if (!entry.isFile() || !entry.name.endsWith('.d.ts')) continue;
  const dir = entry.parentPath ?? entry.path;
  const file = join(dir, entry.name);
  const text = readFileSync(file, 'utf8');
  const next = text.replace(/(from\s*|import\(\s*)(['"])@jetflow\/([a-z0-9-]+)\2/g, (_, lead, q, lib) => {
    const rel = relative(dir, join(types, 'libs', lib, 'src', 'index.js'));
    return `${lead}${q}${rel.startsWith('.') ? rel : `./${rel}`}${q}`;
  });
  if (next !== text) writeFileSync(file, next);
}
