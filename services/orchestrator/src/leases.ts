import type { KV } from 'nats';
import { retryTransient } from '../../../libs/messaging/src/index.js';
import type { Logger } from '../../../libs/logging/src/index.js';

export interface LeaseOptions {
  kv: KV;
  instanceId: string;
  partitions: number;
  log: Logger;
  /** How often membership and leases are renewed; the bucket TTL must be a few times this. */
  renewMs?: number;
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
 */
export class PartitionLeases {
  private readonly held = new Map<number, number>(); // partition → lease revision
  private readonly releasing = new Set<number>();
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private ticking: Promise<void> = Promise.resolve();

  constructor(private readonly o: LeaseOptions) {}

  owned(): number[] {
    return [...this.held.keys()].sort((a, b) => a - b);
  }

  async start(): Promise<void> {
    this.running = true;
    // A replicated lease bucket created a moment ago may have no leader yet (writes answer 503): wait for it.
    await retryTransient(() => this.tick(), { until: Date.now() + 60_000, what: 'writing to the lease bucket', log: this.o.log, baseMs: 50, maxMs: 1_000 });
    const every = this.o.renewMs ?? 1_000;
    this.timer = setInterval(() => {
      this.ticking = this.ticking.then(() => this.tick()).catch((err: Error) => this.o.log.warn({ err: err.message }, 'lease tick failed'));
    }, every);
  }

  private async tick(): Promise<void> {
    if (!this.running) return;
    const { kv, instanceId } = this.o;
    await kv.put(`m.${instanceId}`, enc.encode(String(Date.now())));
    const members: string[] = [];
    for await (const k of await kv.keys('m.*')) members.push(k.slice(2));
    members.sort();
    const me = members.indexOf(instanceId);
    const desired = new Set<number>();
    for (let p = 0; p < this.o.partitions; p++) if (members.length && p % members.length === me) desired.add(p);

    // Renew what we hold and want; hand back what another member should own now.
    for (const [p, rev] of this.held) {
      if (!desired.has(p)) {
        await this.release(p);
        continue;
      }
      try {
        this.held.set(p, await kv.update(`p.${p}`, enc.encode(instanceId), rev));
      } catch {
        this.o.log.warn({ partition: p }, 'lost a partition lease');
        this.held.delete(p);
        await this.o.onRelease(p);
      }
    }
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
    await Promise.all([...this.held.keys()].map((p) => this.release(p)));
    await this.o.kv.delete(`m.${this.o.instanceId}`).catch(() => undefined);
  }
}
