import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError } from '@jetflow/config';
import { loadConfig as ingest } from '../services/ingest/src/config.js';
import { loadConfig as orchestrator } from '../services/orchestrator/src/config.js';
import { loadConfig as datasetGenerator } from '../services/dataset-generator/src/config.js';
import { loadConfig as analyst } from '../services/analyst/src/config.js';

const services = { ingest, orchestrator, 'dataset-generator': datasetGenerator, analyst };
const base = { JETFLOW_AUTH: 'disabled' };

test('JETFLOW_REPLICAS: every service reads it, default 1', () => {
  for (const [name, load] of Object.entries(services)) {
    assert.equal(load(base).replicas, 1, name);
    assert.equal(load({ ...base, JETFLOW_REPLICAS: '3' }).replicas, 3, name);
    assert.equal(load({ ...base, JETFLOW_REPLICAS: ' ' }).replicas, 1, `${name}: blank means unset`);
  }
});

test('JETFLOW_REPLICAS: a bad value fails at start naming the variable', () => {
  for (const [name, load] of Object.entries(services)) {
    for (const bad of ['0', '6', 'three', '2.5']) {
      assert.throws(
        () => load({ ...base, JETFLOW_REPLICAS: bad }),
        (err: unknown) => err instanceof ConfigError && err.variable === 'JETFLOW_REPLICAS' && /^JETFLOW_REPLICAS: /.test(err.message),
        `${name} rejects JETFLOW_REPLICAS=${bad}`,
      );
    }
  }
});

test('JETFLOW_TENANT_LIMITS: ingest and orchestrator read the same limits; a bad value fails at start naming the variable', () => {
  const env = { ...base, JETFLOW_TENANT_LIMITS: 'acme=rps:10,inflight:20,weight:3;*=inflight:100', JETFLOW_CALLBACK_SECRETS: 'globex:s3cret' };
  assert.deepEqual(ingest(env).tenantLimits.of('acme'), { rps: 10, burst: 10, inflight: 20, weight: 3 });
  assert.equal(orchestrator(env).tenantLimits.of('other').inflight, 100);
  assert.deepEqual(orchestrator(env).tenants.sort(), ['acme', 'globex'], 'the orchestrator makes consumers for the tenants it is told of');
  for (const load of [ingest, orchestrator]) {
    assert.throws(
      () => load({ ...base, JETFLOW_TENANT_LIMITS: 'acme=inflight:lots' }),
      (err: unknown) => err instanceof ConfigError && err.variable === 'JETFLOW_TENANT_LIMITS' && /tenant "acme": inflight must be a whole number/.test(err.message),
    );
  }
});
