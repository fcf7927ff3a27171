import { test } from 'node:test';
import assert from 'node:assert/strict';
import { JetflowError, STATUS } from '@jetflow/errors';
import { apiKeyEntries, loadConfig, sha256hex } from '../config.js';
import { Authenticator, requireOperator } from './auth.js';

const TENANT_KEY = 'acme-key-0123456789abcdef';
const OPERATOR_KEY = 'ops-key-0123456789abcdef';

test('JETFLOW_API_KEYS: `tenant:key` is a tenant key, `tenant:operator:key` an operator key, also as a hash', () => {
  const entries = apiKeyEntries({ JETFLOW_API_KEYS: `acme:${TENANT_KEY},default:operator:${OPERATOR_KEY},beta:operator:sha256:${sha256hex('beta-key-0123456789abcdef').toUpperCase()}` });
  assert.deepEqual(
    entries.map((e) => [e.tenant, e.role, e.key, e.hash]),
    [
      ['acme', 'tenant', TENANT_KEY, sha256hex(TENANT_KEY)],
      ['default', 'operator', OPERATOR_KEY, sha256hex(OPERATOR_KEY)],
      ['beta', 'operator', undefined, sha256hex('beta-key-0123456789abcdef')],
    ],
  );
  // One tenant may hold a tenant key and an operator key; one key still names one tenant.
  assert.equal(apiKeyEntries({ JETFLOW_API_KEYS: `acme:${TENANT_KEY},acme:operator:${OPERATOR_KEY}` }).length, 2);
  assert.throws(() => apiKeyEntries({ JETFLOW_API_KEYS: `acme:${TENANT_KEY},beta:operator:${TENANT_KEY}` }), /JETFLOW_API_KEYS: tenants "acme" and "beta" have the same key/);
  assert.throws(() => apiKeyEntries({ JETFLOW_API_KEYS: 'acme:operator:short' }), /JETFLOW_API_KEYS: the operator key for tenant "acme" is shorter than 16 characters/);
  assert.throws(
    () => apiKeyEntries({ JETFLOW_API_KEYS: 'acme:operator:sha256:abc' }),
    /JETFLOW_API_KEYS: the operator key for tenant "acme" starts with "sha256:" but is not followed by 64 hex digits/,
  );
  assert.throws(() => apiKeyEntries({ JETFLOW_API_KEYS: 'acme:operator:' }), /JETFLOW_API_KEYS: the operator key for tenant "acme" is shorter than 16 characters/);
});

test('the ingest config keeps each key hash with its tenant and role', () => {
  const cfg = loadConfig({ JETFLOW_API_KEYS: `acme:${TENANT_KEY},default:operator:${OPERATOR_KEY}` });
  assert.deepEqual(cfg.apiKeys.get(sha256hex(TENANT_KEY)), { tenant: 'acme', role: 'tenant' });
  assert.deepEqual(cfg.apiKeys.get(sha256hex(OPERATOR_KEY)), { tenant: 'default', role: 'operator' });
  // An operator key alone is enough to start with auth on.
  assert.equal(loadConfig({ JETFLOW_API_KEYS: `default:operator:${OPERATOR_KEY}` }).apiKeys.size, 1);
});

test('Authenticator: a tenant key is not an operator; an operator key is; unknown keys are refused', () => {
  const cfg = loadConfig({ JETFLOW_API_KEYS: `acme:${TENANT_KEY},default:operator:${OPERATOR_KEY}` });
  const auth = new Authenticator(cfg.apiKeys, false);
  assert.deepEqual(auth.principalOf(`Bearer ${TENANT_KEY}`), { tenant: 'acme', operator: false });
  assert.deepEqual(auth.principalOf(`Bearer ${OPERATOR_KEY}`), { tenant: 'default', operator: true });
  assert.equal(auth.tenantOf(`Bearer ${OPERATOR_KEY}`), 'default');
  // The key's text is what is hashed: "operator:<key>" is not the operator key.
  assert.throws(
    () => auth.principalOf(`Bearer operator:${OPERATOR_KEY}`),
    (e: unknown) => e instanceof JetflowError && e.code === 'unauthenticated',
  );
  assert.throws(
    () => auth.principalOf(undefined),
    (e: unknown) => e instanceof JetflowError && e.code === 'unauthenticated',
  );
  // Auth disabled (a trusted network): everyone operates.
  assert.deepEqual(new Authenticator(new Map(), true).principalOf('Bearer tenant:acme'), { tenant: 'acme', operator: true });
});

test('requireOperator refuses a tenant key with permission_denied (403, gRPC PERMISSION_DENIED) naming the view', () => {
  assert.doesNotThrow(() => requireOperator({ tenant: 'default', operator: true }, 'GET /v1/consumers'));
  assert.throws(
    () => requireOperator({ tenant: 'acme', operator: false }, 'GET /v1/consumers'),
    (e: unknown) => e instanceof JetflowError && e.code === 'permission_denied' && /GET \/v1\/consumers is a system-wide view and needs an operator API key/.test(e.message),
  );
  assert.deepEqual({ http: STATUS.permission_denied.http, grpc: STATUS.permission_denied.grpc }, { http: 403, grpc: 7 });
});
