import { hostname } from 'node:os';
import type { KV, NatsConnection } from 'nats';
import type { Logger } from '@jetflow/logging';
import { BUCKETS, WORKER_REGISTRY_TTL_MS } from './topology.js';
import { openKv } from './kv-view.js';

/**
 * The worker registry: every task worker (the built-in services, @jetflow/worker, the gRPC door on its
 * workers' behalf) announces itself in KV `jetflow_workers` under `<name>.<instance>` and renews the entry
 * every `intervalMs`; it deletes it on stop. Readers judge liveness from `heartbeatAt`: an entry not renewed
 * within STALE_AFTER_INTERVALS of its own interval is stale, and the bucket's max age removes it.
 */
export const WORKER_REGISTRY = {
  /** Default re-announce interval (JETFLOW_WORKER_ANNOUNCE_MS, the SDK's announceIntervalMs). */
  defaultIntervalMs: 3_000,
  minIntervalMs: 100,
  /** At most a third of the bucket's max age, so a live worker's entry never expires between renewals. */
  maxIntervalMs: 10_000,
  /** Intervals without a renewal after which a reader calls an entry stale. */
  staleAfterIntervals: 3,
  /** The bucket's max age: an entry not renewed for this long is removed (a worker killed without stopping). */
  ttlMs: WORKER_REGISTRY_TTL_MS,
} as const;

/** What one worker instance announces (the JSON value of its key). */
export interface WorkerAnnouncement {
  /** Instance id (unique per process). */
  id: string;
  /** The worker's name: `dataset-generator`, `analyst`, or the `<name>` of its `worker:<name>` identity. */
  name: string;
  /** What runs it: a built-in service's name, `sdk` (@jetflow/worker), or another door (e.g. `grpc`). */
  service: string;
  version: string;
  host: string;
  pid: number;
  /** Task subjects it pulls. */
  subjects: string[];
  /** Slots: tasks it runs at once across its subjects. */
  concurrency: number;
  /** Slots in use when it announced. */
  busy: number;
  startedAt: string;
  heartbeatAt: string;
  /** Its re-announce interval: liveness is judged against it. */
  intervalMs: number;
}

export type WorkerLiveness = 'live' | 'stale';
export type WorkerInstance = WorkerAnnouncement & { status: WorkerLiveness };

const NAME = /^[a-z0-9_-]{1,63}$/;
const TASK_SUBJECT = /^jetflow\.task\.[a-z0-9_-]+\.[a-z0-9_-]+$/;
const MAX_SUBJECTS = 1_000;

/** An instance id as one KV key token: anything but letters, digits, - and _ becomes _. */
export const instanceToken = (id: string) => id.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 200) || '_';

/** The registry key of an instance: `<name>.<instance>`; a worker identity may write only `<its name>.>`. */
export function workerKey(name: string, id: string): string {
  if (!NAME.test(name)) throw new TypeError(`worker name "${name}" must be lowercase letters, digits, - and _ (at most 63)`);
  return `${name}.${instanceToken(id)}`;
}

/** A worker's name from its NATS user (`worker-<name>`, as libs/security names them), if it is one. */
export function workerNameOfUser(user: string | undefined): string | undefined {
  const m = /^worker-([a-z0-9_-]{1,63})$/.exec(user ?? '');
  return m?.[1];
}

/** Checks a re-announce interval (ms), naming `field` when it is out of range. */
export function checkAnnounceInterval(field: string, v: number): number {
  const { minIntervalMs: min, maxIntervalMs: max } = WORKER_REGISTRY;
  if (!Number.isInteger(v) || v < min || v > max) throw new TypeError(`${field} must be an integer from ${min} to ${max} (ms), got ${String(v)}`);
  return v;
}

const dec = new TextDecoder();

/**
 * Reads an entry off the bus, which anyone with write access could have filled: a value that is not a
 * well-formed announcement, or whose name is not its key's first token, is refused with the reason.
 */
export function parseAnnouncement(key: string, data: Uint8Array): { ok: true; value: WorkerAnnouncement } | { ok: false; error: string } {
  let v: unknown;
  try {
    v = JSON.parse(dec.decode(data));
  } catch {
    return { ok: false, error: 'not JSON' };
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) return { ok: false, error: 'not a JSON object' };
  const o = v as Record<string, unknown>;
  const str = (f: string, max = 256) => (typeof o[f] === 'string' && o[f].length <= max ? o[f] : undefined);
  const int = (f: string, min: number, max: number) => (Number.isInteger(o[f]) && (o[f] as number) >= min && (o[f] as number) <= max ? (o[f] as number) : undefined);
  const time = (f: string) => {
    const s = str(f, 40);
    return s !== undefined && Number.isFinite(Date.parse(s)) ? s : undefined;
  };
  const name = str('name', 63);
  if (!name || !NAME.test(name)) return { ok: false, error: 'name: expected lowercase letters, digits, - and _' };
  const dot = key.indexOf('.');
  if (dot < 0 || key.slice(0, dot) !== name) return { ok: false, error: `name "${name}" is not the key's first token (${key})` };
  const id = str('id');
  if (!id || key.slice(dot + 1) !== instanceToken(id)) return { ok: false, error: `id: expected the instance of key ${key}` };
  if (!Array.isArray(o.subjects) || o.subjects.length > MAX_SUBJECTS || !o.subjects.every((s) => typeof s === 'string' && TASK_SUBJECT.test(s)))
    return { ok: false, error: 'subjects: expected task subjects (jetflow.task.<kind>.<name>)' };
  const fields = {
    service: str('service', 63),
    version: str('version', 63),
    host: str('host'),
    pid: int('pid', 0, 2 ** 31),
    concurrency: int('concurrency', 0, 1_000_000),
    busy: int('busy', 0, 1_000_000),
    startedAt: time('startedAt'),
    heartbeatAt: time('heartbeatAt'),
    intervalMs: int('intervalMs', 1, 3_600_000),
  };
  for (const [f, x] of Object.entries(fields)) if (x === undefined) return { ok: false, error: `${f}: missing or malformed` };
  return { ok: true, value: { id, name, subjects: [...new Set(o.subjects as string[])].sort(), ...(fields as Required<{ [K in keyof typeof fields]: NonNullable<(typeof fields)[K]> }>) } };
}

/**
 * Live while renewed within STALE_AFTER_INTERVALS of its interval; stale after. The renewal's time is its
 * heartbeatAt, or `storedAt` when the reader knows when the server stored it (a KV entry's own timestamp):
 * then a worker whose clock is off, or a value claiming a heartbeat in the future, is judged by the server's clock.
 */
export function livenessOf(a: Pick<WorkerAnnouncement, 'heartbeatAt' | 'intervalMs'>, now: number, storedAt?: number): WorkerLiveness {
  return now - (storedAt ?? Date.parse(a.heartbeatAt)) > WORKER_REGISTRY.staleAfterIntervals * a.intervalMs ? 'stale' : 'live';
}

/** Gone from the bucket by now (its max age passed since the last renewal): a reader's copy drops it too. */
export const isExpired = (a: Pick<WorkerAnnouncement, 'heartbeatAt'>, now: number, storedAt?: number) => now - (storedAt ?? Date.parse(a.heartbeatAt)) > WORKER_REGISTRY.ttlMs;

export interface SubjectSummary {
  subject: string;
  /** Live instances serving it. */
  instances: number;
  /** Their slots (a worker's slots are shared by all its subjects, so a subject may get fewer). */
  slots: number;
  busy: number;
  /** Tasks waiting in its consumer (num_pending), null when unknown. */
  pending: number | null;
}

/**
 * Per subject: the live instances serving it, their slots and busy slots, and what waits. `subjects` adds
 * subjects nobody announces (a definition's, a task consumer's), so a subject without a worker shows 0.
 */
export function summarizeSubjects(instances: readonly WorkerInstance[], pending: ReadonlyMap<string, number>, subjects: Iterable<string> = []): SubjectSummary[] {
  const by = new Map<string, SubjectSummary>();
  const row = (subject: string) => {
    let r = by.get(subject);
    if (!r) by.set(subject, (r = { subject, instances: 0, slots: 0, busy: 0, pending: pending.get(subject) ?? null }));
    return r;
  };
  for (const s of subjects) row(s);
  for (const s of pending.keys()) row(s);
  for (const w of instances) {
    for (const s of w.subjects) {
      const r = row(s);
      if (w.status !== 'live') continue;
      r.instances++;
      r.slots += w.concurrency;
      r.busy += w.busy;
    }
  }
  return [...by.values()].sort((a, b) => a.subject.localeCompare(b.subject));
}

export interface AnnounceOptions {
  nc: NatsConnection;
  /** The worker's name: its key prefix (a worker identity may write only `<name>.>`). */
  name: string;
  /** Instance id, unique per process. */
  id: string;
  service: string;
  version: string;
  subjects: readonly string[];
  concurrency: number;
  /** Slots in use now (read at every announcement). */
  busy: () => number;
  intervalMs?: number;
  log: Pick<Logger, 'warn' | 'debug'>;
  /** Host and pid to announce (default: this process's); a door announcing another process's worker gives its own. */
  host?: string;
  pid?: number;
}

export interface Announcer {
  readonly key: string;
  /** Announces now (e.g. after the subjects changed), besides the interval. */
  refresh(): Promise<void>;
  /** Stops renewing and deletes the entry. */
  stop(): Promise<void>;
}

/**
 * Announces a worker in the registry now and every intervalMs until stop(). Failures (no bucket yet: the
 * services provision it; a connection down) are logged once and retried at the next interval; they never
 * stop the worker. Exported for doors that announce workers connected through them.
 */
export function announceWorker(o: AnnounceOptions): Announcer {
  const key = workerKey(o.name, o.id);
  const intervalMs = checkAnnounceInterval('intervalMs', o.intervalMs ?? WORKER_REGISTRY.defaultIntervalMs);
  const startedAt = new Date().toISOString();
  const base = {
    id: o.id,
    name: o.name,
    service: o.service,
    version: o.version,
    host: o.host ?? hostname(),
    pid: o.pid ?? process.pid,
    subjects: [...new Set(o.subjects)].sort(),
    concurrency: o.concurrency,
    startedAt,
    intervalMs,
  };
  let kv: KV | undefined;
  let stopped = false;
  let warned = false;
  let current: Promise<void> = Promise.resolve();
  const put = async () => {
    try {
      kv ??= await openKv(o.nc, BUCKETS.workers);
      const value: WorkerAnnouncement = { ...base, busy: Math.max(0, o.busy()), heartbeatAt: new Date().toISOString() };
      await kv.put(key, JSON.stringify(value));
      if (warned) o.log.debug({ key }, 'worker announced again');
      warned = false;
    } catch (err) {
      if (!warned) o.log.warn({ key, bucket: BUCKETS.workers, err: (err as Error).message }, 'cannot announce the worker in the registry; retrying every interval');
      warned = true;
    }
  };
  const announce = () => (current = current.then(() => (stopped ? undefined : put())));
  void announce();
  const timer = setInterval(() => void announce(), intervalMs);
  timer.unref();
  return {
    key,
    refresh: () => announce(),
    async stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      await current;
      try {
        kv ??= await openKv(o.nc, BUCKETS.workers);
        await kv.delete(key);
      } catch (err) {
        o.log.warn({ key, err: (err as Error).message }, 'cannot remove the worker from the registry; its entry turns stale and expires');
      }
    },
  };
}

/**
 * A reader's live copy of the registry (a KV watch). `instances()` drops entries the bucket has expired
 * by now (a watch is not told of expiry); `liveSubjects()` is undefined until the first read completed.
 */
export interface WorkerRegistryView {
  instances(now?: number): WorkerInstance[];
  liveSubjects(now?: number): ReadonlySet<string> | undefined;
  /** Whether the view has read the bucket once (and so can say a subject has no worker). */
  readonly ready: boolean;
  stop(): void;
}

export async function watchWorkerRegistry(nc: NatsConnection, log: Pick<Logger, 'warn' | 'debug'>, o: { readyTimeoutMs?: number } = {}): Promise<WorkerRegistryView> {
  /** Each entry with the time the server stored it. */
  const entries = new Map<string, { a: WorkerAnnouncement; storedAt: number }>();
  let stopped = false;
  let ready = false;
  let w: { stop(): void } | undefined;
  let markReady: () => void = () => undefined;
  const initial = new Promise<void>((r) => (markReady = r));
  const run = async () => {
    let kv: KV | undefined;
    while (!stopped) {
      try {
        kv ??= await openKv(nc, BUCKETS.workers);
        const iter = await kv.watch({
          key: '>',
          initializedFn: () => {
            ready = true;
            markReady();
          },
        });
        w = iter;
        for await (const e of iter) {
          if (e.operation !== 'PUT') {
            entries.delete(e.key);
            continue;
          }
          const p = parseAnnouncement(e.key, e.value);
          if (p.ok) entries.set(e.key, { a: p.value, storedAt: e.created.getTime() });
          else {
            entries.delete(e.key);
            log.debug({ key: e.key, err: p.error }, 'malformed worker registry entry skipped');
          }
        }
      } catch (err) {
        if (!stopped) log.warn({ err: (err as Error).message }, 'worker registry watch failed; retrying');
      }
      if (!stopped) await new Promise((r) => setTimeout(r, 500));
    }
  };
  void run();
  await Promise.race([initial, new Promise((r) => setTimeout(r, o.readyTimeoutMs ?? 5_000).unref())]);
  const instances = (now = Date.now()) => {
    const out: WorkerInstance[] = [];
    for (const [k, { a, storedAt }] of entries) {
      if (isExpired(a, now, storedAt)) entries.delete(k);
      else out.push({ ...a, status: livenessOf(a, now, storedAt) });
    }
    return out.sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
  };
  return {
    instances,
    liveSubjects(now = Date.now()) {
      if (!ready) return undefined;
      return new Set(instances(now).flatMap((i) => (i.status === 'live' ? i.subjects : [])));
    },
    get ready() {
      return ready;
    },
    stop() {
      stopped = true;
      w?.stop();
    },
  };
}
