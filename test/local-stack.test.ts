import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { repoRoot } from '../libs/stack/src/index.js';
import { freePort, sampleSubmission, startNatsServer, type NatsServerHandle } from '../libs/testing/src/index.js';
import { apiKeyEntries, listenHost, sha256hex } from '../services/ingest/src/config.js';
import { connectHost, localAccess } from '../scripts/local-stack.js';
import { ingestClient } from './grpc-client.js';

const ACME_KEY = 'acme-key-0123456789abcdef';
const BETA_KEY = 'beta-key-0123456789abcdef';
const TWO_TENANTS = { JETFLOW_API_KEYS: `acme:${ACME_KEY},beta:${BETA_KEY}`, JETFLOW_CALLBACK_SECRETS: 'acme:acme-secret,beta:beta-secret' };

describe('local stack configuration (pure)', () => {
  test('without JETFLOW_API_KEYS: one operator key for tenant default, kept across runs; one secret', () => {
    const a = localAccess({});
    assert.equal(a.tenant, 'default');
    assert.match(a.apiKey ?? '', /^jf_/);
    assert.equal(a.apiKeys, `default:operator:${a.apiKey}`);
    assert.deepEqual(
      apiKeyEntries({ JETFLOW_API_KEYS: a.apiKeys }).map((e) => [e.tenant, e.role, e.key]),
      [['default', 'operator', a.apiKey]],
    );
    assert.equal(a.callbackSecrets, `default:${a.callbackSecret}`);
    const again = localAccess({}, { tenant: 'default', apiKey: a.apiKey!, callbackSecret: a.callbackSecret! });
    assert.equal(again.apiKey, a.apiKey);
    assert.equal(again.callbackSecret, a.callbackSecret);
    // A file another tenant's key was written to is not taken as default's key.
    assert.notEqual(localAccess({}, { tenant: 'acme', apiKey: ACME_KEY }).apiKey, ACME_KEY);
  });

  test('with JETFLOW_API_KEYS and JETFLOW_CALLBACK_SECRETS: passed on as given; the CLI gets the first tenant', () => {
    const a = localAccess(TWO_TENANTS, { tenant: 'default', apiKey: 'jf_old-key-0123456789' });
    assert.deepEqual(a, {
      apiKeys: TWO_TENANTS.JETFLOW_API_KEYS,
      callbackSecrets: TWO_TENANTS.JETFLOW_CALLBACK_SECRETS,
      tenant: 'acme',
      apiKey: ACME_KEY,
      operator: false,
      callbackSecret: 'acme-secret',
      note: undefined,
    });
  });

  test('keys without secrets: one generated secret signs for every tenant', () => {
    const a = localAccess({ JETFLOW_API_KEYS: TWO_TENANTS.JETFLOW_API_KEYS });
    assert.match(a.callbackSecret ?? '', /^[0-9a-f]{48}$/);
    assert.equal(a.callbackSecrets, `acme:${a.callbackSecret},beta:${a.callbackSecret}`);
  });

  test('keys given as hashes: the CLI gets the first key given in clear, or none and a note saying why', () => {
    const hashed = `acme:sha256:${sha256hex(ACME_KEY)}`;
    const mixed = localAccess({ JETFLOW_API_KEYS: `${hashed},beta:${BETA_KEY}` });
    assert.equal(mixed.tenant, 'beta');
    assert.equal(mixed.apiKey, BETA_KEY);
    const only = localAccess({ JETFLOW_API_KEYS: hashed });
    assert.equal(only.tenant, 'acme');
    assert.equal(only.apiKey, undefined);
    assert.match(only.note ?? '', /sha256 hash.*--api-key.*JETFLOW_API_KEY/);
  });

  test('bad keys and hosts are refused naming the variable and the problem', () => {
    assert.throws(() => localAccess({ JETFLOW_API_KEYS: 'acme:short' }), /JETFLOW_API_KEYS: the key for tenant "acme" is shorter than 16 characters/);
    assert.throws(
      () => apiKeyEntries({ JETFLOW_API_KEYS: `acme:sha256:${'a'.repeat(63)}` }),
      /JETFLOW_API_KEYS: the key for tenant "acme" starts with "sha256:" but is not followed by 64 hex digits/,
    );
    assert.throws(() => apiKeyEntries({ JETFLOW_API_KEYS: `acme:${ACME_KEY},beta:${ACME_KEY}` }), /JETFLOW_API_KEYS: tenants "acme" and "beta" have the same key/);
    assert.throws(() => localAccess({ JETFLOW_CALLBACK_SECRETS: 'no-colon' }), /JETFLOW_CALLBACK_SECRETS: expected "tenant:value" pairs/);
    for (const bad of ['0.0.0.0:8080', 'http://localhost', 'a b', '-x'])
      assert.throws(() => listenHost({ JETFLOW_HOST: bad }), /^ConfigError: JETFLOW_HOST: expected an address to listen on/, bad);
    assert.equal(listenHost({}), '0.0.0.0');
    assert.equal(listenHost({}, '127.0.0.1'), '127.0.0.1');
    assert.equal(listenHost({ JETFLOW_HOST: '[::1]' }), '::1');
    assert.equal(listenHost({ JETFLOW_HOST: 'localhost' }), 'localhost');
    assert.deepEqual(['0.0.0.0', '::', '::1', '10.1.2.3'].map(connectHost), ['127.0.0.1', '[::1]', '[::1]', '10.1.2.3']);
  });
});

/** The local IPv4 addresses bound in LISTEN state on a TCP port, from /proc/net/tcp. */
function listeningOn(port: number): string[] {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  return readFileSync('/proc/net/tcp', 'utf8')
    .split('\n')
    .slice(1)
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f[1]?.endsWith(`:${hex}`) && f[3] === '0A')
    .map((f) => {
      const a = f[1]!.split(':')[0]!;
      return [3, 2, 1, 0].map((i) => parseInt(a.slice(i * 2, i * 2 + 2), 16)).join('.');
    });
}

/** Whether a TCP connection to host:port is accepted. */
function connects(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = tcpConnect({ host, port, timeout: 3_000 });
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
    s.once('timeout', () => (s.destroy(), resolve(false)));
  });
}

const otherAddress = Object.values(networkInterfaces())
  .flat()
  .find((a) => a && a.family === 'IPv4' && !a.internal)?.address;

interface LocalStackRun {
  proc: ChildProcess;
  dir: string;
  httpPort: number;
  grpcPort: number;
  output: () => string;
  stop: () => Promise<number | null>;
}

/** `npm start`'s program (dist/scripts/local-stack.js) as a real process, on a test-started nats-server. */
async function runLocalStack(nats: NatsServerHandle, env: Record<string, string>): Promise<LocalStackRun> {
  const dir = mkdtempSync(join(tmpdir(), 'jetflow-local-'));
  const httpPort = await freePort();
  const grpcPort = await freePort();
  const proc = spawn(process.execPath, [join(repoRoot(), 'dist', 'scripts', 'local-stack.js')], {
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? dir,
      NATS_URL: nats.url,
      JETFLOW_LOCAL_DIR: dir,
      JETFLOW_HTTP_PORT: String(httpPort),
      JETFLOW_GRPC_PORT: String(grpcPort),
      JETFLOW_TASK_MODE: 'noop',
      LOG_LEVEL: 'warn',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
    return exited;
  };
  const until = Date.now() + 120_000;
  while (!out.includes('Jetflow is running.')) {
    if (proc.exitCode !== null || Date.now() > until) {
      await stop();
      throw new Error(`the local stack did not start:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { proc, dir, httpPort, grpcPort, output: () => out, stop };
}

const submit = (run: LocalStackRun, key: string) =>
  fetch(`http://127.0.0.1:${run.httpPort}/v1/flows`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify(sampleSubmission('http://127.0.0.1:9/hook')),
  });

describe('local stack (npm start) as a process', () => {
  let nats: NatsServerHandle;
  before(async () => {
    nats = await startNatsServer();
  });
  after(async () => {
    await nats?.stop();
  });

  test("takes JETFLOW_API_KEYS / JETFLOW_CALLBACK_SECRETS for two tenants, writes the first tenant's key to local.json, and listens on 127.0.0.1 only", async () => {
    const run = await runLocalStack(nats, TWO_TENANTS);
    try {
      for (const key of [ACME_KEY, BETA_KEY]) {
        const res = await submit(run, key);
        assert.equal(res.status, 202, `${key}: ${await res.text()}`);
      }
      assert.equal((await submit(run, 'wrong-key-0123456789abcdef')).status, 401);
      // Keys given as plain `tenant:key` are tenant keys: no system-wide views.
      const consumers = await fetch(`http://127.0.0.1:${run.httpPort}/v1/consumers`, { headers: { authorization: `Bearer ${ACME_KEY}` } });
      assert.equal(consumers.status, 403);
      assert.equal(((await consumers.json()) as { error: { code: string } }).error.code, 'permission_denied');
      const grpcBeta = ingestClient(`127.0.0.1:${run.grpcPort}`, BETA_KEY);
      assert.equal((await grpcBeta.submit(sampleSubmission('http://127.0.0.1:9/hook'))).status, 'accepted');
      grpcBeta.close();

      const local = JSON.parse(readFileSync(join(run.dir, 'local.json'), 'utf8')) as Record<string, string>;
      assert.equal(local.tenant, 'acme');
      assert.equal(local.apiKey, ACME_KEY);
      assert.equal(local.callbackSecret, 'acme-secret');
      assert.equal(local.url, `http://127.0.0.1:${run.httpPort}`);
      assert.equal(local.grpc, `127.0.0.1:${run.grpcPort}`);
      assert.match(run.output(), /tenant "acme"/);

      assert.deepEqual(listeningOn(run.httpPort), ['127.0.0.1']);
      assert.deepEqual(listeningOn(run.grpcPort), ['127.0.0.1']);
      if (otherAddress) {
        assert.equal(await connects(otherAddress, run.httpPort), false, `HTTP answers on ${otherAddress}`);
        assert.equal(await connects(otherAddress, run.grpcPort), false, `gRPC answers on ${otherAddress}`);
      }
    } finally {
      assert.equal(await run.stop(), 0, run.output());
    }
  });

  test('without JETFLOW_API_KEYS the generated key in local.json is an operator key: it submits as default and reads the consumers', async () => {
    const run = await runLocalStack(nats, {});
    try {
      const local = JSON.parse(readFileSync(join(run.dir, 'local.json'), 'utf8')) as Record<string, string>;
      assert.equal(local.tenant, 'default');
      assert.equal((await submit(run, local.apiKey!)).status, 202);
      const res = await fetch(`http://127.0.0.1:${run.httpPort}/v1/consumers`, { headers: { authorization: `Bearer ${local.apiKey}` } });
      assert.equal(res.status, 200, await res.clone().text());
      assert.ok(((await res.json()) as { consumers: Array<{ name: string }> }).consumers.some((c) => c.name === 'orchestrator-ingest'));
      assert.match(run.output(), /operator key/);
    } finally {
      assert.equal(await run.stop(), 0, run.output());
    }
  });

  test('with JETFLOW_HOST=0.0.0.0 listens on every interface; keys given only as hashes still work, and local.json says it has none', async () => {
    const run = await runLocalStack(nats, { JETFLOW_HOST: '0.0.0.0', JETFLOW_API_KEYS: `acme:sha256:${sha256hex(ACME_KEY)}` });
    try {
      assert.equal((await submit(run, ACME_KEY)).status, 202);
      assert.equal((await submit(run, `sha256:${sha256hex(ACME_KEY)}`)).status, 401);
      assert.deepEqual(listeningOn(run.httpPort), ['0.0.0.0']);
      assert.deepEqual(listeningOn(run.grpcPort), ['0.0.0.0']);
      if (otherAddress) {
        assert.equal(await connects(otherAddress, run.httpPort), true);
        const viaOther = ingestClient(`${otherAddress}:${run.grpcPort}`, ACME_KEY);
        await assert.rejects(viaOther.get('fnope00000000000000000000'), (e: grpc.ServiceError) => e.code === grpc.status.NOT_FOUND);
        viaOther.close();
      }
      const local = JSON.parse(readFileSync(join(run.dir, 'local.json'), 'utf8')) as Record<string, string>;
      assert.equal(local.tenant, 'acme');
      assert.equal(local.apiKey, undefined);
      assert.equal(local.url, `http://127.0.0.1:${run.httpPort}`);
      assert.match(run.output(), /every key as a sha256 hash, so local\.json has no key for the CLI: pass it --api-key <key> or set JETFLOW_API_KEY/);
    } finally {
      assert.equal(await run.stop(), 0, run.output());
    }
  });
});
