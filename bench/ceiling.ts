import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { AckPolicy, DiscardPolicy, RetentionPolicy, StorageType, createInbox, headers as natsHeaders, nanos, type NatsConnection } from 'nats';

export interface CeilingResult {
  /** Messages published (PubAck received), delivered to a pull consumer and acked, per second. */
  jsPubConsumePerSec: number;
  /** KV compare-and-set updates (PubAck received) per second. */
  kvUpdatePerSec: number;
  messageBytes: number;
  seconds: number;
  /** CPU ms per operation of the server and of the bench client (the client runs in this process). */
  jsCpuUsPerMsg: { server: number; client: number };
  kvCpuUsPerOp: { server: number; client: number };
}

const dec = new TextDecoder();

/**
 * A lean pipelined JetStream publisher: plain publishes whose replies go to one shared inbox
 * subscription, as libs/messaging's JetStreamPublisher does, without its per-message timer and
 * promise, so the measured rate is the server's and the machine's, not the client's bookkeeping.
 */
class RawPipeline {
  private readonly prefix = createInbox();
  private next = 0;
  inFlight = 0;
  acked = 0;
  errors = 0;
  onAck: ((id: number, seq: number) => void) | undefined;
  private readonly sub;
  constructor(private readonly nc: NatsConnection) {
    this.sub = nc.subscribe(`${this.prefix}.*`, {
      callback: (_e, m) => {
        this.inFlight--;
        const txt = dec.decode(m.data);
        // {"stream":"X","seq":N} or {"error":{...}}
        const at = txt.indexOf('"seq":');
        if (txt.includes('"error"') || at < 0) {
          this.errors++;
          this.onAck?.(Number(m.subject.slice(this.prefix.length + 1)), -1);
          return;
        }
        this.acked++;
        this.onAck?.(Number(m.subject.slice(this.prefix.length + 1)), parseInt(txt.slice(at + 6), 10));
      },
    });
  }
  publish(subject: string, data: Uint8Array, hdrs?: ReturnType<typeof natsHeaders>): number {
    const id = ++this.next;
    this.inFlight++;
    this.nc.publish(subject, data, { reply: `${this.prefix}.${id}`, ...(hdrs ? { headers: hdrs } : {}) });
    return id;
  }
  close() {
    this.sub.unsubscribe();
  }
}

export interface CeilingOptions {
  nc: NatsConnection;
  seconds: number;
  messageBytes?: number;
  /** Duplicate window of the ceiling stream: the services' internal streams use 2 min. */
  duplicateWindowMs?: number;
  serverCpuMs: () => number | undefined;
  clientCpuMs: () => number;
  log?: (s: string) => void;
}

/**
 * The machine's JetStream ceiling with the same server: (1) publish-then-consume through one
 * file-storage work-queue stream with Nats-Msg-Id dedupe, pipelined, a pull consumer acking each
 * message; (2) KV updates with compare-and-set on a bucket configured like the flows bucket.
 */
export async function measureCeiling(o: CeilingOptions): Promise<CeilingResult> {
  const size = o.messageBytes ?? 512;
  const js = await measureJs(o, size);
  const kv = await measureKv(o, size);
  return { jsPubConsumePerSec: js.rate, kvUpdatePerSec: kv.rate, messageBytes: size, seconds: o.seconds, jsCpuUsPerMsg: js.cpu, kvCpuUsPerOp: kv.cpu };
}

async function measureJs(o: CeilingOptions, size: number) {
  const jsm = await o.nc.jetstreamManager();
  const stream = 'BENCH_CEILING';
  const subject = 'bench.ceiling.x';
  await jsm.streams.delete(stream).catch(() => undefined);
  await jsm.streams.add({
    name: stream,
    subjects: [subject],
    storage: StorageType.File,
    retention: RetentionPolicy.Workqueue,
    discard: DiscardPolicy.Old,
    num_replicas: 1,
    duplicate_window: nanos(o.duplicateWindowMs ?? 120_000),
  });
  await jsm.consumers.add(stream, { durable_name: 'ceiling', ack_policy: AckPolicy.Explicit, max_ack_pending: 20_000, ack_wait: nanos(30_000) });
  const consumer = await o.nc.jetstream().consumers.get(stream, 'ceiling');
  let consumed = 0;
  const msgs = await consumer.consume({ max_messages: 2_000 });
  const consuming = (async () => {
    for await (const m of msgs) {
      m.ack();
      consumed++;
    }
  })();
  const pipe = new RawPipeline(o.nc);
  const payload = new Uint8Array(size).fill(120);
  const window = 2_000;
  let stop = false;
  let n = 0;
  const pump = () => {
    while (!stop && pipe.inFlight < window) {
      const h = natsHeaders();
      h.set('Nats-Msg-Id', `c${++n}`);
      pipe.publish(subject, payload, h);
    }
  };
  pipe.onAck = () => {
    if (pipe.inFlight < window / 2) pump();
  };
  // Warm up for a fraction of the run, then measure a steady interval.
  pump();
  await sleep(Math.min(1_000, o.seconds * 200));
  const c0 = consumed;
  const s0 = o.serverCpuMs() ?? 0;
  const k0 = o.clientCpuMs();
  const t0 = performance.now();
  await sleep(o.seconds * 1000);
  const dt = (performance.now() - t0) / 1000;
  const done = consumed - c0;
  const server = ((o.serverCpuMs() ?? 0) - s0) * 1000;
  const client = (o.clientCpuMs() - k0) * 1000;
  stop = true;
  const until = performance.now() + 5_000;
  while (pipe.inFlight > 0 && performance.now() < until) await sleep(20);
  msgs.stop();
  await consuming.catch(() => undefined);
  pipe.close();
  await jsm.streams.delete(stream).catch(() => undefined);
  o.log?.(`ceiling: JetStream publish+consume ${Math.round(done / dt)} msg/s (${pipe.errors} publish errors)`);
  return { rate: done / dt, cpu: { server: server / Math.max(1, done), client: client / Math.max(1, done) } };
}

async function measureKv(o: CeilingOptions, size: number) {
  const bucket = 'bench_ceiling';
  const js = o.nc.jetstream();
  const jsm = await o.nc.jetstreamManager();
  await jsm.streams.delete(`KV_${bucket}`).catch(() => undefined);
  // Same settings as the flows bucket (topology.ts bucketConfigs): history 1, a TTL, file storage, R1.
  await js.views.kv(bucket, { history: 1, ttl: 24 * 3_600_000, replicas: 1 });
  const keys = 1_000;
  const rev = new Array<number>(keys).fill(0);
  const keyOf = new Map<number, number>();
  const pipe = new RawPipeline(o.nc);
  const payload = new Uint8Array(size).fill(121);
  let stop = false;
  let ops = 0;
  let conflicts = 0;
  const send = (k: number) => {
    const h = natsHeaders();
    h.set('Nats-Expected-Last-Subject-Sequence', String(rev[k]));
    keyOf.set(pipe.publish(`$KV.${bucket}.k${k}`, payload, h), k);
  };
  pipe.onAck = (id, seq) => {
    const k = keyOf.get(id)!;
    keyOf.delete(id);
    if (seq < 0) conflicts++;
    else {
      rev[k] = seq;
      ops++;
    }
    if (!stop) send(k);
  };
  for (let k = 0; k < keys; k++) send(k);
  await sleep(Math.min(1_000, o.seconds * 200));
  const c0 = ops;
  const s0 = o.serverCpuMs() ?? 0;
  const k0 = o.clientCpuMs();
  const t0 = performance.now();
  await sleep(o.seconds * 1000);
  const dt = (performance.now() - t0) / 1000;
  const done = ops - c0;
  const server = ((o.serverCpuMs() ?? 0) - s0) * 1000;
  const client = (o.clientCpuMs() - k0) * 1000;
  stop = true;
  const until = performance.now() + 5_000;
  while (pipe.inFlight > 0 && performance.now() < until) await sleep(20);
  pipe.close();
  await jsm.streams.delete(`KV_${bucket}`).catch(() => undefined);
  o.log?.(`ceiling: KV CAS updates ${Math.round(done / dt)} op/s (${conflicts} conflicts)`);
  return { rate: done / dt, cpu: { server: server / Math.max(1, done), client: client / Math.max(1, done) } };
}
