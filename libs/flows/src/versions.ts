import { DEFINITION_HASH_RE, FlowDefSchema, LEGACY_FLOWS, canonicalJson, definitionHash, definitionKey, type FlowDef, type FlowRegistry } from './definitions.js';
import { defFits, type FlowState } from './state.js';

/** The definition a flow runs on, or why it cannot be found. */
export type DefinitionLookup = { def: FlowDef } | { problem: string };

/** A definition as the definitions store keeps it: `<name>.v<version>.<hash>` → its canonical JSON. */
export function storedDefinition(def: FlowDef): { key: string; value: string } {
  return { key: definitionKey(def.name, def.version, definitionHash(def)), value: canonicalJson(def) };
}

/**
 * Reads a definition back from the store. The bus is not trusted: the entry must be a valid definition
 * whose hash is the one its key names, so a changed or corrupted entry is refused, never run.
 */
export function decodeStoredDefinition(bytes: Uint8Array, hash: string): DefinitionLookup {
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder().decode(bytes));
  } catch (err) {
    return { problem: `its stored copy is not JSON (${(err as Error).message})` };
  }
  const parsed = FlowDefSchema.safeParse(raw);
  if (!parsed.success) return { problem: `its stored copy is not a flow definition (at ${parsed.error.issues[0]!.path.join('.') || '(root)'}: ${parsed.error.issues[0]!.message})` };
  const got = definitionHash(parsed.data);
  if (got !== hash) return { problem: `its stored copy does not match its hash (${got})` };
  return { def: parsed.data };
}

/**
 * The definition of each flow: the one it started with. Its state names that definition's hash; the
 * definitions loaded now serve flows started on them, and after a change (a new file, a bumped
 * version) older ones are read from the definitions store, where every definition is stored before
 * the first flow starts on it. A state written before versioning (no hash) runs on the loaded
 * definition of its name only if that has exactly its stages and tasks.
 */
export class DefinitionVersions {
  private readonly byHash = new Map<string, FlowDef>();

  constructor(
    private readonly registry: FlowRegistry,
    /** Reads a key of the definitions store (undefined when absent; throws when the broker fails). */
    private readonly read: (key: string) => Promise<Uint8Array | undefined>,
  ) {
    for (const d of registry.defs) this.byHash.set(definitionHash(d), d);
    // Earlier built-in versions (insights v1): their flows finish on them without a store read.
    for (const d of LEGACY_FLOWS) if (!this.byHash.has(definitionHash(d))) this.byHash.set(definitionHash(d), d);
  }

  /** The flow's definition when it is in memory (the hot path: no await). */
  known(s: FlowState): FlowDef | undefined {
    if (s.defHash !== undefined) {
      const hit = this.byHash.get(s.defHash);
      if (hit) return hit;
      // A version registered while running is loaded without a store read (its hash is memoised).
      const d = this.registry.get(s.flow);
      if (d && definitionHash(d) === s.defHash) this.byHash.set(s.defHash, d);
      return d && definitionHash(d) === s.defHash ? d : undefined;
    }
    const d = this.registry.get(s.flow);
    return d && defFits(s, d) ? d : undefined;
  }

  /** The flow's definition, from memory or the store; a problem says why it cannot be had. */
  async lookup(s: FlowState): Promise<DefinitionLookup> {
    const k = this.known(s);
    if (k) return { def: k };
    const what = `flow ${s.flowId} started on definition ${s.flow} v${s.version}`;
    if (s.defHash === undefined) return { problem: `${what} (state without a definition hash); the loaded ${s.flow} has other stages or tasks` };
    if (!DEFINITION_HASH_RE.test(s.defHash) || !/^[a-z][a-z0-9_-]{0,40}$/.test(s.flow) || !Number.isInteger(s.version))
      return { problem: `${what}: the state names no valid definition (${JSON.stringify(s.defHash).slice(0, 40)})` };
    const key = definitionKey(s.flow, s.version, s.defHash);
    const bytes = await this.read(key);
    if (!bytes) return { problem: `${what} (${s.defHash}), which is neither loaded nor in the definitions store` };
    const got = decodeStoredDefinition(bytes, s.defHash);
    if ('problem' in got) return { problem: `${what} (${s.defHash}): ${got.problem}` };
    if (got.def.name !== s.flow || got.def.version !== s.version) return { problem: `${what}: the store holds ${got.def.name} v${got.def.version} under ${key}` };
    this.byHash.set(s.defHash, got.def);
    return got;
  }
}
