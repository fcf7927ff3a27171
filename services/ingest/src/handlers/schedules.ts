import { JetflowError, ErrorCodes, invalid } from '@jetflow/errors';
import { type FlowRegistry, newScheduleRecord, parseScheduleRecord, scheduleKey, scheduleView, setPaused, validateSchedule, SCHEDULE_ID_RE, type ScheduleRecord } from '@jetflow/flows';

/** What the schedule handlers need from KV jetflow_schedules (adapters/schedule-routes.ts implements it over JetStream). */
export interface ScheduleStore {
  get(key: string): Promise<{ value: string; revision: number } | undefined>;
  /** Fails with a compare-and-set conflict (isCasConflict) when the key exists. */
  create(key: string, value: string): Promise<number>;
  /** Fails with a compare-and-set conflict when the key changed since `revision`. */
  update(key: string, value: string, revision: number): Promise<number>;
  delete(key: string): Promise<void>;
  /** Keys under `<prefix>.`. */
  keys(prefix: string): Promise<string[]>;
}

export interface ScheduleHandlersDeps {
  store: ScheduleStore;
  registry: FlowRegistry;
  checkCallbackUrl?: (url: string) => string | undefined;
  isConflict: (err: unknown) => boolean;
}

/** Most schedules one tenant may have. */
export const MAX_SCHEDULES_PER_TENANT = 1_000;
/** Largest schedule record (its submission inline): well under a NATS message's limit; larger inputs belong in a flow of their own. */
export const MAX_SCHEDULE_BYTES = 256 * 1024;

/** The schedules API (README, "Schedules"): tenant-scoped, each record under `<tenant>.<id>`. */
export class ScheduleHandlers {
  constructor(private readonly d: ScheduleHandlersDeps) {}

  /** Creates a schedule; the same body again (a retried request) answers the existing one, another body 409. */
  async create(tenant: string, body: unknown) {
    const now = Date.now();
    const spec = validateSchedule(body, { registry: this.d.registry, ...(this.d.checkCallbackUrl ? { checkCallbackUrl: this.d.checkCallbackUrl } : {}), now });
    const key = scheduleKey(tenant, spec.id);
    const existing = await this.read(key);
    if (existing) {
      const same = JSON.stringify([existing.cron, existing.timezone, existing.overlap, existing.submission]) === JSON.stringify([spec.cron, spec.timezone, spec.overlap, spec.submission]);
      if (same) return { created: false, schedule: scheduleView(existing) };
      throw new JetflowError(ErrorCodes.CONFLICT, `schedule "${spec.id}" exists with another definition; delete it first`);
    }
    if ((await this.d.store.keys(tenant)).length >= MAX_SCHEDULES_PER_TENANT)
      throw new JetflowError(ErrorCodes.INVALID_ARGUMENT, `a tenant may have at most ${MAX_SCHEDULES_PER_TENANT} schedules`, { details: [{ path: 'id', message: 'too many schedules' }] });
    const rec = newScheduleRecord(tenant, spec, now);
    const json = JSON.stringify(rec);
    if (Buffer.byteLength(json) > MAX_SCHEDULE_BYTES) throw invalid([{ path: 'submission', message: `a schedule holds at most ${MAX_SCHEDULE_BYTES / 1024} KiB (its submission inline)` }]);
    try {
      await this.d.store.create(key, json);
    } catch (err) {
      if (this.d.isConflict(err)) throw new JetflowError(ErrorCodes.CONFLICT, `schedule "${spec.id}" was created at the same moment by another request`);
      throw err;
    }
    return { created: true, schedule: scheduleView(rec) };
  }

  async list(tenant: string) {
    const keys = (await this.d.store.keys(tenant)).sort();
    const recs = await Promise.all(keys.map((k) => this.read(k)));
    return { schedules: recs.filter((r): r is ScheduleRecord => !!r && r.tenant === tenant).map(scheduleView) };
  }

  async get(tenant: string, id: string) {
    return scheduleView(await this.must(tenant, id));
  }

  async delete(tenant: string, id: string) {
    await this.must(tenant, id);
    await this.d.store.delete(scheduleKey(tenant, id));
    return { id, deleted: true };
  }

  /** Pause or resume with a compare-and-set (the firing replica updates the same record). */
  async setPaused(tenant: string, id: string, paused: boolean) {
    for (let attempt = 0; ; attempt++) {
      const key = scheduleKey(tenant, id);
      const e = SCHEDULE_ID_RE.test(id) ? await this.d.store.get(key) : undefined;
      const rec = e ? parseScheduleRecord(e.value) : undefined;
      if (!e || !rec || rec.tenant !== tenant) throw new JetflowError(ErrorCodes.NOT_FOUND, `schedule ${JSON.stringify(id.slice(0, 64))} not found`);
      if (rec.paused === paused) return scheduleView(rec);
      const next = setPaused(rec, paused, Date.now());
      try {
        await this.d.store.update(key, JSON.stringify(next), e.revision);
        return scheduleView(next);
      } catch (err) {
        if (!this.d.isConflict(err) || attempt >= 5) throw err;
      }
    }
  }

  private async read(key: string): Promise<ScheduleRecord | undefined> {
    const e = await this.d.store.get(key);
    return e ? parseScheduleRecord(e.value) : undefined;
  }

  private async must(tenant: string, id: string): Promise<ScheduleRecord> {
    const rec = SCHEDULE_ID_RE.test(id) ? await this.read(scheduleKey(tenant, id)) : undefined;
    if (!rec || rec.tenant !== tenant) throw new JetflowError(ErrorCodes.NOT_FOUND, `schedule ${JSON.stringify(id.slice(0, 64))} not found`);
    return rec;
  }
}
