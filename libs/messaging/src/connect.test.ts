import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import type { NatsConnection } from 'nats';
import { startNatsServer, type NatsServerHandle } from '@jetflow/testing';
import { connectNats } from './connect.js';

let server: NatsServerHandle;
let nc: NatsConnection;
before(async () => {
  server = await startNatsServer();
  nc = await connectNats({ servers: [server.url], name: 'connect-test' });
});
after(async () => {
  await nc?.close();
  await server?.stop();
});

test('connectNats engages both adapters on this nats client (a nats.js upgrade that moves its internals fails here)', () => {
  const proto = (nc as unknown as { protocol: { sendCommand: (...args: unknown[]) => unknown } }).protocol;
  assert.equal(proto.sendCommand.name, 'sendCommand');
  assert.ok(!String(proto.sendCommand).includes('queueMicrotask'), 'the coalescing sendCommand is installed');
  const encoders = createRequire(import.meta.url)('nats/lib/nats-base-client/encoders.js') as { TE: unknown };
  assert.ok(!(encoders.TE instanceof TextEncoder), 'the nats client uses the fast UTF-8 encoder');
});

test('a burst published in one tick, with headers and non-ASCII subjects and bodies, arrives whole and in order', async () => {
  const sub = nc.subscribe('coalesce.>', { max: 500 });
  const got: string[] = [];
  const done = (async () => {
    for await (const m of sub) got.push(`${m.subject}|${m.headers?.get('X-N') ?? ''}|${new TextDecoder().decode(m.data)}`);
  })();
  await nc.flush();
  const { headers } = await import('nats');
  const want: string[] = [];
  for (let i = 0; i < 500; i++) {
    const h = headers();
    h.set('X-N', String(i));
    const body = i % 2 ? `plain ${i}` : `naïve ✓ ${i} ${'x'.repeat(i)}`;
    nc.publish(`coalesce.${i % 3 ? 'a' : 'ü'}`, new TextEncoder().encode(body), { headers: h });
    want.push(`coalesce.${i % 3 ? 'a' : 'ü'}|${i}|${body}`);
  }
  await done;
  assert.deepEqual(got, want);
});
