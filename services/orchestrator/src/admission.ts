/**
 * Fair admission of new flows (no broker here; ingest-lanes.ts is the NATS side).
 *
 * Each tenant's submissions wait in the ingest stream behind a consumer of their own (a lane), so one
 * tenant's backlog never stands in front of another's. Every lane holds a few messages (a bounded look-ahead),
 * and whenever this replica has room (JETFLOW_MAX_RUNNING_FLOWS) the next flow to start is taken from the
 * lane with the smallest virtual time, which grows by 1/weight per start (start-time fair queueing): tenants
 * with a backlog share the starts by weight, and a tenant that was quiet starts its next flow at the next free
 * slot. A tenant with its `inflight` flows running (on every replica, from their reports) is not pulled at
 * all: its submissions stay in the stream until one of its flows ends. With several replicas each also keeps
 * to its part of the limit (split by instance id among the replicas reporting), so replicas pulling the same
 * burst at once cannot each start the whole limit before their reports cross.
 *
 * Priorities: within a lane, the next start is the held message with the highest priority (1..10) plus an
 * ageing bonus of one level per `agingMs` it has waited since it was published (`pickNext`), so a low one
 * is passed over for a while but never for good. For that to have a choice, a lane holds at least
 * `priorityLookahead` messages even while the replica is full or its tenant at its in-flight limit (held,
 * not started: the starts stay within both).
 */

/** What admission needs of a delivered message. */
export interface Held {
  /** Keeps the message from being redelivered while it waits its turn (ack wait 5 s). */
  working(): void;
  /** Hands it back to the stream (shutdown). */
  nak(delayMs?: number): void;
}

export interface FairAdmissionOptions {
  /** Most flows this replica keeps running at once (JETFLOW_MAX_RUNNING_FLOWS). */
  maxRunning: number;
  /** Most starts in progress at once (JETFLOW_ORCHESTRATOR_CONCURRENCY). */
  concurrency: number;
  /** Per tenant: in-flight limit and weight (JETFLOW_TENANT_LIMITS). */
  limits: { of(tenant: string): { inflight: number; weight: number } };
  /** Most messages a lane holds; it holds fewer while the replica is full (default 64). */
  lookahead?: number;
  /** A flow that ended on another replica unseen stops counting this long after its deadline (default 5 s). */
  graceMs?: number;
  /** Reports of other replicas count this long (default 3 s: they come every 500 ms). */
  peerTtlMs?: number;
  /** This replica's instance id: its place among the replicas decides its part of each in-flight limit. */
  instance?: string;
  /** Told when this replica's running counts change (to report them sooner than the next tick). */
  onChange?: () => void;
  /** Most messages a lane holds whatever the room, so its priority pick has a choice (default 16; 0: as many as may start). */
  priorityLookahead?: number;
  /** Waiting this long (since it was published) counts one priority level more (default 10 s). */
  agingMs?: number;
  now?: () => number;
}

/** A held submission as the priority pick sees it: its priority and when it was published (ms since epoch). */
export interface PriorityItem {
  priority: number;
  at: number;
}

/**
 * Which held submission starts next: the highest priority plus one level per `agingMs` waited, the oldest of
 * equals (the queue is in arrival order, so the first of equals). A priority-1 flow waits at most about
 * 9 × agingMs behind newer priority-10 ones. Pure (admission.test.ts).
 */
export function pickNext(queue: readonly PriorityItem[], now: number, agingMs: number): number {
  let best = -1;
  let bestScore = -Infinity;
  for (let i = 0; i < queue.length; i++) {
    const it = queue[i]!;
    const score = it.priority + Math.max(0, Math.floor((now - it.at) / agingMs));
    if (score > bestScore || (score === bestScore && it.at < queue[best]!.at)) {
      best = i;
      bestScore = score;
    }
  }
  return best;
}

/** Every lane may hold at least this many, so the turns have something to choose from when the replica is full. */
const MIN_LOOKAHEAD = 4;
/** A held message gets a working() this often: well inside the consumer's 5 s ack wait. */
const WORKING_EVERY_MS = 2_000;

interface Item extends PriorityItem {
  msg: Held;
  run: () => Promise<void>;
  done: () => void;
  since: number;
}

class Lane {
  readonly queue: Item[] = [];
  starting = 0;
  constructor(
    readonly name: string,
    /** Undefined for a drain of subjects that name no tenant: no quota, weight 1. */
    readonly tenant: string | undefined,
    public vt: number,
  ) {}
}

export class FairAdmission {
  private readonly lanes = new Map<string, Lane>();
  /** Lanes with something queued. */
  private readonly active = new Set<Lane>();
  /** Virtual time of the last start: a lane that becomes active starts from here, not from its old credit. */
  private vt = 0;
  private starting = 0;
  private stopped = false;
  private pumping = false;
  private waiters: Array<() => void> = [];
  /** Flows this replica started and has not seen end: id → tenant and deadline. */
  private readonly mine = new Map<string, { tenant: string; deadlineAt: number }>();
  private readonly mineByTenant = new Map<string, number>();
  private readonly peers = new Map<string, { at: number; running: ReadonlyMap<string, number> }>();
  private peerRunning = new Map<string, number>();
  /** Most messages a lane holds (its pull loop's concurrency). */
  readonly lookahead: number;
  private readonly graceMs: number;
  private readonly peerTtlMs: number;
  private readonly now: () => number;
  private readonly priorityLookahead: number;
  private readonly agingMs: number;

  constructor(private readonly o: FairAdmissionOptions) {
    this.lookahead = Math.max(MIN_LOOKAHEAD, o.lookahead ?? 64);
    this.priorityLookahead = Math.min(this.lookahead, o.priorityLookahead ?? 16);
    this.agingMs = Math.max(1, o.agingMs ?? 10_000);
    this.graceMs = o.graceMs ?? 5_000;
    this.peerTtlMs = o.peerTtlMs ?? 3_000;
    this.now = o.now ?? Date.now;
  }

  // ------------------------------------------------------------ counting

  /** The engine started a flow (its state was created). */
  started(flowId: string, tenant: string, deadlineAt: number): void {
    if (this.mine.has(flowId)) return;
    this.mine.set(flowId, { tenant, deadlineAt });
    this.mineByTenant.set(tenant, (this.mineByTenant.get(tenant) ?? 0) + 1);
    this.o.onChange?.();
  }

  /** The engine saw a flow end. False when this replica did not start it: its starter must be told. */
  ended(flowId: string): boolean {
    const f = this.mine.get(flowId);
    if (!f) return false;
    this.mine.delete(flowId);
    const n = (this.mineByTenant.get(f.tenant) ?? 1) - 1;
    if (n > 0) this.mineByTenant.set(f.tenant, n);
    else this.mineByTenant.delete(f.tenant);
    this.o.onChange?.();
    this.pump();
    return true;
  }

  /** Another replica's report: what it is running per tenant. */
  peerLoad(instance: string, running: ReadonlyMap<string, number>): void {
    const known = this.peers.has(instance);
    this.peers.set(instance, { at: this.now(), running });
    if (!known) this.rank();
    this.sumPeers();
    this.pump();
  }

  private sumPeers() {
    const sum = new Map<string, number>();
    for (const p of this.peers.values()) for (const [t, n] of p.running) sum.set(t, (sum.get(t) ?? 0) + n);
    this.peerRunning = sum;
  }

  /** This replica's place among the replicas reporting (instance ids in order), and how many there are. */
  private place = { index: 0, of: 1 };
  private rank() {
    const self = this.o.instance ?? '';
    const ids = [...this.peers.keys(), self].sort();
    this.place = { index: ids.indexOf(self), of: ids.length };
  }

  /** This replica's part of an in-flight limit: an even split, the remainder to the first instance ids. */
  private share(inflight: number): number {
    const { index, of } = this.place;
    if (of === 1 || inflight === Infinity) return inflight;
    return Math.floor(inflight / of) + (index < inflight % of ? 1 : 0);
  }

  /** How many more flows of the tenant this replica may hold or start, under the limit and its part of it. */
  private headroom(tenant: string): number {
    const inflight = this.o.limits.of(tenant).inflight;
    return Math.min(inflight - this.running(tenant), this.share(inflight) - (this.mineByTenant.get(tenant) ?? 0));
  }

  /** A tenant's running flows across replicas (this one exactly, the others as last reported). */
  running(tenant: string): number {
    return (this.mineByTenant.get(tenant) ?? 0) + (this.peerRunning.get(tenant) ?? 0);
  }

  /** This replica's running flows per tenant (its report to the others and to ingest). */
  runningHere(): ReadonlyMap<string, number> {
    return this.mineByTenant;
  }

  get runningCount(): number {
    return this.mine.size;
  }

  /**
   * Once a second or so: flows past their deadline and grace stop counting (they ended on a replica whose
   * word was lost, or started before a restart), reports of silent replicas expire, held messages are kept alive.
   */
  sweep(): void {
    const now = this.now();
    for (const [id, f] of this.mine) if (f.deadlineAt + this.graceMs < now) this.ended(id);
    let expired = false;
    for (const [id, p] of this.peers) {
      if (p.at + this.peerTtlMs < now) {
        this.peers.delete(id);
        expired = true;
      }
    }
    if (expired) {
      this.rank();
      this.sumPeers();
    }
    for (const lane of this.active) {
      for (const it of lane.queue) {
        if (now - it.since >= WORKING_EVERY_MS) {
          it.msg.working();
          it.since = now;
        }
      }
    }
    this.pump();
  }

  // ------------------------------------------------------------ lanes

  /** Registers a lane (idempotent); `tenant` undefined for a drain lane. */
  lane(name: string, tenant: string | undefined): void {
    if (!this.lanes.has(name)) this.lanes.set(name, new Lane(name, tenant, this.vt));
  }

  removeLane(name: string): void {
    const l = this.lanes.get(name);
    if (!l || l.queue.length || l.starting) return;
    this.lanes.delete(name);
  }

  /** How many more messages the lane's pull loop may fetch now (0: wait for whenCapacity). */
  fetchable(name: string): number {
    const l = this.lanes.get(name);
    if (!l || this.stopped) return 0;
    const held = l.queue.length + l.starting;
    const free = this.o.maxRunning - this.mine.size - this.starting;
    let n = Math.min(this.lookahead, Math.max(MIN_LOOKAHEAD, this.priorityLookahead, free)) - held;
    if (l.tenant !== undefined) n = Math.min(n, Math.max(this.headroom(l.tenant), this.priorityLookahead) - held);
    return Math.max(0, n);
  }

  /** Resolves at the next change that may let a lane fetch or start more. */
  whenCapacity(): Promise<void> {
    return new Promise((r) => this.waiters.push(r));
  }

  private notify() {
    if (!this.waiters.length) return;
    const w = this.waiters;
    this.waiters = [];
    for (const r of w) r();
  }

  /**
   * Queues a delivered message on its lane; `run` starts the flow (the engine's ingest handler, bound to
   * the message's trace context). Resolves when it has run, or when it was handed back at shutdown.
   * `priority` (1..10, default 5) and `at` (when it was published, default now) order the lane's starts.
   */
  offer(name: string, msg: Held, run: () => Promise<void>, order?: Partial<PriorityItem>): Promise<void> {
    const l = this.lanes.get(name);
    if (!l || this.stopped) {
      msg.nak();
      return Promise.resolve();
    }
    return new Promise<void>((done) => {
      if (!l.queue.length) {
        this.active.add(l);
        l.vt = Math.max(l.vt, this.vt);
      }
      const now = this.now();
      l.queue.push({ msg, run, done, since: now, priority: order?.priority ?? 5, at: order?.at ?? now });
      this.pump();
    });
  }

  private quotaLeft(l: Lane): boolean {
    return l.tenant === undefined || this.headroom(l.tenant) - l.starting > 0;
  }

  /** The lane whose turn it is: queued, under its quota, smallest virtual time. */
  private next(): Lane | undefined {
    let best: Lane | undefined;
    for (const l of this.active) if ((!best || l.vt < best.vt) && this.quotaLeft(l)) best = l;
    return best;
  }

  /** Starts flows while this replica has room, one turn at a time. */
  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (!this.stopped && this.starting < this.o.concurrency && this.mine.size + this.starting < this.o.maxRunning) {
        const l = this.next();
        if (!l) break;
        const i = l.queue.length === 1 ? 0 : pickNext(l.queue, this.now(), this.agingMs);
        const it = l.queue.splice(i, 1)[0]!;
        if (!l.queue.length) this.active.delete(l);
        this.vt = l.vt;
        l.vt += 1 / (l.tenant === undefined ? 1 : Math.max(1, this.o.limits.of(l.tenant).weight));
        this.starting++;
        l.starting++;
        void it
          .run()
          .catch(() => undefined) // the handler reports its own errors; the message is its to settle
          .finally(() => {
            this.starting--;
            l.starting--;
            it.done();
            this.pump();
          });
      }
    } finally {
      this.pumping = false;
    }
    this.notify();
  }

  /** Shutdown: nothing more starts; held messages go back to the stream at once for another replica. */
  stop(): void {
    this.stopped = true;
    for (const l of this.active) {
      for (const it of l.queue.splice(0)) {
        it.msg.nak();
        it.done();
      }
    }
    this.active.clear();
    this.notify();
  }
}
