import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { ApiError, type Api } from './api.js';
import { EXIT, UsageError, exitCodeOfError } from './exit.js';
import { ago, c, table } from './format.js';

interface Version {
  version: number;
  hash: string;
  storedAt: string;
  source: string;
}

export interface FlowsCommandDeps {
  api: () => Api;
  json: () => boolean;
  print: (s: string) => void;
}

/** Definitions in a file: one definition (an object) or an array of them, each with a name. */
export function definitionsInFile(file: string): Array<Record<string, unknown>> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`${file} is not valid JSON: ${(err as Error).message}`);
  }
  const defs = Array.isArray(parsed) ? parsed : [parsed];
  if (!defs.length) throw new UsageError(`${file} holds no definition`);
  defs.forEach((d, i) => {
    if (!d || typeof d !== 'object' || Array.isArray(d)) throw new UsageError(`${file}: entry #${i} is not a flow definition (a JSON object)`);
    const name = (d as { name?: unknown }).name;
    if (typeof name !== 'string' || !name) throw new UsageError(`${file}: entry #${i} has no "name"`);
  });
  return defs as Array<Record<string, unknown>>;
}

/** `jetflow flows apply|list|get`: versioned flow definitions (PUT/GET /v1/flow-definitions). */
export function registerFlowsCommands(program: Command, d: FlowsCommandDeps): void {
  const flows = program.command('flows').description('flow definitions: register new versions while running, list them, read one');

  flows
    .command('apply')
    .description('register the definitions in a file (one definition or an array): created, unchanged or refused; exit code 1 if any is refused')
    .argument('<file>', 'a JSON file: a flow definition (as in JETFLOW_FLOWS_FILE) or an array of them')
    .action(async (file: string) => {
      const defs = definitionsInFile(file);
      const api = d.api();
      const out: Array<{ name: string; version: unknown; outcome: string; hash?: string; error?: { code: string; message: string; details: Array<{ path: string; message: string }> } }> = [];
      let worst: number = EXIT.ok;
      for (const def of defs) {
        const name = def.name as string;
        try {
          const r = await api.json<{ version: number; hash: string; outcome: 'created' | 'unchanged' }>('PUT', `/v1/flow-definitions/${encodeURIComponent(name)}`, def);
          out.push({ name, version: r.version, outcome: r.outcome, hash: r.hash });
        } catch (err) {
          if (!(err instanceof ApiError) || err.status === 0 || err.status === 401 || err.status === 403) throw err;
          out.push({ name, version: def.version, outcome: 'refused', error: { code: err.code, message: err.message, details: err.details } });
          const code = exitCodeOfError(err);
          if (worst === EXIT.ok || code > worst) worst = code;
        }
      }
      if (d.json()) d.print(JSON.stringify(out, null, 2));
      else
        for (const r of out) {
          const what = `${r.name} v${String(r.version)}`;
          if (r.outcome === 'created') d.print(`${c.green('created')}   ${what} (${r.hash})`);
          else if (r.outcome === 'unchanged') d.print(`${c.dim('unchanged')} ${what} (${r.hash})`);
          else {
            d.print(`${c.red('refused')}   ${what}: ${r.error!.code}: ${r.error!.message}`);
            for (const x of r.error!.details) if (x.message !== r.error!.message) d.print(`  ${x.path}: ${x.message}`);
          }
        }
      process.exitCode = worst;
    });

  flows
    .command('list')
    .description('every flow definition with its versions, newest first (source: builtin, file or api)')
    .action(async () => {
      const r = await d.api().json<{ flows: Array<{ name: string; newest: number; versions: Version[] }> }>('GET', '/v1/flow-definitions');
      if (d.json()) return d.print(JSON.stringify(r, null, 2));
      d.print(
        table(
          ['NAME', 'NEWEST', 'HASH', 'SOURCE', 'STORED', 'VERSIONS'],
          r.flows.map((x) => {
            const n = x.versions[0]!;
            return [x.name, `v${n.version}`, n.hash, n.source, ago(n.storedAt), x.versions.map((v) => `v${v.version}`).join(' ')];
          }),
        ),
      );
    });

  flows
    .command('get')
    .description("print a flow definition as JSON: the newest version, or --version N (the newest's answer lists every version)")
    .argument('<name>')
    .option('--version <n>', 'a stored version')
    .action(async (name: string, o: { version?: string }) => {
      if (o.version !== undefined && !/^[1-9][0-9]*$/.test(o.version)) throw new UsageError(`--version: expected a positive integer, got "${o.version}"`);
      const path = `/v1/flow-definitions/${encodeURIComponent(name)}${o.version ? `/versions/${o.version}` : ''}`;
      const r = await d.api().json<{ definition: unknown }>('GET', path);
      d.print(JSON.stringify(d.json() ? r : r.definition, null, 2));
    });
}
