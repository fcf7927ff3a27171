/**
 * Whether a NATS / JetStream error is worth another try with the same request: nobody answered in time,
 * no responders, or JetStream said it is temporarily unavailable. That is what clients see for the few
 * seconds a replicated stream (or the cluster's meta leader) is being re-elected after a node died, and
 * while a busy cluster creates replicated streams and consumers.
 */
export function isTransientNatsError(err: unknown): boolean {
  const e = err as { code?: string; message?: string; api_error?: { code?: number } } | undefined;
  if (!e) return false;
  if (e.code === 'TIMEOUT' || e.code === '503' || e.api_error?.code === 503) return true;
  return /timeout|timed out|no responders|temporarily unavailable/i.test(e.message ?? '');
}
