import type { KV, KvEntry, QueuedIterator } from 'nats';
import { retryTransient } from '@jetflow/messaging';
import type { Logger } from '@jetflow/logging';

export interface LeaseOptions {
  kv: KV;
  instanceId: string;
  partitions: number;
  log: Logger;
  /** How often membership and leases are renewed; the bucket TTL must be a few times this. */
  renewMs?: number;
  /** The bucket's TTL (default: read from the bucket): a member key older than this has expired. */
  ttlMs?: number;
  onAcquire: (p: number) => void;
  /** Must stop handling the partition; resolves when in-flight work is done. */
  onRelease: (p: number) => Promise<void>;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/**
 * Partition ownership for orchestrator replicas: one writer per flow at a time. Each replica
 * heartbeats a member key; the live members split the partitions (p mod members); a replica owns a
 * partition while it holds its lease key, renewed with compare-and-set, expiring by the bucket TTL
 * when its holder dies. A restarted replica with the same instance id takes its leases back at once.
 * CAS on nats-server 2.9 R3 is not airtight (nats-server#4320; ARCHITECTURE.md, "Exactly once"), so this narrows the window in which two
 * writers overlap; deterministic message ids and the state's CAS keep an overlap harmless.
 *
 * The members are read from one long-lived watch of the member keys, not listed every tick: a listing is an
 * ordered consumer made (and left to expire) on the server once a second per replica, most of what an idle
 * orchestrator cost the server. The bucket drops expired keys without a marker, so the watch judges expiry
 * as the server does: a member key counts while it is younger than the TTL by the server's timestamps (the
 * offset to the server's clock comes from this replica's own heartbeat, so clock skew does not count).
 */
export class PartitionLeases {
  private readonly held = new Map<number, number>(); // partition → lease revision
  private readonly releasing = new Set<number>();
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private ticking: Promise<void> = Promise.resolve();
  /** Member instance → server time (ms) of its last heartbeat; deleted members are removed. */
  private readonly members = new Map<string, number>();
  /** Local clock minus the server's, from this replica's own heartbeats as the watch sees them. */
  private serverOffset: number | undefined;
  private watcher: QueuedIterator<KvEntry> | undefined;
  private watching: Promise<void> | undefined;
  private ttlMs = 0;

  constructor(private readonly o: LeaseOptions) {}

  owned(): number[] {
    return [...this.held.keys()].sort((a, b) => a - b);
  }

  async start(): Promise<void> {
    this.running = true;
    this.ttlMs = this.o.ttlMs ?? (await this.o.kv.status()).ttl;
    // A replicated lease bucket created a moment ago may have no leader yet (writes answer 503): wait for it.
    await retryTransient(
      async () => {
        await this.heartbeat();
        await this.watchMembers();
        await this.tick();
      },
      { until: Date.now() + 60_000, what: 'writing to the lease bucket', log: this.o.log, baseMs: 50, maxMs: 1_000 },
    );
    const every = this.o.renewMs ?? 1_000;
    this.timer = setInterval(() => {
      this.ticking = this.ticking.then(() => this.tick()).catch((err: Error) => this.o.log.warn({ err: err.message }, 'lease tick failed'));
    }, every);
  }

  private heartbeat(): Promise<number> {
    return this.o.kv.put(`m.${this.o.instanceId}`, enc.encode(String(Date.now())));
  }

  /** Keeps `members` current from a watch of the member keys (restarted if it ends while running). */
  private watchMembers(): Promise<void> {
    if (this.watching) return this.watching;
    const p = (async () => {
      let initialized!: () => void;
      const ready = new Promise<void>((r) => (initialized = r));
      const iter = await this.o.kv.watch({ key: 'm.*', initializedFn: () => initialized() });
      this.watcher = iter;
      void (async () => {
        try {
          for await (const e of iter) {
            const id = e.key.slice(2);
            if (e.operation !== 'PUT') {
              this.members.delete(id);
              continue;
            }
            const at = e.created.getTime();
            this.members.set(id, at);
            if (id === this.o.instanceId) this.serverOffset = Date.now() - at;
          }
        } catch (err) {
          if (this.running) this.o.log.warn({ err: (err as Error).message }, 'lease member watch failed; watching again');
        }
        this.watcher = undefined;
        this.watching = undefined;
        // Ended while running (the watch's consumer went away): watch again; members age out meanwhile.
        if (this.running) setTimeout(() => void this.watchMembers().catch(() => undefined), 250).unref();
      })();
      await ready;
    })();
    this.watching = p;
    p.catch(() => (this.watching = undefined));
    return p;
  }

  /** The live members, in order: keys not deleted and younger than the bucket's TTL, this replica always. */
  private liveMembers(): string[] {
    const serverNow = Date.now() - (this.serverOffset ?? 0);
    const out = new Set<string>([this.o.instanceId]);
    for (const [id, at] of this.members) if (serverNow - at < this.ttlMs) out.add(id);
    return [...out].sort();
  }

  private async tick(): Promise<void> {
    if (!this.running) return;
    const { kv, instanceId } = this.o;
    await this.heartbeat();
    const members = this.liveMembers();
    const me = members.indexOf(instanceId);
    const desired = new Set<number>();
    for (let p = 0; p < this.o.partitions; p++) if (members.length && p % members.length === me) desired.add(p);

    // Renew what we hold and want (all at once: one round trip, not one per partition); hand back what
    // another member should own now.
    const renewals: Array<Promise<void>> = [];
    for (const [p, rev] of this.held) {
      if (!desired.has(p)) {
        await this.release(p);
        continue;
      }
      renewals.push(
        kv.update(`p.${p}`, enc.encode(instanceId), rev).then(
          (next) => void this.held.set(p, next),
          async () => {
            this.o.log.warn({ partition: p }, 'lost a partition lease');
            this.held.delete(p);
            await this.o.onRelease(p);
          },
        ),
      );
    }
    await Promise.all(renewals);
    for (const p of desired) {
      if (this.held.has(p) || this.releasing.has(p)) continue;
      const rev = await this.claim(p);
      if (rev !== undefined) {
        this.held.set(p, rev);
        this.o.onAcquire(p);
      }
    }
  }

  private async claim(p: number): Promise<number | undefined> {
    const { kv, instanceId } = this.o;
    try {
      return await kv.create(`p.${p}`, enc.encode(instanceId));
    } catch {
      const e = await kv.get(`p.${p}`);
      if (!e) return undefined;
      // Ours from before a restart, or released (deleted) by its last holder.
      if (e.operation !== 'PUT' || dec.decode(e.value) === instanceId || e.value.length === 0) {
        try {
          return await kv.update(`p.${p}`, enc.encode(instanceId), e.revision);
        } catch {
          return undefined;
        }
      }
      return undefined;
    }
  }

  private async release(p: number): Promise<void> {
    this.releasing.add(p);
    try {
      await this.o.onRelease(p);
      const rev = this.held.get(p);
      this.held.delete(p);
      if (rev !== undefined) await this.o.kv.delete(`p.${p}`, { previousSeq: rev }).catch(() => undefined);
    } finally {
      this.releasing.delete(p);
    }
  }

  /** Graceful stop: finish in-flight work and give every lease back so others take over at once. */
  async stop(): Promise<void> {
    this.running = false;
    clearInterval(this.timer);
    await this.ticking.catch(() => undefined);
    this.watcher?.stop();
    await Promise.all([...this.held.keys()].map((p) => this.release(p)));
    await this.o.kv.delete(`m.${this.o.instanceId}`).catch(() => undefined);
  }
}
