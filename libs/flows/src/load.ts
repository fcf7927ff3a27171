import { readFileSync } from 'node:fs';
import { ConfigError, optStr, type Env } from '@jetflow/config';
import { BUILTIN_FLOWS, DefinitionError, FlowRegistry, validateDefinitions } from './definitions.js';

/**
 * The flow definitions every service loads at start: the built-ins plus those in JETFLOW_FLOWS_FILE
 * (a JSON array of definitions; a file definition with a built-in's name replaces it). Invalid
 * definitions stop the service with a message that says where.
 */
export function loadFlowRegistry(env: Env): FlowRegistry {
  const file = optStr(env, 'JETFLOW_FLOWS_FILE');
  let extra: unknown[] = [];
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new ConfigError('JETFLOW_FLOWS_FILE', `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    try {
      const parsed = JSON.parse(text) as unknown;
      extra = Array.isArray(parsed) ? parsed : [parsed];
    } catch (err) {
      throw new ConfigError('JETFLOW_FLOWS_FILE', `${file} is not valid JSON: ${(err as Error).message}`);
    }
  }
  const names = new Set(extra.map((d) => (d as { name?: unknown })?.name));
  const all = [...BUILTIN_FLOWS.filter((d) => !names.has(d.name)), ...extra];
  try {
    // Any jetflow.task.<kind>.<name> is allowed: a subject no built-in worker serves is an outside
    // worker's (@jetflow/worker); its tasks wait in the work-queue stream until one pulls them.
    return new FlowRegistry(validateDefinitions(all));
  } catch (err) {
    if (err instanceof DefinitionError) throw new ConfigError('JETFLOW_FLOWS_FILE', err.message);
    throw err;
  }
}
