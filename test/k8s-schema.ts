import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [k: string]: unknown;
}

type ModelClass = { prototype: { validate(this: unknown): void } };

/** The kubernetes-models (or @kubernetes-models/keda) class of an object; undefined for an unknown kind. */
export function modelOf(o: { apiVersion: string; kind: string }): ModelClass | undefined {
  const [group, version] = o.apiVersion.includes('/') ? o.apiVersion.split('/') : ['', o.apiVersion];
  const path = group === 'keda.sh' ? `@kubernetes-models/keda/keda.sh/${version}/${o.kind}` : `kubernetes-models/${group ? `${group}/` : ''}${version}/${o.kind}`;
  try {
    const mod = require(path) as Record<string, ModelClass>;
    return mod[o.kind];
  } catch {
    return undefined;
  }
}

interface Tracked {
  path: string;
  obj: Record<string, unknown>;
  read: Set<string>;
  /** The validator iterated the keys: a map (labels, data, …), any key is allowed. */
  map: boolean;
}

/** A deep copy whose objects record which keys the validator looks at. */
function track(v: unknown, path: string, out: Tracked[]): unknown {
  if (v === null || typeof v !== 'object') return v;
  if (Array.isArray(v))
    return new Proxy(
      v.map((x, i) => track(x, `${path}[${i}]`, out)),
      {},
    );
  const obj = v as Record<string, unknown>;
  const rec: Tracked = { path, obj, read: new Set(), map: false };
  out.push(rec);
  const copy = Object.fromEntries(Object.entries(obj).map(([k, x]) => [k, track(x, path ? `${path}.${k}` : k, out)]));
  return new Proxy(copy, {
    get(t, p, r) {
      if (typeof p === 'string') rec.read.add(p);
      return Reflect.get(t, p, r) as unknown;
    },
    has(t, p) {
      if (typeof p === 'string') rec.read.add(p);
      return Reflect.has(t, p);
    },
    ownKeys(t) {
      rec.map = true;
      return Reflect.ownKeys(t);
    },
  });
}

/**
 * Validates against the model's schema (types, required fields, enums) and refuses unknown fields.
 * The generated validators accept unknown fields, but they read every field they know: a key of an
 * object (not a map) that the validator never read is not in the schema.
 */
export function validateObject(o: K8sObject): string[] {
  const Model = modelOf(o);
  if (!Model) return [`${o.kind} ${o.metadata?.name}: no schema for ${o.apiVersion} ${o.kind}`];
  const seen: Tracked[] = [];
  const proxy = track(o, '', seen);
  const errors: string[] = [];
  try {
    Model.prototype.validate.call(proxy);
  } catch (err) {
    errors.push(`${o.kind} ${o.metadata?.name}: ${(err as Error).message}`);
  }
  for (const t of seen) {
    if (t.map) continue;
    for (const k of Object.keys(t.obj)) if (!t.read.has(k)) errors.push(`${o.kind} ${o.metadata?.name}: unknown field ${t.path ? `${t.path}.` : ''}${k}`);
  }
  return errors;
}

/** The metadata KEDA's nats-jetstream scaler reads (pkg/scalers/nats_jetstream_scaler.go); the rest is ignored by it. */
export const NATS_JETSTREAM_METADATA = {
  required: ['natsServerMonitoringEndpoint', 'account', 'stream', 'consumer', 'lagThreshold'],
  optional: ['activationLagThreshold', 'useHttps', 'accountID'],
};

/** Trigger metadata is a string map in the schema: unknown and missing keys are checked here. */
export function validateNatsTrigger(where: string, md: Record<string, unknown>): string[] {
  const errors: string[] = [];
  const known = new Set([...NATS_JETSTREAM_METADATA.required, ...NATS_JETSTREAM_METADATA.optional]);
  for (const k of NATS_JETSTREAM_METADATA.required) if (typeof md[k] !== 'string' || !md[k]) errors.push(`${where}: nats-jetstream trigger without ${k}`);
  for (const k of Object.keys(md)) if (!known.has(k)) errors.push(`${where}: nats-jetstream trigger has unknown metadata ${k}`);
  for (const k of ['lagThreshold', 'activationLagThreshold'])
    if (md[k] !== undefined && (typeof md[k] !== 'string' || !/^\d+$/.test(md[k]))) errors.push(`${where}: ${k} must be a whole number as a string, got ${JSON.stringify(md[k])}`);
  return errors;
}
