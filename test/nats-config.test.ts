import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError } from '@jetflow/config';
import { loadConfig as ingest } from '../services/ingest/src/config.js';
import { loadConfig as orchestrator } from '../services/orchestrator/src/config.js';
import { loadConfig as datasetGenerator } from '../services/dataset-generator/src/config.js';
import { loadConfig as analyst } from '../services/analyst/src/config.js';

const services = { ingest, orchestrator, 'dataset-generator': datasetGenerator, analyst };
const base = { JETFLOW_AUTH: 'disabled' };

test('every service reads its NATS identity from the standard variables, with its own inbox prefix by default', () => {
  for (const [name, load] of Object.entries(services)) {
    assert.deepEqual(load(base).natsAuth, { inboxPrefix: `_INBOX.${name}` }, name);
    assert.deepEqual(load({ ...base, NATS_USER: name, NATS_PASSWORD: 'pw-0123456789abcdef0123', NATS_INBOX_PREFIX: `_INBOX.${name}-2` }).natsAuth, {
      inboxPrefix: `_INBOX.${name}-2`,
      credentials: { kind: 'user', user: name, password: 'pw-0123456789abcdef0123' },
    });
  }
});

test('a NATS user without a password fails at start naming NATS_PASSWORD, in every service', () => {
  for (const [name, load] of Object.entries(services)) {
    assert.throws(
      () => load({ ...base, NATS_USER: name }),
      (e: unknown) => e instanceof ConfigError && e.variable === 'NATS_PASSWORD',
      name,
    );
  }
});
