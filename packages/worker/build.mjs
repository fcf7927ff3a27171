// Bundles the package's entry (and the thread-side file) with what it uses from this repository's libs,
// so the tarball needs nothing but its declared dependencies; then emits the type declarations.
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
rmSync(join(here, 'dist'), { recursive: true, force: true });
// The OpenTelemetry SDK is loaded only by a service's startTelemetry(), which the package never calls.
const noSdk = {
  name: 'no-otel-sdk',
  setup(b) {
    b.onResolve({ filter: /\/sdk\.js$/ }, (a) => (a.importer.includes('/libs/telemetry/') ? { path: 'otel-sdk', namespace: 'stub' } : undefined));
    b.onLoad({ filter: /.*/, namespace: 'stub' }, () => ({
      contents: "export function startSdk() { throw new Error('@jetflow/worker does not start an OpenTelemetry SDK; start your own'); }",
      loader: 'js',
    }));
  },
};
await build({
  entryPoints: { index: join(here, 'src/index.ts'), thread: join(here, 'src/thread.ts') },
  outdir: join(here, 'dist'),
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  sourcemap: true,
  external: ['nats', 'nats/*', '@bufbuild/protobuf', '@bufbuild/protobuf/*', 'pino', 'piscina', '@opentelemetry/api'],
  plugins: [noSdk],
  logLevel: 'warning',
});
execFileSync(process.execPath, [join(here, '../../node_modules/typescript/bin/tsc'), '-p', join(here, 'tsconfig.json')], { stdio: 'inherit' });
