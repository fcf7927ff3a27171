import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { verifyPassword } from '@jetflow/security';
import { apiKeyEntries, sha256hex } from '../services/ingest/src/config.js';
import { OPS_TENANT, generateDeploySecrets } from '../scripts/gen-deploy-secrets.js';

const dir = mkdtempSync(join(tmpdir(), 'jetflow-secrets-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const read = (f: string) => readFileSync(join(dir, f), 'utf8');
const env = (f: string) =>
  Object.fromEntries(
    read(f)
      .split('\n')
      .flatMap((l) => (/^[A-Za-z0-9_][^=]*=/.test(l) ? [[l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]] : [])),
  ) as Record<string, string>;
const hashOf = (user: string) => new RegExp(`"user": "${user}",\\s*"password": "([^"]+)"`).exec(read('nats-auth.conf'))?.[1];

test('npm run deploy:secrets: private files, a re-run changes nothing, a new tenant adds only its own, --rotate renews only what it names', () => {
  generateDeploySecrets({ out: dir, tenants: ['acme'], bcryptCost: 4 });
  for (const f of ['nats-auth.conf', 'ingest.env', 'orchestrator.env', 'dataset-generator.env', 'analyst.env', 'handout/api-keys.env'])
    assert.equal(statSync(join(dir, f)).mode & 0o077, 0, `${f} is private`);
  const first = { auth: read('nats-auth.conf'), ingest: read('ingest.env'), orch: read('orchestrator.env'), keys: env('handout/api-keys.env') };
  assert.ok(verifyPassword(env('ingest.env').NATS_PASSWORD!, hashOf('ingest')!), 'the server config admits the ingest login');
  assert.match(first.auth, /^system_account: SYS$/m, 'a system account for server administration');
  assert.ok(verifyPassword(env('handout/nats-logins.env')['nats-admin']!, hashOf('nats-admin')!));

  generateDeploySecrets({ out: dir, tenants: ['acme'], bcryptCost: 4 });
  assert.equal(read('nats-auth.conf'), first.auth, 'same file: the deployed Secret does not change, NATS does not roll');
  assert.equal(read('ingest.env'), first.ingest);

  generateDeploySecrets({ out: dir, tenants: ['acme', 'globex'], bcryptCost: 4 });
  assert.equal(env('handout/api-keys.env').acme, first.keys.acme, 'acme keeps its key');
  assert.ok(env('handout/api-keys.env').globex);
  assert.equal(env('ingest.env').NATS_PASSWORD, /^NATS_PASSWORD=(.*)$/m.exec(first.ingest)?.[1], 'the ingest login kept');
  assert.equal(hashOf('ingest'), /"user": "ingest",\s*"password": "([^"]+)"/.exec(first.auth)?.[1], 'service logins untouched');

  const before = {
    keys: env('handout/api-keys.env'),
    ingestPw: env('ingest.env').NATS_PASSWORD,
    analystPw: env('analyst.env').NATS_PASSWORD,
    secrets: env('orchestrator.env').JETFLOW_CALLBACK_SECRETS,
  };
  generateDeploySecrets({ out: dir, tenants: ['acme', 'globex'], rotate: ['api-keys'], bcryptCost: 4 });
  assert.notEqual(env('handout/api-keys.env').acme, before.keys.acme, 'API keys renewed');
  assert.equal(env('ingest.env').NATS_PASSWORD, before.ingestPw, 'NATS logins kept');
  assert.equal(env('orchestrator.env').JETFLOW_CALLBACK_SECRETS, before.secrets, 'callback secrets kept');

  generateDeploySecrets({ out: dir, tenants: ['acme', 'globex'], rotate: ['ingest'], bcryptCost: 4 });
  assert.notEqual(env('ingest.env').NATS_PASSWORD, before.ingestPw, 'the ingest NATS login renewed');
  assert.ok(verifyPassword(env('ingest.env').NATS_PASSWORD!, hashOf('ingest')!), 'and the server config follows');
  assert.equal(env('analyst.env').NATS_PASSWORD, before.analystPw, 'the other logins kept');

  assert.throws(() => generateDeploySecrets({ out: dir, tenants: [] }), /--tenants/);
  assert.throws(() => generateDeploySecrets({ out: dir, tenants: ['acme', OPS_TENANT] }), /--tenants: "ops" is reserved for the operator API key/);
  assert.throws(() => generateDeploySecrets({ out: dir, tenants: ['Bad Name'] }), /tenant/);
});

/** What ingest makes of the rendered JETFLOW_API_KEYS (its own parser), and which handed-out key is which. */
function keyRoles(out: string) {
  const at = (f: string) =>
    Object.fromEntries(
      readFileSync(join(out, f), 'utf8')
        .split('\n')
        .flatMap((l) => (/^[A-Za-z0-9_][^=]*=/.test(l) ? [[l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]] : [])),
    ) as Record<string, string>;
  const ingest = at('ingest.env');
  const entries = apiKeyEntries({ JETFLOW_API_KEYS: ingest.JETFLOW_API_KEYS });
  assert.ok(
    entries.every((e) => e.key === undefined),
    'ingest holds hashes only',
  );
  const handout = at('handout/api-keys.env');
  const roleOf = (tenant: string) => entries.find((e) => e.tenant === tenant && e.hash === sha256hex(handout[tenant] ?? ''))?.role;
  return { ingest, entries, handout, roleOf };
}

test('deploy:secrets makes one operator API key, for tenant ops, beside the tenant keys; re-runs keep it, --rotate api-keys renews it', () => {
  const out = mkdtempSync(join(tmpdir(), 'jetflow-secrets-ops-'));
  try {
    generateDeploySecrets({ out, tenants: ['acme', 'globex'], bcryptCost: 4 });
    const first = keyRoles(out);
    assert.deepEqual(
      first.entries.map((e) => `${e.tenant}:${e.role}`),
      ['acme:tenant', 'globex:tenant', 'ops:operator'],
      'tenant keys stay tenant keys; exactly one operator key',
    );
    assert.equal(first.roleOf(OPS_TENANT), 'operator', 'the handed-out ops key is the operator key ingest knows');
    assert.equal(first.roleOf('acme'), 'tenant');
    assert.equal(first.ingest.JETFLOW_OPERATOR_TENANTS, OPS_TENANT, 'the operator also sees dead letters no tenant owns');
    assert.ok(first.handout.ops && first.handout.ops.length >= 32);
    assert.doesNotMatch(readFileSync(join(out, 'orchestrator.env'), 'utf8'), /ops:/, 'ops runs no flows: no callback secret');
    assert.doesNotMatch(readFileSync(join(out, 'handout/nats-logins.env'), 'utf8'), /tenant-ops/, 'nor a NATS door');

    generateDeploySecrets({ out, tenants: ['acme', 'globex'], bcryptCost: 4 });
    assert.equal(keyRoles(out).handout.ops, first.handout.ops, 'a re-run keeps the operator key');
    generateDeploySecrets({ out, tenants: ['acme', 'globex'], rotate: ['api-keys'], bcryptCost: 4 });
    const rotated = keyRoles(out);
    assert.notEqual(rotated.handout.ops, first.handout.ops, '--rotate api-keys renews it too');
    assert.equal(rotated.roleOf(OPS_TENANT), 'operator');
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test('the checked-in dev example (deploy/k8s/overlays/dev/secrets) has its operator key: handed out as ops=, known to ingest as an operator key', () => {
  const dev = keyRoles('deploy/k8s/overlays/dev/secrets');
  assert.equal(dev.roleOf(OPS_TENANT), 'operator');
  assert.equal(dev.roleOf('default'), 'tenant');
  assert.equal(dev.entries.filter((e) => e.role === 'operator').length, 1);
});
