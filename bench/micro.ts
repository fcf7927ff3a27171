/**
 * The unit costs behind a flow: client CPU (this process) and nats-server CPU per operation for each
 * kind of operation the services perform, measured one kind at a time against a fresh nats-server.
 * Multiplied by the operations per flow (docs/PERFORMANCE.md) they explain where a flow's CPU goes.
 * Usage: node --import tsx bench/micro.ts [--n 20000] [--out micro.json]
 */
import { createHmac } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { Agent, createServer, request } from 'node:http';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { AckPolicy, DiscardPolicy, RetentionPolicy, StorageType, connect, headers as natsHeaders, nanos, type NatsConnection } from 'nats';
import { FlowRegistry, INSIGHTS, newFlowState, validateSubmission, applyResult } from '@jetflow/flows';
import { JetStreamPublisher, publishEvent, startPullLoop } from '@jetflow/messaging';
import { createLogger } from '@jetflow/logging';
import { TaskSchema, TaskResultSchema, TaskStatus } from '@jetflow/proto';
import { startNatsServer } from '@jetflow/testing';
import { cpuMs, findPid, selfCpuMs } from './proc.js';

export interface MicroResult {
  op: string;
  n: number;
  clientUs: number;
  serverUs: number;
  perSec: number;
}

const enc = new TextEncoder();

async function measure(name: string, n: number, serverPid: number | undefined, run: (n: number) => Promise<void>): Promise<MicroResult> {
  await run(Math.min(2_000, Math.ceil(n / 10))); // warm the JIT
  const c0 = selfCpuMs();
  const s0 = serverPid ? (cpuMs(serverPid) ?? 0) : 0;
  const t0 = performance.now();
  await run(n);
  const dt = performance.now() - t0;
  const r: MicroResult = {
    op: name,
    n,
    clientUs: Math.round((((selfCpuMs() - c0) * 1000) / n) * 10) / 10,
    serverUs: serverPid ? Math.round(((((cpuMs(serverPid) ?? 0) - s0) * 1000) / n) * 10) / 10 : 0,
    perSec: Math.round(n / (dt / 1000)),
  };
  process.stderr.write(`${name.padEnd(58)} client ${String(r.clientUs).padStart(6)} µs  server ${String(r.serverUs).padStart(6)} µs  ${r.perSec}/s\n`);
  return r;
}

/** Runs up to `window` async operations at once until n are done. */
async function pipelined(n: number, window: number, op: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < n) await op(next++);
  };
  await Promise.all(Array.from({ length: Math.min(window, n) }, lane));
}

function sampleTask() {
  const input = enc.encode(
    JSON.stringify({ records: Array.from({ length: 10 }, (_, i) => ({ id: `r${i}`, text: 'delivery late box damaged great product fast shipping', fields: { rating: 3, amount: 12.5 } })) }),
  );
  return create(TaskSchema, {
    flowId: 'f0123456789abcdefghijklmno',
    tenant: 'default',
    flow: 'insights',
    flowVersion: 1,
    stage: 1,
    task: 'sentiment',
    subject: 'jetflow.task.analyst.sentiment',
    inputJson: input,
    deps: ['text', 'features', 'embeddings'].map((t) => ({ task: t, status: 'succeeded', outputJson: enc.encode('{"noop":true}'), outputRef: '' })),
    softLimitMs: 5_000,
    hardLimitMs: 8_000,
    maxAttempts: 3,
    backoffInitialMs: 200,
    backoffMaxMs: 2_000,
    deadlineAtMs: BigInt(Date.now() + 10_000),
    dispatchedAtMs: BigInt(Date.now()),
  });
}

export async function runMicro(n = 20_000): Promise<MicroResult[]> {
  const server = await startNatsServer();
  const pid = findPid('nats-server', server.storeDir);
  const nc: NatsConnection = await connect({ servers: [server.url] });
  const out: MicroResult[] = [];
  try {
    const jsm = await nc.jetstreamManager();
    const js = nc.jetstream();
    const base = { storage: StorageType.File, num_replicas: 1, discard: DiscardPolicy.Old, duplicate_window: nanos(120_000) };
    await jsm.streams.add({ ...base, name: 'M_WORK', subjects: ['m.work.>'], retention: RetentionPolicy.Workqueue });
    await jsm.streams.add({ ...base, name: 'M_EVENTS', subjects: ['jetflow.event.>'], retention: RetentionPolicy.Limits, duplicate_window: nanos(1_000) });
    const task = sampleTask();
    const taskBytes = toBinary(TaskSchema, task);
    const pub = new JetStreamPublisher(nc);
    let id = 0;
    const loopCpu = new Map<string, number>();

    out.push(
      await measure(`JetStreamPublisher.publish (libs), ${taskBytes.length} B task, msg id`, n, pid, (k) =>
        pipelined(k, 1_000, () => pub.publish('m.work.a', taskBytes, { msgId: `p${++id}` })),
      ),
    );
    out.push(
      await measure('js.publish() (nats.js), same message', n, pid, (k) =>
        pipelined(k, 1_000, () => {
          const h = natsHeaders();
          h.set('Nats-Msg-Id', `j${++id}`);
          return js.publish('m.work.a', taskBytes, { headers: h });
        }),
      ),
    );
    out.push(
      await measure('consume + ack (pull consumer, nats.js consume())', n, pid, async (k) => {
        const name = `c${++id}`;
        await jsm.consumers.add('M_WORK', { durable_name: name, ack_policy: AckPolicy.Explicit, max_ack_pending: 10_000 });
        // Preload k messages outside the measured window is not possible here: measure publish+consume and subtract later.
        const c = await js.consumers.get('M_WORK', name);
        const msgs = await c.consume({ max_messages: 1_000 });
        let got = 0;
        for await (const m of msgs) {
          m.ack();
          if (++got >= k) break;
        }
        await jsm.consumers.delete('M_WORK', name).catch(() => undefined);
      }).then(async (r) => r),
    );
    // The consume measurement above drains what the publishes left; report it as "consume+ack of stored messages".
    out[out.length - 1]!.op = 'consume + ack of a stored message (consume())';

    const ev = { flowId: 'f0123456789abcdefghijklmno', flow: 'insights', type: 'task.succeeded', status: 'running', task: 'sentiment' };
    out.push(
      await measure('publishEvent (plain publish, stored by the events stream)', n, pid, async (k) => {
        for (let i = 0; i < k; i++) publishEvent(nc, 'default', ev);
        await nc.flush();
      }),
    );

    // The services' pull loop (libs/messaging/src/loop.ts) in both modes, handler = ack: the per-message
    // cost of 'fetch' (workers: a new pull request per batch of free slots) versus 'consume' (orchestrator).
    const log = createLogger('micro', 'warn');
    for (const [mode, concurrency] of [
      ['fetch', 4],
      ['consume', 4],
      ['consume', 512],
    ] as const) {
      out.push(
        await measure(`startPullLoop ${mode}, concurrency ${concurrency}: receive + ack`, n, pid, async (k) => {
          const name = `l${++id}`;
          const subject = `m.work.loop.${name}`;
          await jsm.consumers.add('M_WORK', { durable_name: name, ack_policy: AckPolicy.Explicit, max_ack_pending: 10_000, filter_subject: subject });
          // Published outside the timed part would be cleaner; the publish cost is known from the first line.
          await pipelined(k, 1_000, () => pub.publish(subject, taskBytes));
          const c0 = selfCpuMs();
          let got = 0;
          let done!: () => void;
          const all = new Promise<void>((r) => (done = r));
          const loop = startPullLoop({
            js,
            stream: 'M_WORK',
            consumer: name,
            concurrency,
            mode,
            log,
            handle: async (m) => {
              m.ack();
              if (++got === k) done();
            },
          });
          await all;
          await loop.stop();
          loopCpu.set(`${mode}/${concurrency}`, ((selfCpuMs() - c0) * 1000) / k);
          await jsm.consumers.delete('M_WORK', name).catch(() => undefined);
        }),
      );
      const last = out[out.length - 1]!;
      last.op += ` (receive+ack alone: ${Math.round(loopCpu.get(`${mode}/${concurrency}`)! * 10) / 10} µs client)`;
    }

    const kv = await js.views.kv('m_flows', { history: 1, ttl: 3_600_000 });
    const state = newFlowState(
      {
        flowId: 'f0123456789abcdefghijklmno',
        tenant: 'default',
        flow: 'insights',
        inputJson: new TextDecoder().decode(task.inputJson),
        callbackUrl: 'http://127.0.0.1:1/hook',
        metadata: { source: 'bench' },
        submittedAt: Date.now(),
      },
      INSIGHTS,
      Date.now(),
    );
    const stateBytes = enc.encode(JSON.stringify(state));
    const keys = 500;
    const rev = new Array<number>(keys).fill(0);
    out.push(
      await measure(`kv.create (nats.js), ${stateBytes.length} B state`, n, pid, (k) =>
        pipelined(k, keys, async () => {
          await kv.create(`k${++id}`, stateBytes);
        }),
      ),
    );
    for (let i = 0; i < keys; i++) rev[i] = await kv.put(`u${i}`, stateBytes);
    out.push(
      await measure('kv.update with CAS (nats.js)', n, pid, (k) => {
        let j = 0;
        return pipelined(k, keys, async () => {
          const key = j++ % keys;
          rev[key] = await kv.update(`u${key}`, stateBytes, rev[key]!);
        });
      }),
    );
    // One lane per key so no two updates of a key race.
    out.push(
      await measure('kv.get (nats.js, direct get)', n, pid, (k) => {
        let j = 0;
        return pipelined(k, 500, () => kv.get(`u${j++ % keys}`));
      }),
    );
    out.push(
      await measure('kv.put (nats.js)', n, pid, (k) => {
        let j = 0;
        return pipelined(k, keys, () => kv.put(`p${j++ % keys}`, stateBytes));
      }),
    );

    // CPU only, no server.
    out.push(
      await measure('protobuf toBinary(Task)', n, undefined, async (k) => {
        for (let i = 0; i < k; i++) toBinary(TaskSchema, task);
      }),
    );
    out.push(
      await measure('protobuf fromBinary(Task)', n, undefined, async (k) => {
        for (let i = 0; i < k; i++) fromBinary(TaskSchema, taskBytes);
      }),
    );
    const result = create(TaskResultSchema, {
      flowId: task.flowId,
      task: 'sentiment',
      stage: 1,
      status: TaskStatus.SUCCEEDED,
      outputJson: enc.encode('{"noop":true}'),
      attempts: 1,
      startedAtMs: 1n,
      finishedAtMs: 2n,
      worker: 'analyst-0',
    });
    out.push(
      await measure('protobuf toBinary+fromBinary(TaskResult)', n, undefined, async (k) => {
        for (let i = 0; i < k; i++) fromBinary(TaskResultSchema, toBinary(TaskResultSchema, result));
      }),
    );
    out.push(
      await measure('FlowState JSON.stringify + encode', n, undefined, async (k) => {
        for (let i = 0; i < k; i++) enc.encode(JSON.stringify(state));
      }),
    );
    out.push(
      await measure('FlowState structuredClone', n, undefined, async (k) => {
        for (let i = 0; i < k; i++) structuredClone(state);
      }),
    );
    const def = INSIGHTS;
    out.push(
      await measure('applyResult on a cloned state', n, undefined, async (k) => {
        for (let i = 0; i < k; i++)
          applyResult(structuredClone(state), def, { task: 'text', succeeded: true, output: { noop: true }, attempts: 1, token: state.tasks.text!.token! }, Date.now());
      }),
    );
    const registry = new FlowRegistry([INSIGHTS]);
    const body = JSON.parse(new TextDecoder().decode(task.inputJson)) as unknown;
    const sub = { flow: 'insights', input: body, callbackUrl: 'http://127.0.0.1:1/hook', metadata: { source: 'bench' } };
    out.push(
      await measure('validateSubmission (zod), 10 records', n, undefined, async (k) => {
        for (let i = 0; i < k; i++) validateSubmission(sub, { registry });
      }),
    );
    out.push(
      await measure('HMAC-SHA256 callback signature, 1 KB body', n, undefined, async (k) => {
        const b = 'x'.repeat(1_000);
        for (let i = 0; i < k; i++) createHmac('sha256', 's').update(b).digest('hex');
      }),
    );
    out.push(
      await measure('setTimeout + clearTimeout (per publish in JetStreamPublisher)', n, undefined, async (k) => {
        for (let i = 0; i < k; i++) clearTimeout(setTimeout(() => undefined, 2_000));
      }),
    );

    // HTTP callback POST with fetch (undici) to a local server; the server's share is in this process too.
    const srv = createServer((req, res) => {
      req.resume();
      req.on('end', () => res.end('ok'));
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    const addr = srv.address();
    const url = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}/hook`;
    const cbBody = JSON.stringify({ flowId: task.flowId, status: 'succeeded', results: { a: 1 }, pad: 'x'.repeat(800) });
    out.push(
      await measure('fetch POST callback (client + local http server)', Math.min(n, 5_000), undefined, (k) =>
        pipelined(k, 64, async () => {
          const r = await fetch(url, { method: 'POST', body: cbBody, headers: { 'content-type': 'application/json' } });
          await r.body?.cancel();
        }),
      ),
    );
    const agent = new Agent({ keepAlive: true, maxSockets: 64 });
    const post = () =>
      new Promise<void>((resolve, reject) => {
        const req = request(url, { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(cbBody) } }, (res) => {
          res.resume();
          res.on('end', () => resolve());
        });
        req.on('error', reject);
        req.end(cbBody);
      });
    out.push(await measure('node:http request POST, keep-alive agent (same server)', Math.min(n, 5_000), undefined, (k) => pipelined(k, 64, post)));
    agent.destroy();
    srv.closeAllConnections();
    srv.close();
    pub.close();
  } finally {
    await nc.close();
    await server.stop();
  }
  return out;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { values } = parseArgs({ options: { n: { type: 'string' }, out: { type: 'string' } } });
  const r = await runMicro(Number(values.n ?? 20_000));
  if (values.out) writeFileSync(values.out, `${JSON.stringify(r, null, 2)}\n`);
  process.exit(0);
}
