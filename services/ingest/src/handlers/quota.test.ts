import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { JetflowError, STATUS } from '@jetflow/errors';
import { tenantLimits } from '@jetflow/config';
import { TenantQuota } from './quota.js';
import { TenantLoad } from '../adapters/tenant-load.js';

const refusal = (fn: () => void) => {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof JetflowError);
    return err;
  }
  assert.fail('expected a refusal');
};

describe('per-tenant limits at ingest', () => {
  test('submissions per second: a bucket of `burst`, refilled at `rps`; past it quota_exceeded (429 / RESOURCE_EXHAUSTED) with when to retry', () => {
    let now = 0;
    const q = new TenantQuota(tenantLimits({ JETFLOW_TENANT_LIMITS: 'acme=rps:2,burst:3' }), { inflight: () => 0 }, () => now);
    for (let i = 0; i < 3; i++) q.check('acme');
    const e = refusal(() => q.check('acme'));
    assert.equal(e.code, 'quota_exceeded');
    assert.equal(STATUS[e.code].http, 429);
    assert.equal(STATUS[e.code].grpc, 8, 'RESOURCE_EXHAUSTED');
    assert.equal(e.retryAfterMs, 500, 'one token comes back in 1/rps s');
    assert.match(e.message, /tenant "acme" is past its limit of 2 submissions per second \(bursts of 3\)/);
    now += 500;
    q.check('acme');
    assert.throws(() => q.check('acme'));
    for (let i = 0; i < 50; i++) q.check('globex');
  });

  test('flows in flight: the reports plus what was accepted here since the last one; a report replaces the local count', () => {
    let reported = 0;
    const q = new TenantQuota(tenantLimits({ JETFLOW_TENANT_LIMITS: 'acme=inflight:3' }), { inflight: (t) => (t === 'acme' ? reported : 0) });
    q.check('acme');
    q.accepted('acme');
    q.accepted('acme');
    q.check('acme');
    q.accepted('acme');
    const e = refusal(() => q.check('acme'));
    assert.equal(e.code, 'quota_exceeded');
    assert.equal(e.retryAfterMs, 1_000);
    assert.match(e.message, /tenant "acme" has 3 flows in flight/);
    reported = 2;
    q.reported();
    q.check('acme');
    reported = 3;
    assert.throws(() => q.check('acme'), /3 flows in flight/);
    q.check('globex');
  });

  test('a refusal for flows in flight spends no token of the rate', () => {
    let inflight = 5;
    const q = new TenantQuota(tenantLimits({ JETFLOW_TENANT_LIMITS: 'acme=inflight:5,rps:1,burst:1' }), { inflight: () => inflight }, () => 0);
    for (let i = 0; i < 5; i++) assert.throws(() => q.check('acme'), /flows in flight/);
    inflight = 0;
    q.check('acme');
  });

  test('TenantLoad sums what every replica runs, adds the newest queued counts, and drops silent replicas', () => {
    let now = 0;
    const fresh: boolean[] = [];
    const load = new TenantLoad({ now: () => now, ttlMs: 3_000, onReport: (l) => fresh.push(l.queuedNow === true) });
    load.report({ instance: 'o1', running: new Map([['acme', 4]]), queued: new Map([['acme', 10]]), queuedNow: true });
    now += 100;
    load.report({
      instance: 'o2',
      running: new Map([
        ['acme', 1],
        ['globex', 2],
      ]),
      queued: new Map([['acme', 7]]),
    });
    assert.equal(load.inflight('acme'), 4 + 1 + 7, 'the newest report says how many wait');
    assert.equal(load.inflight('globex'), 2);
    assert.deepEqual(fresh, [true, false], 'ingest forgets its own acceptances only on freshly measured counts');
    assert.equal(load.inflight('other'), 0);
    now += 2_950;
    assert.equal(load.inflight('acme'), 1 + 7, 'o1 silent for 3 s');
    now += 200;
    assert.equal(load.inflight('acme'), 0);
  });
});
