import type { KV, NatsConnection } from 'nats';

/**
 * Opens a provisioned KV bucket for reads and writes through the nats client.
 *
 * A direct get is answered by any replica of the bucket's stream, which spreads reads over the cluster
 * but may be behind the leader: by replication lag always, and on nats-server before 2.9.17 by a whole
 * catch-up, since a restarted replica answers before it has caught up (nats-server#4162; the stack
 * here runs Debian's 2.9.10). So reads that decide a compare-and-set (`leader: true`: saga state,
 * leases) always go to the stream leader, and other reads do too on servers with that bug.
 */
export function openKv(nc: NatsConnection, bucket: string, o: { leader?: boolean } = {}): Promise<KV> {
  const direct = !o.leader && directGetsCatchUp(nc.info?.version);
  return nc.jetstream().views.kv(bucket, { bindOnly: true, allow_direct: direct });
}

/** Whether a server of this version answers direct gets only once caught up (2.9.17 and later). */
export function directGetsCatchUp(version: string | undefined): boolean {
  const m = /^v?(\d+)\.(\d+)\.(\d+)/.exec(version ?? '');
  if (!m) return false;
  const [maj, min, patch] = [Number(m[1]), Number(m[2]), Number(m[3])];
  return maj > 2 || (maj === 2 && (min > 9 || (min === 9 && patch >= 17)));
}
