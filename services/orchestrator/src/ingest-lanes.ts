import { randomBytes } from 'node:crypto';
import { context } from '@opentelemetry/api';
import { AckPolicy, DeliverPolicy, nanos, type JetStreamClient, type JetStreamManager, type JsMsg, type NatsConnection, type Subscription } from 'nats';
import type { Logger } from '@jetflow/logging';
import {
  ADMISSION_SUBJECTS,
  INGEST_CONSUMER_PREFIXES,
  INGEST_CONTENT_TYPE,
  JetStreamApiCodes as C,
  LEGACY_INGEST_CONSUMER,
  STREAMS,
  decodeEnded,
  decodeLoad,
  encodeEnded,
  encodeLoad,
  ensureConsumer,
  ingestConsumerConfigs,
  isJsError,
  retryTransient,
  startPullLoop,
  tenantOfIngestConsumer,
  type PullLoop,
} from '@jetflow/messaging';
import type { FairAdmission } from './admission.js';
import { fromBinary } from '@bufbuild/protobuf';
import { SubmitFlowRequestSchema } from '@jetflow/proto';

export interface IngestLanesOptions {
  nc: NatsConnection;
  admission: FairAdmission;
  /** This replica (JETFLOW_INSTANCE_ID): its own reports are not counted twice. */
  instanceId: string;
  /** Tenants whose consumers are made at start; others are found queued in the stream. */
  tenants: readonly string[];
  /** Starts a flow from an ingest message (the engine's handler). */
  handle: (m: JsMsg) => Promise<void>;
  log: Logger;
  /** Report and poll period (default 500 ms). */
  tickMs?: number;
}

const TENANT_RE = /^[a-z0-9][a-z0-9_-]{0,62}$/;
/** Bodies up to this size are read for their priority when no Jetflow-Priority header names it. */
const PRIORITY_PEEK_BYTES = 65_536;
const utf8 = new TextDecoder();

/**
 * A submission's priority for the admission pick (1..10; 5 when none or not valid): the Jetflow-Priority
 * header (set on jetflow.submit by ingest, the scheduler and a child flow's start whenever it is not 5;
 * optional on the NATS door), else the "priority" of a small JSON or SubmitFlowRequest body. Only an order among the tenant's own flows: the
 * engine validates the body as always (a bad priority is dead-lettered there, naming it).
 */
export function ingestPriority(m: Pick<JsMsg, 'headers' | 'data'>): number {
  const valid = (n: unknown) => (typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= 10 ? n : undefined);
  const h = m.headers?.get('Jetflow-Priority');
  if (h) return valid(Number(h)) ?? 5;
  if (m.data.length > PRIORITY_PEEK_BYTES) return 5;
  const ctype = m.headers?.get('Content-Type') ?? '';
  try {
    if (ctype === 'application/protobuf' || ctype === 'application/x-protobuf') return valid(fromBinary(SubmitFlowRequestSchema, m.data).priority) ?? 5;
    // The services' own FlowRequests name a priority other than the default in the header: no decoding here.
    if (ctype === INGEST_CONTENT_TYPE) return 5;
    const body = JSON.parse(utf8.decode(m.data)) as { priority?: unknown } | null;
    return valid(body?.priority) ?? 5;
  } catch {
    return 5;
  }
}
/** More tenants than this get no consumer of their own: their flows are drained in arrival order. */
export const MAX_TENANT_LANES = 1_000;
const MAX_DRAINS = 16;
/** How often at most the stream's subjects are listed to find tenants without a consumer (it walks the subject index). */
const DISCOVERY_EVERY_MS = 5_000;
/**
 * How long one pull request of a lane waits on the server. A lane holds what it fetched whatever the
 * expiry (admission decides what starts), so a longer one loses nothing: an idle lane makes one pull request
 * per 10 s instead of one every 2 s (and a heartbeat every 5 s instead of every second). A request the
 * server lost (a new consumer leader) is noticed after two missed heartbeats; a reconnect re-pulls at once.
 */
const LANE_PULL_EXPIRES_MS = 10_000;

/**
 * The NATS side of fair admission: durable consumers per tenant on the ingest stream (one per subject family:
 * the NATS door's jetflow.ingest.<tenant>.> and the ingest service's jetflow.submit.<tenant>.>), each pulled by a loop
 * that holds only what FairAdmission lets it (fetch mode, capacity = fetchable). Replicas tell each other what
 * they run (jetflow.admission.load, also read by ingest for its in-flight answers) and which flows they saw end
 * that another replica started (jetflow.admission.ended). A tenant nobody named gets its consumer when the
 * stream holds messages no consumer covers (stream count against the consumers' pending); a subject with no
 * valid tenant in it is drained through a short-lived consumer, so the engine dead-letters it as before.
 */
export class IngestLanes {
  /** Pull loops by consumer name. */
  private readonly loops = new Map<string, PullLoop>();
  /** Tenants whose consumers are pulled (their lane in FairAdmission has the tenant's name). */
  private readonly tenants = new Set<string>();
  private readonly adding = new Map<string, Promise<void>>();
  private readonly drains = new Set<string>();
  private ended: string[] = [];
  private queued = new Map<string, number>();
  private readonly subs: Subscription[] = [];
  private readonly timers: NodeJS.Timeout[] = [];
  private jsm!: JetStreamManager;
  private readonly js: JetStreamClient;
  private ticks = 0;
  private mismatches = 0;
  private lastDiscovery = 0;
  private polling = false;
  private lastReport = 0;
  private stopping = false;
  private badReports = 0;

  constructor(private readonly o: IngestLanesOptions) {
    this.js = o.nc.jetstream();
  }

  /** EngineDeps.admission: every flow this replica starts, every flow it sees end. */
  readonly hooks = {
    started: (flowId: string, tenant: string, deadlineAt: number) => this.o.admission.started(flowId, tenant, deadlineAt),
    ended: (flowId: string) => {
      if (this.o.admission.ended(flowId)) return;
      this.ended.push(flowId);
      if (this.ended.length >= 1_000) this.flushEnded();
    },
  };

  async start(): Promise<void> {
    this.jsm = await this.o.nc.jetstreamManager();
    await this.retireLegacyConsumer();
    this.subs.push(
      this.o.nc.subscribe(ADMISSION_SUBJECTS.load, { callback: (err, m) => !err && this.onLoad(m.data) }),
      this.o.nc.subscribe(ADMISSION_SUBJECTS.ended, { callback: (err, m) => !err && this.onEnded(m.data) }),
    );
    await Promise.all(this.o.tenants.map((t) => this.addTenant(t)));
    const tick = this.o.tickMs ?? 500;
    this.timers.push(
      setInterval(() => this.tick(), tick),
      setInterval(() => this.flushEnded(), Math.max(20, tick / 5)),
    );
    for (const t of this.timers) t.unref();
    void this.poll();
  }

  /** The single unfiltered consumer of earlier versions blocks every per-tenant one; its unacked messages stay in the stream. */
  private async retireLegacyConsumer() {
    await retryTransient(
      async () => {
        try {
          await this.jsm.consumers.info(STREAMS.ingest, LEGACY_INGEST_CONSUMER);
        } catch (err) {
          if (isJsError(err, C.ConsumerNotFound)) return;
          throw err;
        }
        await this.jsm.consumers.delete(STREAMS.ingest, LEGACY_INGEST_CONSUMER);
        this.o.log.info({ consumer: LEGACY_INGEST_CONSUMER }, 'replaced the single ingest consumer by one per tenant');
      },
      { until: Date.now() + 60_000, what: 'retiring the single ingest consumer', log: this.o.log },
    );
  }

  /** Makes the tenant's consumers (idempotent, any replica) and pulls them into the tenant's lane. */
  private addTenant(tenant: string): Promise<void> {
    if (this.tenants.has(tenant) || this.stopping) return Promise.resolve();
    let p = this.adding.get(tenant);
    if (!p) {
      p = (async () => {
        const configs = ingestConsumerConfigs(tenant);
        for (const cfg of configs) {
          await retryTransient(() => ensureConsumer(this.jsm, STREAMS.ingest, cfg), {
            until: Date.now() + 60_000,
            what: `consumer ${cfg.durable_name}`,
            log: this.o.log,
            also: (err) => (err as { notVisibleYet?: unknown }).notVisibleYet === true,
          });
        }
        if (this.stopping || this.tenants.has(tenant)) return;
        this.tenants.add(tenant);
        const adm = this.o.admission;
        adm.lane(tenant, tenant);
        for (const { durable_name: name } of configs) {
          this.loops.set(
            name,
            startPullLoop({
              js: this.js,
              stream: STREAMS.ingest,
              consumer: name,
              concurrency: adm.lookahead,
              mode: 'fetch',
              expiresMs: LANE_PULL_EXPIRES_MS,
              capacity: () => adm.fetchable(tenant),
              whenCapacity: () => adm.whenCapacity(),
              // The start runs in this message's trace context (the start span), whenever its turn comes.
              handle: (m) =>
                adm.offer(
                  tenant,
                  m,
                  context.bind(context.active(), () => this.o.handle(m)),
                  { priority: ingestPriority(m), at: m.info.timestampNanos ? Math.floor(m.info.timestampNanos / 1e6) : Date.now() },
                ),
              trace: { root: true },
              log: this.o.log,
            }),
          );
        }
      })().finally(() => this.adding.delete(tenant));
      this.adding.set(tenant, p);
    }
    return p;
  }

  private soon: NodeJS.Timeout | undefined;

  /** FairAdmission's onChange: a start or an end is reported within 100 ms, not at the next tick. */
  reportSoon(): void {
    if (this.soon || this.stopping) return;
    this.soon = setTimeout(() => {
      this.soon = undefined;
      this.report();
    }, 100);
    this.soon.unref();
  }

  private tick() {
    this.o.admission.sweep();
    // Every other tick: a fresh look at the stream (queued counts for ingest, tenants without a consumer),
    // which reports when it has them. Otherwise a report only when none went out for a second (a slow poll):
    // changes are reported within 100 ms (reportSoon), and readers keep a report for 3 s.
    if (++this.ticks % 2 === 0 && !this.polling) void this.poll();
    else if (Date.now() - this.lastReport >= 1_000) this.report();
  }

  private report(queuedNow = false) {
    this.lastReport = Date.now();
    try {
      this.o.nc.publish(ADMISSION_SUBJECTS.load, encodeLoad({ instance: this.o.instanceId, running: new Map(this.o.admission.runningHere()), queued: this.queued, queuedNow }));
    } catch {
      // Connection closing or reconnecting: the next report replaces this one.
    }
  }

  private flushEnded() {
    if (!this.ended.length) return;
    const ids = this.ended;
    this.ended = [];
    try {
      for (let i = 0; i < ids.length; i += 1_000) this.o.nc.publish(ADMISSION_SUBJECTS.ended, encodeEnded(this.o.instanceId, ids.slice(i, i + 1_000)));
    } catch {
      // Lost: the starter stops counting those flows after their deadline.
    }
  }

  private onLoad(data: Uint8Array) {
    try {
      const l = decodeLoad(data);
      if (l.instance !== this.o.instanceId) this.o.admission.peerLoad(l.instance, l.running);
    } catch (err) {
      this.badReport(ADMISSION_SUBJECTS.load, err);
    }
  }

  private onEnded(data: Uint8Array) {
    try {
      const e = decodeEnded(data);
      if (e.instance !== this.o.instanceId) for (const id of e.flowIds) this.o.admission.ended(id);
    } catch (err) {
      this.badReport(ADMISSION_SUBJECTS.ended, err);
    }
  }

  private badReport(subject: string, err: unknown) {
    if (this.badReports++ % 100 === 0) this.o.log.warn({ subject, err: (err as Error).message, seen: this.badReports }, 'ignored a malformed admission report');
  }

  /** Queued counts per tenant, consumers made by other replicas, and whether some messages have no consumer. */
  private async poll() {
    if (this.polling || this.stopping) return;
    this.polling = true;
    try {
      // Stream first: arrivals after it only raise the consumers' side of the comparison.
      const si = await this.jsm.streams.info(STREAMS.ingest);
      if (si.state.messages === 0) {
        // Nothing queued, held or unacked anywhere (a work queue keeps a message until its ack): the counts
        // are all zero and no tenant lacks a consumer, so the consumers need no listing (one per tenant and
        // family, each poll of an idle stack). Consumers another replica made are found once messages come.
        this.queued = new Map();
        this.mismatches = 0;
        this.report(true);
        return;
      }
      const queued = new Map<string, number>();
      let covered = 0;
      for await (const ci of this.jsm.consumers.list(STREAMS.ingest)) {
        const n = ci.num_pending + ci.num_ack_pending;
        covered += n;
        const tenant = tenantOfIngestConsumer(ci.name);
        if (tenant === undefined || !TENANT_RE.test(tenant)) continue;
        if (n) queued.set(tenant, (queued.get(tenant) ?? 0) + n);
        if (!this.tenants.has(tenant) && this.tenants.size < MAX_TENANT_LANES)
          void this.addTenant(tenant).catch((err: Error) => this.o.log.warn({ tenant, err: err.message }, 'cannot pull a tenant consumer'));
      }
      this.queued = queued;
      // At once: ingest counts its own acceptances only until a report with fresh queued counts.
      this.report(true);
      this.mismatches = si.state.messages > covered ? this.mismatches + 1 : 0;
      if (this.mismatches >= 2 && Date.now() - this.lastDiscovery >= DISCOVERY_EVERY_MS) await this.discover();
    } catch (err) {
      if (!this.stopping) this.o.log.warn({ err: (err as Error).message }, 'cannot read the ingest stream; admission counts stay as they were');
    } finally {
      this.polling = false;
    }
  }

  /** Lists the stream's subjects and gives every uncovered tenant its consumer (or a drain). */
  private async discover() {
    this.lastDiscovery = Date.now();
    const si = await this.jsm.streams.info(STREAMS.ingest, { subjects_filter: '>' });
    const seen = new Set<string>();
    for (const subject of Object.keys(si.state.subjects ?? {})) {
      const tokens = subject.split('.');
      const tenant = tokens[2] ?? '';
      const valid = tokens.length >= 4 && TENANT_RE.test(tenant) && (tokens[1] ?? '') in INGEST_CONSUMER_PREFIXES;
      if (valid && this.tenants.has(tenant)) continue;
      // One drain per tenant token of a family (or per subject that has none), not one per flow id.
      const filter = tokens.length >= 4 ? `${tokens[0]}.${tokens[1]}.${tenant}.>` : subject;
      if (seen.has(filter)) continue;
      seen.add(filter);
      if (valid && this.tenants.size < MAX_TENANT_LANES && !this.drains.has(filter)) {
        this.o.log.info({ tenant }, 'submissions of a tenant without an ingest consumer: making one');
        await this.addTenant(tenant);
        continue;
      }
      if (!this.drains.has(filter) && this.drains.size < MAX_DRAINS) void this.drain(filter, valid ? tenant : undefined);
    }
  }

  /**
   * Pulls what a short-lived consumer on `filter` finds until it is empty: subjects that name no valid tenant
   * (the engine dead-letters them), or tenants past MAX_TENANT_LANES. The consumer goes away by itself.
   */
  private async drain(filter: string, tenant: string | undefined) {
    this.drains.add(filter);
    const lane = `drain:${filter}`;
    const adm = this.o.admission;
    try {
      const name = `orchestrator-drain-${randomBytes(6).toString('hex')}`;
      this.o.log.warn({ filter, consumer: name }, 'draining ingest subjects that have no tenant consumer');
      await this.jsm.consumers.add(STREAMS.ingest, {
        name,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        filter_subject: filter,
        ack_wait: nanos(5_000),
        inactive_threshold: nanos(10_000),
        max_deliver: -1,
      });
      const c = await this.js.consumers.get(STREAMS.ingest, name);
      adm.lane(lane, tenant);
      while (!this.stopping) {
        const n = adm.fetchable(lane);
        if (n <= 0) {
          await adm.whenCapacity();
          continue;
        }
        const offered: Array<Promise<void>> = [];
        for await (const m of await c.fetch({ max_messages: n, expires: 1_000 })) offered.push(adm.offer(lane, m, () => this.o.handle(m)));
        if (!offered.length) break;
        await Promise.all(offered);
      }
    } catch (err) {
      this.o.log.warn({ filter, err: (err as Error).message }, 'drain failed; the next discovery tries again');
    } finally {
      adm.removeLane(lane);
      this.drains.delete(filter);
    }
  }

  /** The tenant consumers this replica pulls (metrics). */
  consumers(): string[] {
    return [...this.loops.keys()];
  }

  /** Shutdown: held messages go back at once, the loops stop, the reports end. */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const t of this.timers) clearInterval(t);
    clearTimeout(this.soon);
    this.flushEnded();
    this.o.admission.stop();
    await Promise.all([...this.loops.values()].map((l) => l.stop()));
    for (const s of this.subs) s.unsubscribe();
  }
}
