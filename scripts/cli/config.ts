import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** What `jetflow start` writes at the repository root for the CLI to find. */
export interface LocalStackFile {
  apiKey?: string;
  url?: string;
  grpc?: string;
  callbackSecret?: string;
}

export interface CliSettings {
  url: string;
  apiKey: string | undefined;
  /** Where the key came from, for error messages. */
  keySource: string;
}

export const DEFAULT_URL = 'http://127.0.0.1:8080';

/** .jetflow/local.json above the working directory, else at the repository the CLI lives in. */
export function findLocalStackFile(cwd = process.cwd()): string | undefined {
  const starts = [resolve(cwd), dirname(fileURLToPath(import.meta.url))];
  for (const start of starts) {
    let dir = start;
    for (let i = 0; i < 8; i++) {
      const p = join(dir, '.jetflow', 'local.json');
      if (existsSync(p)) return p;
      const up = dirname(dir);
      if (up === dir) break;
      dir = up;
    }
  }
  return undefined;
}

function readLocal(path: string | undefined): LocalStackFile {
  if (!path) return {};
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as LocalStackFile;
  } catch (err) {
    throw new Error(`${path} is not valid JSON (${(err as Error).message}); delete it or run jetflow start again`);
  }
}

/** The version in the package.json of the repository (or image) the CLI runs from. */
export function cliVersion(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'jetflow' && pkg.version) return pkg.version;
    } catch {
      // not here: look further up
    }
    dir = dirname(dir);
  }
  return 'unknown';
}

/** --url / --api-key, else JETFLOW_URL / JETFLOW_API_KEY, else the local stack's file, else defaults. */
export function resolveSettings(opts: { url?: string; apiKey?: string }, env: NodeJS.ProcessEnv = process.env): CliSettings {
  const needLocal = !(opts.apiKey || env.JETFLOW_API_KEY) || !(opts.url || env.JETFLOW_URL);
  // JETFLOW_LOCAL_STACK_FILE points at another stack's file (several stacks, or tests).
  const explicit = env.JETFLOW_LOCAL_STACK_FILE;
  if (explicit && !existsSync(explicit)) throw new Error(`JETFLOW_LOCAL_STACK_FILE: ${explicit} does not exist`);
  const localPath = needLocal ? (explicit ?? findLocalStackFile()) : undefined;
  const local = readLocal(localPath);
  const url = (opts.url || env.JETFLOW_URL || local.url || DEFAULT_URL).replace(/\/+$/, '');
  if (!/^https?:\/\/[^\s/]+/.test(url)) throw new Error(`--url: expected an http(s) URL such as ${DEFAULT_URL}, got "${url}"`);
  if (opts.apiKey) return { url, apiKey: opts.apiKey, keySource: '--api-key' };
  if (env.JETFLOW_API_KEY) return { url, apiKey: env.JETFLOW_API_KEY, keySource: 'JETFLOW_API_KEY' };
  if (local.apiKey) return { url, apiKey: local.apiKey, keySource: localPath! };
  return { url, apiKey: undefined, keySource: 'none' };
}
