import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError } from '@jetflow/config';
import { clientLimits, loadConfig } from './config.js';

test('client limits: defaults that bound every door, each variable overridable', () => {
  assert.deepEqual(clientLimits({}), {
    headersTimeoutMs: 10_000,
    requestTimeoutMs: 30_000,
    idleTimeoutMs: 60_000,
    maxConnections: 4_096,
    streamStallMs: 30_000,
    watchIdleMs: 900_000,
    grpcIdleMs: 300_000,
  });
  const l = clientLimits({
    JETFLOW_HTTP_REQUEST_TIMEOUT_MS: '5000',
    JETFLOW_HTTP_HEADERS_TIMEOUT_MS: '2000',
    JETFLOW_HTTP_MAX_CONNECTIONS: '100',
    JETFLOW_STREAM_STALL_MS: '1500',
    JETFLOW_WATCH_IDLE_MS: '60000',
    JETFLOW_GRPC_IDLE_MS: '1000',
    JETFLOW_HTTP_IDLE_TIMEOUT_MS: '9000',
  });
  assert.deepEqual(l, { headersTimeoutMs: 2_000, requestTimeoutMs: 5_000, idleTimeoutMs: 9_000, maxConnections: 100, streamStallMs: 1_500, watchIdleMs: 60_000, grpcIdleMs: 1_000 });
  assert.deepEqual(loadConfig({ JETFLOW_AUTH: 'disabled', JETFLOW_HTTP_MAX_CONNECTIONS: '7' }).limits.maxConnections, 7);
});

test('client limits: a bad value fails naming the variable', () => {
  const fails = (env: Record<string, string>, variable: string, re: RegExp) =>
    assert.throws(
      () => clientLimits(env),
      (e: unknown) => e instanceof ConfigError && e.variable === variable && re.test(e.message),
      JSON.stringify(env),
    );
  fails({ JETFLOW_HTTP_REQUEST_TIMEOUT_MS: '0' }, 'JETFLOW_HTTP_REQUEST_TIMEOUT_MS', /must be >= 100/);
  fails({ JETFLOW_STREAM_STALL_MS: 'soon' }, 'JETFLOW_STREAM_STALL_MS', /expected an integer/);
  fails({ JETFLOW_HTTP_MAX_CONNECTIONS: '0' }, 'JETFLOW_HTTP_MAX_CONNECTIONS', /must be >= 1/);
  fails({ JETFLOW_HTTP_HEADERS_TIMEOUT_MS: '40000' }, 'JETFLOW_HTTP_HEADERS_TIMEOUT_MS', /must be <= JETFLOW_HTTP_REQUEST_TIMEOUT_MS \(30000\), got 40000/);
});
