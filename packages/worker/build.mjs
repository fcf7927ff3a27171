// Bundles the package's entries (index, threads, and the SDK's own thread file) with what it uses from this repository's libs,
// so the tarball needs nothing but its declared dependencies; then emits the type declarations.
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
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
