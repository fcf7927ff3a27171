import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { protoPath } from 'grpc-health-check';
import { Stack } from '@jetflow/stack';
import { freePort, startNatsServer, type NatsServerHandle } from '@jetflow/testing';
import { addHealth } from '../services/ingest/src/adapters/grpc-health.js';

type Health = grpc.Client & {
  check(req: { service: string }, cb: (err: grpc.ServiceError | null, res?: { status: string }) => void): void;
  watch(req: { service: string }): grpc.ClientReadableStream<{ status: string }>;
};

/** A real grpc-js client of grpc.health.v1.Health, from the standard health.proto. */
function healthClient(address: string): Health {
  const def = grpc.loadPackageDefinition(loadSync(protoPath, { keepCase: true, enums: String, defaults: true })) as unknown as {
    grpc: { health: { v1: { Health: new (a: string, c: grpc.ChannelCredentials) => Health } } };
  };
  return new def.grpc.health.v1.Health(address, grpc.credentials.createInsecure());
}

const check = (c: Health, service: string) =>
  new Promise<{ status?: string; code?: number }>((resolve) => c.check({ service }, (err, res) => resolve(err ? { code: err.code } : { status: res!.status })));

async function until(what: string, fn: () => Promise<boolean>, ms = 20_000) {
  const end = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('grpc.health.v1 on a gRPC server (addHealth)', () => {
  let server: grpc.Server;
  let client: Health;
  let ready = false;
  let health: ReturnType<typeof addHealth>;
  before(async () => {
    server = new grpc.Server();
    health = addHealth(server, () => ready, 50);
    const port = await new Promise<number>((res, rej) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
    client = healthClient(`127.0.0.1:${port}`);
  });
  after(() => {
    client.close();
    server.forceShutdown();
  });

  test('NOT_SERVING until ready, then SERVING for the server and IngestService; an unknown service is NOT_FOUND', async () => {
    assert.deepEqual(await check(client, ''), { status: 'NOT_SERVING' });
    const stream = client.watch({ service: 'jetflow.v1.IngestService' });
    const seen: string[] = [];
    stream.on('data', (m: { status: string }) => seen.push(m.status));
    stream.on('error', () => undefined);
    await until('the first Watch answer', async () => seen.length === 1);
    ready = true;
    await until('SERVING', async () => (await check(client, '')).status === 'SERVING');
    assert.deepEqual(await check(client, 'jetflow.v1.IngestService'), { status: 'SERVING' });
    assert.deepEqual(await check(client, 'no.such.Service'), { code: grpc.status.NOT_FOUND });
    await until('Watch to hear the change', async () => seen.length === 2);
    health.close();
    assert.deepEqual(await check(client, ''), { status: 'NOT_SERVING' }, 'closed: not serving, whatever ready() says');
    await until('Watch to hear the close', async () => seen.length === 3);
    assert.deepEqual(seen, ['NOT_SERVING', 'SERVING', 'NOT_SERVING'], 'Watch streams hear each change once');
    stream.cancel();
  });
});

describe('ingest serves grpc.health.v1 on its gRPC port, SERVING only while NATS is connected', () => {
  let nats: NatsServerHandle;
  let stack: Stack;
  let client: Health;
  before(async () => {
    nats = await startNatsServer();
    const grpcPort = await freePort();
    const env = {
      NATS_URL: nats.url,
      JETFLOW_HTTP_PORT: String(await freePort()),
      JETFLOW_GRPC_PORT: String(grpcPort),
      JETFLOW_HOST: '127.0.0.1',
      JETFLOW_AUTH: 'disabled',
      LOG_LEVEL: 'warn',
    };
    stack = new Stack({ env, replicas: { orchestrator: 0, 'dataset-generator': 0, analyst: 0 }, restartOnExit: false }).start();
    client = healthClient(`127.0.0.1:${grpcPort}`);
  });
  after(async () => {
    client?.close();
    await stack?.stop();
    await nats?.stop();
  });

  test('Check answers SERVING, NOT_SERVING while nats-server is down, SERVING again once it is back', async () => {
    await until('ingest to serve', async () => (await check(client, '')).status === 'SERVING', 60_000);
    assert.deepEqual(await check(client, 'jetflow.v1.IngestService'), { status: 'SERVING' });
    assert.deepEqual(await check(client, 'grpc.reflection.v1.ServerReflection'), { code: grpc.status.NOT_FOUND });
    await nats.kill();
    await until('NOT_SERVING with NATS down', async () => (await check(client, '')).status === 'NOT_SERVING');
    await nats.restart();
    await until('SERVING after NATS is back', async () => (await check(client, '')).status === 'SERVING', 30_000);
  });
});
