import { JetflowError, ErrorCodes } from '@jetflow/errors';

/** Per tenant: the submission rate (token bucket) and the flows in flight it may have. */
export interface QuotaLimits {
  of(tenant: string): { rps: number; burst: number; inflight: number };
}

/** What the orchestrators last reported, per tenant (adapters/tenant-load.ts): flows running and flows queued. */
export interface InflightView {
  inflight(tenant: string): number;
}

interface Bucket {
  tokens: number;
  at: number;
}

/**
 * The per-tenant limits of a submission, checked before anything else it costs (validation, KV, publish).
 *
 * Requests per second: a token bucket per tenant in this replica (`burst` tokens, refilled at `rps` per
 * second); N ingest replicas behind a balancer let a tenant through N times as fast. Kept per replica on
 * purpose: a shared bucket would put a broker round trip on every submission.
 *
 * Flows in flight: accepted and not finished, across every door and replica: the orchestrators' reports
 * (running, and waiting in the ingest stream; at most ~1 s old) plus what this replica accepted since the
 * last freshly measured queued count. Past it, 429 until flows end.
 */
export class TenantQuota {
  private readonly buckets = new Map<string, Bucket>();
  /** Accepted here since the last report reached this replica. */
  private readonly recent = new Map<string, number>();

  constructor(
    private readonly limits: QuotaLimits,
    private readonly view: InflightView,
    private readonly now: () => number = Date.now,
  ) {}

  /** Throws quota_exceeded (429 / RESOURCE_EXHAUSTED, with retry-after) when the tenant is past a limit. */
  check(tenant: string): void {
    const l = this.limits.of(tenant);
    if (l.inflight !== Infinity) {
      const n = this.view.inflight(tenant) + (this.recent.get(tenant) ?? 0);
      if (n >= l.inflight)
        throw new JetflowError(ErrorCodes.QUOTA_EXCEEDED, `tenant "${tenant}" has ${n} flows in flight (accepted and not finished), its limit; retry when some have finished`, {
          retryAfterMs: 1_000,
        });
    }
    if (l.rps === Infinity) return;
    const now = this.now();
    let b = this.buckets.get(tenant);
    if (!b) this.buckets.set(tenant, (b = { tokens: l.burst, at: now }));
    b.tokens = Math.min(l.burst, b.tokens + ((now - b.at) / 1000) * l.rps);
    b.at = now;
    if (b.tokens < 1) {
      const waitMs = ((1 - b.tokens) / l.rps) * 1000;
      throw new JetflowError(
        ErrorCodes.QUOTA_EXCEEDED,
        `tenant "${tenant}" is past its limit of ${l.rps} submissions per second (bursts of ${l.burst}); retry after ${Math.max(1, Math.ceil(waitMs / 1000))} s`,
        { retryAfterMs: waitMs },
      );
    }
    b.tokens -= 1;
  }

  /** A submission of the tenant was accepted (it counts as in flight until a report includes it). */
  accepted(tenant: string): void {
    this.recent.set(tenant, (this.recent.get(tenant) ?? 0) + 1);
  }

  /** A report with freshly measured queued counts came: they include what was accepted before it. */
  reported(): void {
    this.recent.clear();
  }
}
