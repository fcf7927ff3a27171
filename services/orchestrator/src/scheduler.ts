import { create, toBinary } from '@bufbuild/protobuf';
import { headers as natsHeaders, type KV, type KvEntry } from 'nats';
import { FlowRequestSchema } from '@jetflow/proto';
import {
  deriveFlowId,
  idempotencyClaimKey,
  isValidId,
  submissionHash,
  type Submission,
  fireKey,
  parseScheduleRecord,
  planFirings,
  QUEUED_GRACE_MS,
  scheduleKey,
  type ScheduleRecord,
} from '@jetflow/flows';
import { INGEST_CONTENT_TYPE, isCasConflict, submitSubject, type JetStreamPublisher } from '@jetflow/messaging';
import { LABEL_VALUES, scheduleFiringsCounter, zeroSeries } from '@jetflow/metrics';
import type { Logger } from '@jetflow/logging';

const enc = new TextEncoder();
const dec = new TextDecoder();

export interface SchedulerDeps {
  /** KV jetflow_schedules (reads from the leader: they feed a compare-and-set). */
  schedules: KV;
  /** KV jetflow_flows: whether the previous firing's flow still runs (overlap `skip`). */
  flows: Pick<KV, 'get'>;
  /** KV jetflow_idempotency: each firing claims its key like any submission. */
  idempotency: Pick<KV, 'create' | 'get'>;
  pub: JetStreamPublisher;
  /** Whether this replica fires the schedule with this KV key (it owns the key's partition). */
  owns: (key: string) => boolean;
  log: Logger;
  /** How often due schedules are looked for (default 200 ms). */
  tickMs?: number;
}

/**
 * Fires cron schedules. Every replica watches KV jetflow_schedules; a schedule is fired by the replica
 * that owns its key's result partition (the partition leases), so one replica fires it. Each firing
 * submits the schedule's submission under the idempotency key `<schedule id>:<fire time ISO>` (claimed in
 * KV jetflow_idempotency and published to jetflow.submit like ingest's), then advances the record's
 * `nextFireAt` with a compare-and-set. A replica that dies between the two, or two replicas that both fire
 * while a lease moves, submit the same key again: the same flow id, one flow. Counts (`fired`,
 * `skipped`, `missed`) move only with the compare-and-set that wins.
 */
export class Scheduler {
  private readonly recs = new Map<string, { rec: ScheduleRecord; rev: number }>();
  private readonly busy = new Set<string>();
  /** After a failed firing (the broker away), the key waits this long before the next try: no retry storm every tick. */
  private readonly retryAt = new Map<string, number>();
  private readonly firings = scheduleFiringsCounter();
  private timer: NodeJS.Timeout | undefined;
  private watch: { stop(): void } | undefined;
  private stopped = false;

  constructor(private readonly d: SchedulerDeps) {
    zeroSeries(this.firings, { outcome: LABEL_VALUES.scheduleOutcome });
  }

  async start(): Promise<void> {
    await this.follow();
    this.timer = setInterval(() => this.tick(), this.d.tickMs ?? 200);
    this.timer.unref();
  }

  /** Watches the bucket; a watch that ends (the server went away for long) is made again, from the current values. */
  private async follow(): Promise<void> {
    const it = await this.d.schedules.watch({ key: '>' });
    this.watch = it;
    void (async () => {
      for await (const e of it) this.apply(e);
    })()
      .catch((err: Error) => this.d.log.warn({ err: err.message }, 'the schedules watch failed'))
      .then(async () => {
        while (!this.stopped) {
          await new Promise((r) => setTimeout(r, 1_000));
          if (this.stopped) return;
          try {
            this.recs.clear();
            await this.follow();
            this.d.log.info('schedules watch made again');
            return;
          } catch (err) {
            this.d.log.warn({ err: (err as Error).message }, 'cannot watch the schedules yet; retrying');
          }
        }
      });
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
    this.watch?.stop();
  }

  /** A record as the watch delivers it; anything that does not parse, or names another key, is ignored. */
  private apply(e: KvEntry) {
    if (e.operation !== 'PUT' || !e.value.length) {
      this.recs.delete(e.key);
      return;
    }
    const have = this.recs.get(e.key);
    if (have && have.rev >= e.revision) return;
    const rec = parseScheduleRecord(dec.decode(e.value));
    if (!rec || !isValidId('tenant', rec.tenant) || scheduleKey(rec.tenant, rec.id) !== e.key) {
      this.d.log.warn({ key: e.key }, 'ignored a malformed schedule record');
      this.recs.delete(e.key);
      return;
    }
    this.recs.set(e.key, { rec, rev: e.revision });
  }

  private tick() {
    const now = Date.now();
    for (const [key, { rec }] of this.recs) {
      if (rec.paused || rec.nextFireAt === null || rec.nextFireAt > now || this.busy.has(key) || (this.retryAt.get(key) ?? 0) > now || !this.d.owns(key)) continue;
      this.busy.add(key);
      void this.fire(key)
        .then(() => this.retryAt.delete(key))
        .catch((err: Error) => {
          this.retryAt.set(key, Date.now() + 1_000);
          this.d.log.warn({ schedule: key, err: err.message }, 'schedule firing failed; retrying in a second');
        })
        .finally(() => this.busy.delete(key));
    }
  }

  private async fire(key: string): Promise<void> {
    const cur = this.recs.get(key);
    if (!cur) return;
    const { rec, rev } = cur;
    const now = Date.now();
    const previousRunning = rec.overlap === 'skip' && rec.lastFlowId ? await this.stillRuns(rec.lastFlowId, rec.lastFireAt ?? 0, now) : false;
    const plan = planFirings(rec, now, { previousRunning });
    let lastFlowId = rec.lastFlowId;
    for (const at of plan.fire) lastFlowId = await this.submit(rec, at);
    const next: ScheduleRecord = {
      ...rec,
      nextFireAt: plan.next,
      fired: rec.fired + plan.fire.length,
      skipped: rec.skipped + plan.skipped,
      missed: rec.missed + plan.missed,
      lastFireAt: plan.fire.at(-1) ?? rec.lastFireAt,
      lastFlowId,
    };
    try {
      const r = await this.d.schedules.update(key, enc.encode(JSON.stringify(next)), rev);
      if ((this.recs.get(key)?.rev ?? 0) < r) this.recs.set(key, { rec: next, rev: r });
    } catch (err) {
      // Paused, resumed, deleted or fired elsewhere meanwhile: the watch brings that record; a firing
      // made here is the same flow whoever makes it again.
      if (isCasConflict(err)) return;
      throw err;
    }
    if (plan.fire.length) this.firings.inc({ outcome: 'fired' }, plan.fire.length);
    if (plan.skipped) this.firings.inc({ outcome: 'skipped' }, plan.skipped);
    if (plan.missed) this.firings.inc({ outcome: 'missed' }, plan.missed);
    if (plan.missed || plan.skipped)
      this.d.log.info({ schedule: key, fired: plan.fire.length, skipped: plan.skipped, missed: plan.missed }, 'schedule caught up: not every due fire time fired');
  }

  /** Whether the flow of the previous firing still runs: its state says so, or it has none yet and was fired moments ago (queued). */
  private async stillRuns(flowId: string, firedAt: number, now: number): Promise<boolean> {
    const e = await this.d.flows.get(flowId);
    if (!e || e.operation !== 'PUT' || !e.value.length) return now - firedAt < QUEUED_GRACE_MS;
    try {
      const s = JSON.parse(dec.decode(e.value)) as { status?: unknown };
      return s.status === 'running' || s.status === 'scheduled';
    } catch {
      return false;
    }
  }

  /** Submits one fire time's flow (idempotent: the key, hence the flow id, is the fire time's). */
  private async submit(rec: ScheduleRecord, at: number): Promise<string> {
    const key = fireKey(rec.id, at);
    const flowId = deriveFlowId(rec.tenant, key);
    const metadata = { ...(rec.submission.metadata ?? {}) };
    // Which schedule and fire time made the flow, when the submission leaves room for two more entries.
    if (Object.keys(metadata).length <= 30) Object.assign(metadata, { 'jetflow-schedule': rec.id, 'jetflow-fire-at': new Date(at).toISOString() });
    const sub: Submission = { ...rec.submission, metadata, idempotencyKey: key };
    const hash = submissionHash(sub);
    const claimKey = idempotencyClaimKey(rec.tenant, key);
    try {
      await this.d.idempotency.create(claimKey, enc.encode(JSON.stringify({ flowId, hash })));
    } catch (err) {
      if (!isCasConflict(err)) throw err;
      const e = await this.d.idempotency.get(claimKey);
      const prev = e && e.operation === 'PUT' && e.value.length ? (JSON.parse(dec.decode(e.value)) as { hash?: string }) : undefined;
      if (prev && prev.hash !== hash) {
        // A submission through a door took this key with another body: that flow stands for the fire time.
        this.d.log.warn({ schedule: rec.id, tenant: rec.tenant, key }, 'the idempotency key of a fire time was taken by another submission; that flow stands for it');
        return flowId;
      }
    }
    const req = create(FlowRequestSchema, {
      flowId,
      tenant: rec.tenant,
      flow: sub.flow,
      inputJson: enc.encode(JSON.stringify(sub.input)),
      callbackUrl: sub.callbackUrl ?? '',
      idempotencyKey: key,
      deadlineMs: sub.deadlineMs ?? 0,
      metadata,
      submittedAtMs: BigInt(Date.now()),
      priority: sub.priority ?? 0,
    });
    const h = natsHeaders();
    h.set('Content-Type', INGEST_CONTENT_TYPE);
    h.set('Jetflow-Flow-Id', flowId);
    if (sub.priority) h.set('Jetflow-Priority', String(sub.priority));
    await this.d.pub.publish(submitSubject(rec.tenant, flowId), toBinary(FlowRequestSchema, req), { msgId: `${rec.tenant}:${key}`, headers: h });
    return flowId;
  }
}
