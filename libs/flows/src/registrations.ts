import type { KV, KvEntry } from 'nats';
import { z } from 'zod';
import { ConfigError } from '@jetflow/config';
import { isCasConflict } from '@jetflow/messaging';
import { BUILTIN_FLOWS, DEFINITION_HASH_RE, DefinitionError, definitionHash, definitionKey, validateDefinitions, type FlowDef, type FlowRegistry } from './definitions.js';
import { decodeStoredDefinition, storedDefinition } from './versions.js';

/**
 * Versioned definitions registered while running. KV `jetflow_definitions` holds every version as
 * `<name>.v<version>.<hash>` (versions.ts) and, per name, an index `<name>.versions` listing them newest
 * first. The index is written by compare-and-set on its revision, so two registrations of one version
 * cannot both win: the loser re-reads and finds the version taken. The newest version number of a name is
 * the one new submissions use; a flow in flight keeps the version it started with (by its hash).
 */
export type DefinitionSource = 'builtin' | 'file' | 'api';

export interface StoredVersion {
  version: number;
  hash: string;
  /** ISO time the version entered the index. */
  storedAt: string;
  source: DefinitionSource;
}

/** A name's versions, newest first. */
export interface DefinitionIndex {
  name: string;
  versions: StoredVersion[];
}

const FLOW_NAME = /^[a-z][a-z0-9_-]{0,40}$/;
export const isFlowName = (s: string) => FLOW_NAME.test(s);
export const indexKey = (name: string) => `${name}.versions`;
export const INDEX_KEYS = '*.versions';

const IndexSchema = z.object({
  name: z.string().regex(FLOW_NAME),
  versions: z
    .array(
      z.object({
        version: z.number().int().min(1),
        hash: z.string().regex(DEFINITION_HASH_RE),
        storedAt: z.string().max(40),
        source: z.enum(['builtin', 'file', 'api']),
      }),
    )
    .max(100_000),
});

/** An index read off the bus (not trusted): a valid index of this name, newest first, or why not. */
export function decodeIndex(bytes: Uint8Array, name: string): DefinitionIndex | { problem: string } {
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder().decode(bytes));
  } catch (err) {
    return { problem: `the index of ${name} is not JSON (${(err as Error).message})` };
  }
  const p = IndexSchema.safeParse(raw);
  if (!p.success) return { problem: `the index of ${name} is malformed (at ${p.error.issues[0]!.path.join('.') || '(root)'}: ${p.error.issues[0]!.message})` };
  if (p.data.name !== name) return { problem: `the index under ${indexKey(name)} names ${p.data.name}` };
  return { name, versions: [...p.data.versions].sort((a, b) => b.version - a.version) };
}

export type RegistrationPlan =
  | { outcome: 'created'; entry: StoredVersion; index: DefinitionIndex }
  | { outcome: 'unchanged'; entry: StoredVersion }
  | { outcome: 'conflict'; message: string; stored?: StoredVersion; newest?: StoredVersion };

/**
 * What registering `def` does to a name's index (pure). Same version and content: unchanged. Same version,
 * other content: a conflict. Through the API a new version must be newer than every stored one; from the
 * built-ins and JETFLOW_FLOWS_FILE (seeding at start) any version not yet stored is added, since the store
 * keeps every version and the newest number wins either way.
 */
export function planRegistration(index: DefinitionIndex | undefined, def: FlowDef, source: DefinitionSource, now: Date): RegistrationPlan {
  const hash = definitionHash(def);
  const versions = index?.versions ?? [];
  const same = versions.find((v) => v.version === def.version);
  const newest = versions[0];
  if (same) {
    if (same.hash === hash) return { outcome: 'unchanged', entry: same };
    return {
      outcome: 'conflict',
      stored: same,
      ...(newest ? { newest } : {}),
      message: `${def.name} v${def.version} is stored already with other content (stored hash ${same.hash}, this one ${hash}); a changed definition needs a new version (newest is v${newest!.version}, so v${newest!.version + 1})`,
    };
  }
  if (source === 'api' && newest && def.version < newest.version)
    return {
      outcome: 'conflict',
      newest,
      message: `${def.name} v${def.version} is older than the newest stored version v${newest.version}; a new version must be newer (v${newest.version + 1})`,
    };
  const entry: StoredVersion = { version: def.version, hash, storedAt: now.toISOString(), source };
  return { outcome: 'created', entry, index: { name: def.name, versions: [...versions, entry].sort((a, b) => b.version - a.version) } };
}

const enc = new TextEncoder();
const dec = new TextDecoder();

export class DefinitionStoreError extends Error {}

/** The definitions bucket: register versions, read them, list them. */
export class DefinitionStore {
  constructor(readonly kv: Pick<KV, 'get' | 'put' | 'create' | 'update' | 'keys' | 'watch'>) {}

  /** A name's index; undefined when the name was never stored; throws when the stored index is corrupt. */
  async index(name: string): Promise<DefinitionIndex | undefined> {
    return (await this.readIndex(name)).index;
  }

  private async readIndex(name: string): Promise<{ index?: DefinitionIndex; revision?: number }> {
    const e = await this.kv.get(indexKey(name));
    if (!e || e.operation !== 'PUT' || !e.value.length) return e ? { revision: e.revision } : {};
    const got = decodeIndex(e.value, name);
    if ('problem' in got) throw new DefinitionStoreError(got.problem);
    return { index: got, revision: e.revision };
  }

  /** Registers a definition (already validated): the plan that won, after a compare-and-set of the index. */
  async register(def: FlowDef, source: DefinitionSource): Promise<RegistrationPlan> {
    for (let attempt = 0; ; attempt++) {
      const { index, revision } = await this.readIndex(def.name);
      const plan = planRegistration(index, def, source, new Date());
      if (plan.outcome !== 'created') return plan;
      // The version's entry first, so an index never names a missing entry (a loser's entry is never indexed).
      const { key, value } = storedDefinition(def);
      const e = await this.kv.get(key);
      if (!e || e.operation !== 'PUT' || dec.decode(e.value) !== value) await this.kv.put(key, enc.encode(value));
      const bytes = enc.encode(JSON.stringify(plan.index));
      try {
        if (revision === undefined) await this.kv.create(indexKey(def.name), bytes);
        else await this.kv.update(indexKey(def.name), bytes, revision);
        return plan;
      } catch (err) {
        if (!isCasConflict(err) || attempt >= 20) throw err;
      }
    }
  }

  /** One stored version with its definition (hash-verified); undefined when absent. */
  async version(name: string, version: number): Promise<{ entry: StoredVersion; def: FlowDef } | undefined> {
    const index = await this.index(name);
    const entry = index?.versions.find((v) => v.version === version);
    if (!entry) return undefined;
    const e = await this.kv.get(definitionKey(name, version, entry.hash));
    if (!e || e.operation !== 'PUT' || !e.value.length) throw new DefinitionStoreError(`${definitionKey(name, version, entry.hash)} is indexed but not stored`);
    const got = decodeStoredDefinition(e.value, entry.hash);
    if ('problem' in got) throw new DefinitionStoreError(`${name} v${version}: ${got.problem}`);
    return { entry, def: got.def };
  }

  /** Every name's index, by name. */
  async list(): Promise<DefinitionIndex[]> {
    const names: string[] = [];
    for await (const k of await this.kv.keys(INDEX_KEYS)) {
      const name = k.slice(0, -'.versions'.length);
      if (isFlowName(name)) names.push(name);
    }
    const out: DefinitionIndex[] = [];
    for (const name of names.sort()) {
      const i = await this.index(name).catch(() => undefined);
      if (i) out.push(i);
    }
    return out;
  }
}

/** The loaded definitions' sources: a definition equal to a built-in is `builtin`, the rest came from the file. */
export function sourcesOf(registry: FlowRegistry, builtins: readonly FlowDef[]): Map<string, DefinitionSource> {
  const builtin = new Set(builtins.map(definitionHash));
  return new Map(registry.defs.map((d) => [d.name, builtin.has(definitionHash(d)) ? 'builtin' : 'file']));
}

/**
 * Seeds the store at start with the built-ins and JETFLOW_FLOWS_FILE: each version not stored yet is added;
 * one stored already with other content is an error naming it (the service stops: bump the version).
 */
export async function seedDefinitions(store: DefinitionStore, registry: FlowRegistry, sources: Map<string, DefinitionSource>): Promise<void> {
  for (const def of registry.defs) {
    const plan = await store.register(def, sources.get(def.name) ?? 'file');
    if (plan.outcome === 'conflict')
      throw new DefinitionError(`${def.name} v${def.version}`, `${plan.message} (the definitions store keeps every version; edit the file's entry or bump its version)`);
  }
}

export interface LiveDefinitionsOptions {
  log?: { info(o: object, msg: string): void; warn(o: object, msg: string): void };
  /** Called after a newer version became the one new submissions use. */
  onChange?: (def: FlowDef, previous: FlowDef | undefined) => void;
}

/**
 * Follows the store (a KV watch of the indexes) and keeps `registry` on the newest version of each name:
 * a registration takes effect within a moment on every replica, and after a restart. A name is followed
 * when this process loaded it (built-in, file) or the API registered a version of it; a name only a file
 * once seeded and that is gone from the file stays gone. Entries are checked like the file (schema,
 * limits, hash), so a corrupt or hostile entry is logged and never used.
 */
export class LiveDefinitions {
  private watcher: { stop(): void } | undefined;
  private chain: Promise<void> = Promise.resolve();

  constructor(
    private readonly registry: FlowRegistry,
    private readonly store: DefinitionStore,
    private readonly o: LiveDefinitionsOptions = {},
  ) {}

  /** Starts the watch; resolves once every stored index has been applied. */
  async start(): Promise<void> {
    let ready!: () => void;
    const initialized = new Promise<void>((r) => (ready = r));
    const w = await this.store.kv.watch({ key: INDEX_KEYS, initializedFn: () => ready() });
    this.watcher = w;
    void (async () => {
      for await (const e of w) this.enqueue(e);
    })().catch((err: Error) => this.o.log?.warn({ err: err.message }, 'definitions watch ended'));
    await initialized;
    await this.chain;
  }

  stop(): void {
    this.watcher?.stop();
  }

  private enqueue(e: KvEntry) {
    if (e.operation !== 'PUT' || !e.key.endsWith('.versions')) return;
    const name = e.key.slice(0, -'.versions'.length);
    if (!isFlowName(name)) return;
    const got = decodeIndex(e.value, name);
    if ('problem' in got) {
      this.o.log?.warn({ key: e.key, reason: got.problem }, 'definitions index ignored');
      return;
    }
    this.chain = this.chain.then(() => this.adopt(got)).catch((err: Error) => this.o.log?.warn({ flow: name, err: err.message }, 'cannot adopt a stored definition'));
  }

  /** Reads a name's index now (a submission for a name the watch has not brought yet): the definition to use, if any. */
  async refresh(name: string): Promise<FlowDef | undefined> {
    if (!isFlowName(name)) return undefined;
    const index = await this.store.index(name).catch(() => undefined);
    if (index) await (this.chain = this.chain.then(() => this.adopt(index)).catch(() => undefined));
    return this.registry.get(name);
  }

  private async adopt(index: DefinitionIndex): Promise<void> {
    const newest = index.versions[0];
    if (!newest) return;
    const cur = this.registry.get(index.name);
    if (!cur && !index.versions.some((v) => v.source === 'api')) return;
    if (cur && (cur.version > newest.version || (cur.version === newest.version && definitionHash(cur) === newest.hash))) return;
    const e = await this.store.kv.get(definitionKey(index.name, newest.version, newest.hash));
    if (!e || e.operation !== 'PUT' || !e.value.length) throw new Error(`${definitionKey(index.name, newest.version, newest.hash)} is indexed but not stored`);
    const got = decodeStoredDefinition(e.value, newest.hash);
    if ('problem' in got) throw new Error(`${index.name} v${newest.version}: ${got.problem}`);
    if (got.def.name !== index.name || got.def.version !== newest.version) throw new Error(`${index.name} v${newest.version}: the entry holds ${got.def.name} v${got.def.version}`);
    const [def] = validateDefinitions([got.def]);
    this.registry.use(def!);
    this.o.log?.info({ flow: def!.name, version: def!.version, hash: newest.hash, source: newest.source }, 'flow definition version in use');
    this.o.onChange?.(def!, cur);
  }
}

/**
 * A service's definitions at start: seeds the store with the built-ins and JETFLOW_FLOWS_FILE (a version
 * stored already with other content stops the service, naming it), then follows the store so `registry`
 * holds the newest version of each name from now on.
 */
export async function followDefinitions(kv: DefinitionStore['kv'], registry: FlowRegistry, o: LiveDefinitionsOptions = {}): Promise<{ store: DefinitionStore; live: LiveDefinitions }> {
  const store = new DefinitionStore(kv);
  try {
    await seedDefinitions(store, registry, sourcesOf(registry, BUILTIN_FLOWS));
  } catch (err) {
    if (err instanceof DefinitionError) throw new ConfigError('JETFLOW_FLOWS_FILE', err.message);
    throw err;
  }
  const live = new LiveDefinitions(registry, store, o);
  await live.start();
  return { store, live };
}
