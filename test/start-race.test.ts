/**
 * Services start in any order, together, every time: every service provisions the whole topology at
 * start, so on a fresh broker they all create the same streams, consumers and buckets at once. Whoever
 * is first wins and the others must take what it created as created (CI once saw the dataset-generator
 * exit with "subjects overlap with an existing stream", 10065, while another service created it).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { connect, nanos, type NatsConnection } from 'nats';
import { BUCKETS, CONSUMERS, STREAMS, consumerConfigs, provisionTopology, streamConfigs, type TopologyOptions } from '@jetflow/messaging';
import { SERVICES, Stack, waitForHttp } from '@jetflow/stack';
import { TEST_API_KEY, freePort, startNatsCluster, startNatsServer, testAuthDefault, testNatsAuth, waitForConsumers, type TestNatsAuth } from '@jetflow/testing';

const topology: TopologyOptions = {
  partitions: 8,
  taskSubjects: ['jetflow.task.dataset.text', 'jetflow.task.dataset.numbers', 'jetflow.task.analyst.stats', 'jetflow.task.analyst.anomalies'],
};

/** Every stream, consumer and bucket of the topology is there. */
async function assertProvisioned(nc: NatsConnection, o: TopologyOptions, replicas = 1) {
  const jsm = await nc.jetstreamManager();
  for (const s of [...Object.values(STREAMS), ...Object.values(BUCKETS).map((b) => `KV_${b}`)]) {
    assert.equal((await jsm.streams.info(s)).config.num_replicas, replicas, s);
  }
  for (const c of consumerConfigs(o)) assert.equal((await jsm.consumers.info(c.stream, c.config.durable_name)).config.durable_name, c.config.durable_name);
}

/** Runs every provisioner at the same instant and says which failed, and how. */
async function provisionTogether(conns: NatsConnection[], o: TopologyOptions) {
  const results = await Promise.allSettled(conns.map((nc) => provisionTopology(nc, { ...o, provisionTimeoutMs: 30_000 })));
  const failed = results.flatMap((r, i) => (r.status === 'rejected' ? [`connection ${i}: ${(r.reason as Error).message}`] : []));
  assert.deepEqual(failed, [], 'every concurrent provisioning resolves');
}

type Fn = (...args: unknown[]) => unknown;

/**
 * The connection as provisioning sees it, with `rival` run just before each stream or consumer create
 * it sends: another service (a connection of its own to the same broker) gets there first, in exactly
 * the window between provisioning's read ("not there") and its create. The broker answers everything.
 */
function racedBy(nc: NatsConnection, rival: (kind: 'stream' | 'consumer', name: string) => Promise<void>): NatsConnection {
  const hook = <T extends object>(api: T, kind: 'stream' | 'consumer', nameOf: (args: unknown[]) => string): T =>
    new Proxy(api, {
      get(t, p) {
        const v = Reflect.get(t, p, t) as unknown;
        if (typeof v !== 'function') return v;
        const f = v as Fn;
        if (p !== 'add') return f.bind(t);
        return async (...args: unknown[]) => {
          await rival(kind, nameOf(args));
          return f.apply(t, args);
        };
      },
    });
  return new Proxy(nc, {
    get(t, p) {
      const v = Reflect.get(t, p, t) as unknown;
      if (p === 'jetstreamManager') {
        return async (...args: Parameters<NatsConnection['jetstreamManager']>) => {
          const jsm = await t.jetstreamManager(...args);
          const streams = hook(jsm.streams, 'stream', (a) => (a[0] as { name: string }).name);
          const consumers = hook(jsm.consumers, 'consumer', (a) => (a[1] as { durable_name: string }).durable_name);
          return new Proxy(jsm, { get: (j, q) => (q === 'streams' ? streams : q === 'consumers' ? consumers : (Reflect.get(j, q, j) as unknown)) });
        };
      }
      return typeof v === 'function' ? (v as Fn).bind(t) : v;
    },
  });
}

describe('provisioning from many connections at once', () => {
  test('a stream or consumer another service creates between our read and our create counts as created, and what may change is then updated in place', async () => {
    const server = await startNatsServer();
    const nc = await connect({ servers: server.url });
    const other = await connect({ servers: server.url });
    try {
      const jsm = await other.jetstreamManager();
      const events = streamConfigs(topology).find((c) => c.name === STREAMS.events)!;
      const partition0 = consumerConfigs(topology).find((c) => c.config.durable_name === CONSUMERS.results(0))!;
      const raced: string[] = [];
      const rival = async (kind: 'stream' | 'consumer', name: string) => {
        // An older release's settings: our create then finds the name taken with another config.
        if (kind === 'stream' && name === STREAMS.events) await jsm.streams.add({ ...events, max_age: nanos(7_200_000) });
        else if (kind === 'consumer' && name === CONSUMERS.results(0)) await jsm.consumers.add(partition0.stream, { ...partition0.config, ack_wait: nanos(30_000) });
        else return;
        raced.push(name);
      };
      await provisionTopology(racedBy(nc, rival), topology);
      assert.deepEqual(raced.sort(), [STREAMS.events, CONSUMERS.results(0)].sort(), 'both races happened');
      assert.equal((await jsm.streams.info(STREAMS.events)).config.max_age, events.max_age, 'our max_age applied to the stream the other service created');
      assert.equal((await jsm.consumers.info(partition0.stream, CONSUMERS.results(0))).config.ack_wait, partition0.config.ack_wait, 'our ack_wait applied to its consumer');
      await assertProvisioned(nc, topology);
    } finally {
      await other.close();
      await nc.close();
      await server.stop();
    }
  });

  test('six connections on a fresh nats-server, eight rounds: all resolve, everything exists once', async () => {
    for (let round = 0; round < 8; round++) {
      const server = await startNatsServer();
      const conns = await Promise.all(Array.from({ length: 6 }, () => connect({ servers: server.url })));
      try {
        await provisionTogether(conns, topology);
        await assertProvisioned(conns[0]!, topology);
      } finally {
        await Promise.all(conns.map((c) => c.close()));
        await server.stop();
      }
    }
  });

  test('six connections spread over a three-node cluster, R3: all resolve', async () => {
    const cluster = await startNatsCluster({ size: 3 });
    const conns = await Promise.all(Array.from({ length: 6 }, (_, i) => connect({ servers: [cluster.urls[i % 3]!] })));
    try {
      await provisionTogether(conns, { ...topology, replicas: 3 });
      await assertProvisioned(conns[0]!, topology, 3);
    } finally {
      await Promise.all(conns.map((c) => c.close()));
      await cluster.stop();
    }
  });

  test("a stream that is not Jetflow's holding Jetflow's subjects is named in the error, not retried for a minute", async () => {
    const server = await startNatsServer();
    const nc = await connect({ servers: server.url });
    try {
      const jsm = await nc.jetstreamManager();
      await jsm.streams.add({ name: 'SOMEONE_ELSES', subjects: ['jetflow.task.dataset.>'] });
      const t0 = Date.now();
      await assert.rejects(provisionTopology(nc, topology), (err: Error) => {
        assert.match(err.message, /stream JETFLOW_TASKS: its subjects jetflow\.task\.> overlap with those of stream SOMEONE_ELSES/);
        return true;
      });
      assert.ok(Date.now() - t0 < 10_000, `refused at once (${Date.now() - t0} ms)`);
    } finally {
      await nc.close();
      await server.stop();
    }
  });
});

const RACE_ENV = { JETFLOW_API_KEYS: `default:${TEST_API_KEY}` };
/** As the harness: the services as their roles (the provisioning race under the permissions they deploy with), unless JETFLOW_TEST_NATS_AUTH=0. */
const raceAuth = (env: Record<string, string> = {}) => (testAuthDefault() ? testNatsAuth({ ...RACE_ENV, ...env }) : undefined);
const serverOpts = (auth: TestNatsAuth | undefined) => (auth ? { config: auth.config, connect: auth.options('admin') } : {});

/** The four services as processes, started in the same instant; resolves once all are ready, fails as soon as one exits. */
async function startAllAtOnce(natsUrls: string[], env: Record<string, string> = {}, auth?: TestNatsAuth) {
  const httpPort = await freePort();
  const logDir = mkdtempSync(join(tmpdir(), 'jetflow-start-race-'));
  const stack = new Stack({
    env: {
      NATS_URL: natsUrls.join(','),
      JETFLOW_HTTP_PORT: String(httpPort),
      JETFLOW_GRPC_PORT: String(await freePort()),
      JETFLOW_HOST: '127.0.0.1',
      ...RACE_ENV,
      JETFLOW_CALLBACK_SECRETS: 'default:start-race-secret',
      JETFLOW_METRICS_PORT: '0',
      JETFLOW_TASK_MODE: 'noop',
      JETFLOW_HISTORY: 'off',
      LOG_LEVEL: 'info',
      ...env,
    },
    ...(auth ? { serviceEnv: Object.fromEntries(SERVICES.map((s) => [s, auth.env(s)])) } : {}),
    logDir,
  }).start();
  const exited = Promise.race(
    stack.procs.map(async (p) => {
      const code = await p.exited;
      let tail = '(no log)';
      try {
        tail = readFileSync(join(logDir, `${p.name}-${p.index}.log`), 'utf8')
          .split('\n')
          .slice(-12)
          .join('\n');
      } catch {
        // the log may not exist yet
      }
      return `${p.name} exited (${code ?? p.proc.signalCode}) during start:\n${tail}`;
    }),
  );
  let nc: NatsConnection | undefined;
  try {
    const ready = (async () => {
      await waitForHttp(`http://127.0.0.1:${httpPort}/readyz`, 60_000);
      nc = await connect({ servers: natsUrls, ...auth?.options('admin') });
      await waitForConsumers(nc, 60_000);
      return undefined;
    })();
    const failure = await Promise.race([ready, exited]);
    assert.equal(failure, undefined, failure);
    for (const p of stack.procs) assert.ok(p.proc.exitCode === null && p.proc.signalCode === null, `${p.name} is running`);
  } finally {
    await nc?.close();
    await stack.stop();
  }
}

describe('the four services started together', () => {
  test('on a fresh nats-server, eight rounds: none exits, all become ready', async () => {
    const auth = raceAuth();
    for (let round = 0; round < 8; round++) {
      const server = await startNatsServer(serverOpts(auth));
      try {
        await startAllAtOnce([server.url], {}, auth);
      } finally {
        await server.stop();
      }
    }
  });

  test('on a fresh three-node cluster with JETFLOW_REPLICAS=3, three rounds: none exits, all become ready', async () => {
    const auth = raceAuth({ JETFLOW_REPLICAS: '3' });
    for (let round = 0; round < 3; round++) {
      const cluster = await startNatsCluster({ size: 3, ...serverOpts(auth) });
      try {
        await startAllAtOnce(cluster.urls, { JETFLOW_REPLICAS: '3' }, auth);
      } finally {
        await cluster.stop();
      }
    }
  });
});
