import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CallbackPolicy, type Resolver } from '@jetflow/flows';
import { deliver } from './callback.js';

/** A real HTTP receiver on one address that records what reached it. */
async function receiver(host: string, port = 0, answer: (res: import('node:http').ServerResponse) => void = (res) => res.end('ok')) {
  const hits: Array<{ host: string | undefined; path: string | undefined; headers: IncomingHttpHeaders }> = [];
  const server: Server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      hits.push({ host: req.headers.host, path: req.url, headers: req.headers });
      answer(res);
    });
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, host, resolve));
  return { hits, port: (server.address() as AddressInfo).port, close: () => new Promise<void>((r) => server.close(() => r())) };
}

/** Answers `first` on the first lookup and `then` on every later one: a rebinding DNS name. */
function rebinding(first: string, then: string): { calls: number; resolve: Resolver } {
  const r: { calls: number; resolve: Resolver } = { calls: 0, resolve: async () => [{ address: r.calls++ === 0 ? first : then, family: 4 }] };
  return r;
}

const send = (policy: CallbackPolicy, url: string, resolve?: Resolver) => deliver(policy, url, '{"ok":true}', { 'content-type': 'application/json' }, 3_000, resolve);

describe('callback sender: it connects to exactly the address it checked', () => {
  let inside: Awaited<ReturnType<typeof receiver>>; // 127.0.0.1: never to be reached unless allowed
  let allowed: Awaited<ReturnType<typeof receiver>>; // 127.0.0.2, same port: the one address the allowlist names
  before(async () => {
    inside = await receiver('127.0.0.1');
    allowed = await receiver('127.0.0.2', inside.port);
  });
  after(async () => {
    await inside?.close();
    await allowed?.close();
  });

  test('a name that rebinds to 127.0.0.1 after the check never reaches 127.0.0.1 (60 tries)', async () => {
    const policy = new CallbackPolicy(['127.0.0.2']);
    const before = allowed.hits.length;
    for (let i = 0; i < 60; i++) {
      const dns = rebinding('127.0.0.2', '127.0.0.1');
      const r = await send(policy, `http://rebind.test:${inside.port}/hook?i=${i}`, dns.resolve);
      assert.deepEqual(r, { statusCode: 200 }, `try ${i}`);
      assert.equal(dns.calls, 1, 'resolved once');
    }
    assert.equal(inside.hits.length, 0, 'nothing reached the refused 127.0.0.1 receiver');
    const got = allowed.hits.slice(before);
    assert.equal(got.length, 60);
    // The Host header keeps the name the URL gave.
    assert.ok(
      got.every((h) => h.host === `rebind.test:${inside.port}`),
      JSON.stringify(got[0]),
    );
  });

  test('a name with one refused address among allowed ones is refused before connecting', async () => {
    const policy = new CallbackPolicy(['127.0.0.2']);
    const before = allowed.hits.length;
    const r = await send(policy, `http://two.test:${inside.port}/hook`, async () => [
      { address: '127.0.0.2', family: 4 },
      { address: '127.0.0.1', family: 4 },
    ]);
    assert.deepEqual(r, { blocked: 'two.test resolves to 127.0.0.1, which is not a public address (IPv4 loopback) and not in JETFLOW_CALLBACK_ALLOWLIST' });
    assert.equal(allowed.hits.length, before);
    assert.equal(inside.hits.length, 0);
  });

  test('loopback in IPv6-embedded, hex, octal and decimal spellings is refused; nothing reaches the receiver', async () => {
    const policy = new CallbackPolicy([]);
    const p = inside.port;
    const urls = [
      `http://[::ffff:127.0.0.1]:${p}/`,
      `http://[::127.0.0.1]:${p}/`,
      `http://[::ffff:0:127.0.0.1]:${p}/`,
      `http://[64:ff9b::127.0.0.1]:${p}/`,
      `http://0x7f.1:${p}/`,
      `http://0x7f000001:${p}/`,
      `http://2130706433:${p}/`,
      `http://017700000001:${p}/`,
      `http://0177.0.0.1:${p}/`,
      `http://127.1:${p}/`,
      `http://127.0.0.1:${p}/`,
      `http://[::1]:${p}/`,
      `http://localhost:${p}/`,
      `http://0:${p}/`,
    ];
    for (const url of urls) {
      const r = await send(policy, url, async () => {
        throw new Error(`no lookup expected for ${url}`);
      });
      assert.ok('blocked' in r && /not (a public address|public)/.test(r.blocked), `${url}: ${JSON.stringify(r)}`);
    }
    assert.equal(inside.hits.length, 0);
  });

  test('with loopback in the allowlist the same receiver gets the callbacks', async () => {
    const policy = new CallbackPolicy(['127.0.0.0/8']);
    const p = inside.port;
    for (const url of [`http://127.0.0.1:${p}/a`, `http://0x7f.1:${p}/b`, `http://2130706433:${p}/c`, `http://0177.0.0.1:${p}/d`])
      assert.deepEqual(await send(policy, url), { statusCode: 200 }, url);
    assert.deepEqual(
      inside.hits.map((h) => h.path),
      ['/a', '/b', '/c', '/d'],
    );
  });

  test('a redirect is not followed: the 3xx is the answer, and its target gets nothing', async () => {
    const target = await receiver('127.0.0.1');
    const redirector = await receiver('127.0.0.1', 0, (res) => {
      res.writeHead(302, { location: `http://127.0.0.1:${target.port}/stolen` });
      res.end();
    });
    try {
      assert.deepEqual(await send(new CallbackPolicy(['127.0.0.0/8']), `http://127.0.0.1:${redirector.port}/hook`), { statusCode: 302 });
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(redirector.hits.length, 1);
      assert.equal(target.hits.length, 0);
    } finally {
      await target.close();
      await redirector.close();
    }
  });

  test('a resolver failure is a retryable error, not a refusal', async () => {
    await assert.rejects(
      send(new CallbackPolicy([]), 'https://gone.example/hook', async () => {
        throw Object.assign(new Error('getaddrinfo EAI_AGAIN gone.example'), { code: 'EAI_AGAIN' });
      }),
      /cannot resolve callback host: getaddrinfo EAI_AGAIN gone\.example/,
    );
  });
});
