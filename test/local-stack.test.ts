import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { connect as tcpConnect, createServer, type Server } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { repoRoot } from '@jetflow/stack';
import { connect, type NatsConnection } from 'nats';
import { deriveFlowId } from '@jetflow/flows';
import { freePort, sampleSubmission, startCallbackReceiver, startNatsServer, type CallbackReceiver, type NatsServerHandle } from '@jetflow/testing';
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

/**
 * `npm start`'s program (dist/scripts/local-stack.js) as a real process: on a test-started nats-server
 * (NATS_URL), or with `nats` undefined on a nats-server of its own. `dir` reuses an earlier run's .jetflow.
 */
async function runLocalStack(nats: NatsServerHandle | undefined, env: Record<string, string>, dir = mkdtempSync(join(tmpdir(), 'jetflow-local-'))): Promise<LocalStackRun> {
  const httpPort = await freePort();
  const grpcPort = await freePort();
  const proc = spawn(process.execPath, [join(repoRoot(), 'dist', 'scripts', 'local-stack.js')], {
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? dir,
      ...(nats ? { NATS_URL: nats.url } : {}),
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
      assert.ok(((await res.json()) as { consumers: Array<{ name: string }> }).consumers.some((c) => c.name === 'orchestrator-ingest-default'));
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

/** A publish the server refuses with a permissions violation (nats.js fails the request). */
async function refusedPublish(nc: NatsConnection, subject: string): Promise<void> {
  await assert.rejects(nc.request(subject, new TextEncoder().encode('{}'), { timeout: 3_000 }), (e: Error & { code?: string }) => {
    assert.equal(e.code, 'PERMISSIONS_VIOLATION', `publish to ${subject}: ${e.message}`);
    return true;
  });
}

const modeOf = (file: string) => statSync(file).mode & 0o777;

describe('local stack (npm start) with a nats-server of its own', () => {
  const TENANTS = { JETFLOW_API_KEYS: `acme:operator:${ACME_KEY},beta:${BETA_KEY}`, JETFLOW_CALLBACK_SECRETS: 'acme:acme-secret,beta:beta-secret' };
  let taken: Server;
  let takenPort: number;
  let monitorPort: number;
  let cb: CallbackReceiver;
  before(async () => {
    // Something else already holds the port asked for (as another nats-server holds 4222 here).
    takenPort = await freePort();
    monitorPort = await freePort();
    taken = createServer();
    await new Promise<void>((r) => taken.listen(takenPort, '127.0.0.1', r));
    cb = await startCallbackReceiver({ secret: 'acme-secret' });
  });
  after(async () => {
    await new Promise((r) => taken?.close(r));
    await cb?.close();
  });

  test('starts an authenticated nats-server on the next free port; the tenant submits through the NATS door with the credentials in local.json; every other attempt is refused; a restart keeps the credentials', async () => {
    const env = { ...TENANTS, JETFLOW_NATS_PORT: String(takenPort), JETFLOW_NATS_MONITOR_PORT: String(monitorPort) };
    const run = await runLocalStack(undefined, env);
    let first: { url: string; user: string; password: string };
    try {
      const local = JSON.parse(readFileSync(join(run.dir, 'local.json'), 'utf8')) as { tenant: string; natsUrl: string; nats: { url: string; user: string; password: string } };
      first = local.nats;
      assert.equal(local.tenant, 'acme');
      assert.equal(local.nats.user, 'tenant-acme');
      assert.ok(local.nats.password.length >= 24, 'a generated password');
      const natsPort = Number(new URL(local.nats.url).port);
      assert.ok(natsPort > takenPort && natsPort < takenPort + 100, `the next free port after ${takenPort}: ${local.nats.url}`);
      assert.equal(local.natsUrl, local.nats.url);
      assert.deepEqual(listeningOn(natsPort), ['127.0.0.1']);
      assert.deepEqual(listeningOn(monitorPort), ['127.0.0.1'], 'monitoring on loopback only');
      for (const f of ['local.json', 'nats-credentials.json', 'nats-server.conf']) assert.equal(modeOf(join(run.dir, f)), 0o600, `${f} is private`);
      // The credentials file has an identity per service, the operator and every tenant; the server config only hashes.
      const users = Object.keys((JSON.parse(readFileSync(join(run.dir, 'nats-credentials.json'), 'utf8')) as { users: Record<string, string> }).users);
      assert.deepEqual(users.sort(), ['analyst', 'dataset-generator', 'ingest', 'operator', 'orchestrator', 'tenant-acme', 'tenant-beta']);
      assert.ok(!readFileSync(join(run.dir, 'nats-server.conf'), 'utf8').includes(local.nats.password), 'no plaintext password in the server configuration');
      assert.match(run.output(), /nats req -s nats:\/\/127\.0\.0\.1:\d+ --user tenant-acme/);

      await assert.rejects(
        connect({ servers: local.nats.url, reconnect: false, timeout: 2_000 }),
        (e: Error & { code?: string }) => e.code === 'AUTHORIZATION_VIOLATION',
        'anonymous refused',
      );
      await assert.rejects(
        connect({ servers: local.nats.url, reconnect: false, timeout: 2_000, user: 'tenant-acme', pass: 'x'.repeat(43) }),
        (e: Error & { code?: string }) => e.code === 'AUTHORIZATION_VIOLATION',
        'wrong password refused',
      );

      const tenant = await connect({ servers: local.nats.url, reconnect: false, timeout: 2_000, user: local.nats.user, pass: local.nats.password });
      try {
        const ack = await tenant.jetstream().publish('jetflow.ingest.acme.insights', JSON.stringify(sampleSubmission(cb.url)), { msgID: 'door-1' });
        assert.equal(ack.stream, 'JETFLOW_INGEST');
        assert.equal(ack.duplicate, false);
        const flowId = deriveFlowId('acme', 'door-1');
        await cb.waitForFlows([flowId], 90_000);
        const got = cb.byFlow(flowId);
        assert.equal(got.length, 1, 'one callback');
        assert.equal(got[0]!.signatureValid, true);
        assert.equal(got[0]!.body.status, 'succeeded');
        assert.equal(got[0]!.body.tenant, 'acme');

        for (const subject of [
          'jetflow.ingest.beta.insights',
          'jetflow.result.0.fvictim',
          `$KV.jetflow_cancel.${flowId}`,
          '$JS.API.STREAM.DELETE.JETFLOW_INGEST',
          '$JS.API.STREAM.PURGE.JETFLOW_TASKS',
        ])
          await refusedPublish(tenant, subject);
      } finally {
        await tenant.close();
      }
      // Nothing the refused attempts named happened.
      const op = (JSON.parse(readFileSync(join(run.dir, 'nats-credentials.json'), 'utf8')) as { users: Record<string, string> }).users.operator!;
      const admin = await connect({ servers: local.nats.url, reconnect: false, timeout: 2_000, user: 'operator', pass: op, inboxPrefix: '_INBOX.operator' });
      try {
        const jsm = await admin.jetstreamManager();
        assert.equal((await jsm.streams.info('JETFLOW_INGEST')).config.name, 'JETFLOW_INGEST');
        await assert.rejects(
          jsm.streams.getMessage('KV_jetflow_cancel', { last_by_subj: `$KV.jetflow_cancel.${deriveFlowId('acme', 'door-1')}` }),
          /no message found/,
          'no cancel flag was set',
        );
      } finally {
        await admin.close();
      }
    } finally {
      assert.equal(await run.stop(), 0, run.output());
    }

    // A restart keeps every NATS password: the same credentials work again.
    const again = await runLocalStack(undefined, env, run.dir);
    try {
      const local = JSON.parse(readFileSync(join(again.dir, 'local.json'), 'utf8')) as { nats: { url: string; user: string; password: string } };
      assert.equal(local.nats.user, first.user);
      assert.equal(local.nats.password, first.password);
      const tenant = await connect({ servers: local.nats.url, reconnect: false, timeout: 2_000, user: local.nats.user, pass: local.nats.password });
      try {
        const ack = await tenant.jetstream().publish('jetflow.ingest.acme.insights', JSON.stringify(sampleSubmission(cb.url)), { msgID: 'door-2' });
        assert.equal(ack.stream, 'JETFLOW_INGEST');
        await cb.waitForFlows([deriveFlowId('acme', 'door-2')], 90_000);
      } finally {
        await tenant.close();
      }
    } finally {
      assert.equal(await again.stop(), 0, again.output());
    }
  });
});
