import type { NatsConnection, Subscription } from 'nats';
import { ADMISSION_SUBJECTS, decodeLoad, type AdmissionLoad } from '@jetflow/messaging';
import type { Logger } from '@jetflow/logging';
import type { InflightView } from '../handlers/quota.js';

/**
 * Flows in flight per tenant, from the orchestrator replicas' reports (jetflow.admission.load, every 500 ms
 * from each): what each one runs, plus what waits in the ingest stream (the newest report's count). A replica
 * silent for `ttlMs` stops counting (stopped, or its reports lost): its flows then count again once another
 * replica reports them, or drop out at their end.
 */
export class TenantLoad implements InflightView {
  private readonly reports = new Map<string, { at: number; load: AdmissionLoad }>();
  private total = new Map<string, number>();
  /** When the oldest report counted in `total` expires. */
  private expiresAt = Infinity;
  private sub: Subscription | undefined;
  private bad = 0;

  constructor(private readonly o: { ttlMs?: number; now?: () => number; log?: Logger; onReport?: (load: AdmissionLoad) => void } = {}) {}

  /** Listens to the reports (core NATS; ingest may subscribe to jetflow.admission.load only). */
  start(nc: NatsConnection): this {
    this.sub = nc.subscribe(ADMISSION_SUBJECTS.load, {
      callback: (err, m) => {
        if (err) return;
        try {
          this.report(decodeLoad(m.data));
        } catch (e) {
          if (this.bad++ % 100 === 0) this.o.log?.warn({ subject: m.subject, err: (e as Error).message, seen: this.bad }, 'ignored a malformed admission report');
        }
      },
    });
    return this;
  }

  report(load: AdmissionLoad): void {
    this.reports.set(load.instance, { at: (this.o.now ?? Date.now)(), load });
    this.recount();
    this.o.onReport?.(load);
  }

  private recount() {
    const now = (this.o.now ?? Date.now)();
    const ttl = this.o.ttlMs ?? 3_000;
    const total = new Map<string, number>();
    let newest: { at: number; load: AdmissionLoad } | undefined;
    this.expiresAt = Infinity;
    for (const [id, r] of this.reports) {
      if (r.at + ttl < now) {
        this.reports.delete(id);
        continue;
      }
      this.expiresAt = Math.min(this.expiresAt, r.at + ttl);
      for (const [t, n] of r.load.running) total.set(t, (total.get(t) ?? 0) + n);
      if (!newest || r.at >= newest.at) newest = r;
    }
    for (const [t, n] of newest?.load.queued ?? []) total.set(t, (total.get(t) ?? 0) + n);
    this.total = total;
  }

  inflight(tenant: string): number {
    if ((this.o.now ?? Date.now)() > this.expiresAt) this.recount();
    return this.total.get(tenant) ?? 0;
  }

  stop(): void {
    this.sub?.unsubscribe();
  }
}
