import { performance } from 'node:perf_hooks';
import type { NatsConnection } from 'nats';
import { SERVICES } from '@jetflow/stack';

/** What JetStream has stored and what the services exchanged, at one instant. */
export interface StoreSnapshot {
  at: number;
  /** last_seq per stream (JETFLOW_* and the KV buckets' KV_*): every message ever stored. */
  streams: Record<string, number>;
  /** Core NATS messages in and out per service (summed over its connections), from /connz. */
  conns: Record<string, { in: number; out: number }>;
  /** KV reads seen so far (direct and msg gets of KV_* streams). */
  reads: number;
}

/** Counts KV reads: they are requests, not stored messages, so the driver listens to the API subjects. */
export function countKvReads(nc: NatsConnection): { n: number } {
  const reads = { n: 0 };
  for (const subj of ['$JS.API.DIRECT.GET.>', '$JS.API.STREAM.MSG.GET.>']) {
    nc.subscribe(subj, { callback: (_e, m) => (m.subject.includes('.KV_') ? reads.n++ : undefined) });
  }
  return reads;
}

export async function storeSnapshot(nc: NatsConnection, monitor: string, reads: { n: number }): Promise<StoreSnapshot> {
  const jsm = await nc.jetstreamManager();
  const streams: Record<string, number> = {};
  const lister = jsm.streams.list();
  for await (const s of lister) {
    if (s.config.name.startsWith('JETFLOW_') || s.config.name.startsWith('KV_')) streams[s.config.name] = s.state.last_seq;
  }
  const conns: Record<string, { in: number; out: number }> = {};
  try {
    const cz = (await (await fetch(`${monitor}/connz?limit=4096`)).json()) as { connections?: Array<{ name?: string; in_msgs: number; out_msgs: number }> };
    for (const c of cz.connections ?? []) {
      const svc = SERVICES.find((s) => c.name?.startsWith(s));
      if (!svc) continue;
      const cur = (conns[svc] ??= { in: 0, out: 0 });
      cur.in += c.in_msgs;
      cur.out += c.out_msgs;
    }
  } catch {
    // monitoring endpoint unavailable: leave empty
  }
  return { at: performance.now(), streams, conns, reads: reads.n };
}

export interface StoreDelta {
  /** Messages stored per flow, per stream with any. */
  perStream: Record<string, number>;
  jsMsgsPerFlow: number;
  kvWritesPerFlow: number;
  kvReadsPerFlow: number;
  natsMsgsPerFlow: Record<string, { in: number; out: number }>;
}

/** Stored messages (last_seq deltas), KV writes (KV_* deltas), KV reads and core messages, divided by `flows`. */
export function storeDelta(a: StoreSnapshot, b: StoreSnapshot, flows: number): StoreDelta {
  const n = Math.max(1, flows);
  const perStream: Record<string, number> = {};
  let js = 0;
  let kv = 0;
  for (const [k, v] of Object.entries(b.streams)) {
    const d = v - (a.streams[k] ?? 0);
    if (d > 0) perStream[k] = r2(d / n);
    if (k.startsWith('KV_')) kv += d;
    else js += d;
  }
  const natsMsgsPerFlow: Record<string, { in: number; out: number }> = {};
  for (const [k, v] of Object.entries(b.conns)) {
    const p = a.conns[k] ?? { in: 0, out: 0 };
    natsMsgsPerFlow[k] = { in: Math.round(((v.in - p.in) / n) * 10) / 10, out: Math.round(((v.out - p.out) / n) * 10) / 10 };
  }
  return { perStream, jsMsgsPerFlow: r2(js / n), kvWritesPerFlow: r2(kv / n), kvReadsPerFlow: r2((b.reads - a.reads) / n), natsMsgsPerFlow };
}

const r2 = (x: number) => Math.round(x * 100) / 100;
