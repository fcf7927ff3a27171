import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError } from './index.js';
import { DEFAULT_TENANT_LIMIT, tenantLimits } from './tenant-limits.js';

const refused = (message: RegExp) => (e: unknown) => e instanceof ConfigError && e.variable === 'JETFLOW_TENANT_LIMITS' && message.test(e.message);
const parse = (v: string) => tenantLimits({ JETFLOW_TENANT_LIMITS: v });

describe('JETFLOW_TENANT_LIMITS', () => {
  test('unset or blank: every tenant gets the generous defaults', () => {
    for (const env of [{}, { JETFLOW_TENANT_LIMITS: '  ' }]) {
      const l = tenantLimits(env);
      assert.deepEqual(l.of('acme'), DEFAULT_TENANT_LIMIT);
      assert.deepEqual(l.tenants(), []);
    }
  });

  test('named tenants, * for the rest; what an entry leaves out comes from *, then the defaults; burst follows rps', () => {
    const l = parse('acme=rps:100,inflight:500,weight:2; globex=burst:7 ;*=rps:0.5,inflight:off');
    assert.deepEqual(l.of('acme'), { rps: 100, burst: 100, inflight: 500, weight: 2 });
    assert.deepEqual(l.of('globex'), { rps: 0.5, burst: 7, inflight: Infinity, weight: 1 });
    assert.deepEqual(l.of('other'), { rps: 0.5, burst: 1, inflight: Infinity, weight: 1 });
    assert.deepEqual(l.tenants().sort(), ['acme', 'globex']);
    assert.deepEqual(parse('acme=rps:off').of('acme'), { ...DEFAULT_TENANT_LIMIT, rps: Infinity, burst: Infinity });
  });

  test('bad entries fail naming the variable, the tenant and what is wrong', () => {
    assert.throws(() => parse('acme'), refused(/expected "tenant=key:value,\.\.\." entries/));
    assert.throws(() => parse('ACME=rps:1'), refused(/invalid tenant name "ACME"/));
    assert.throws(() => parse('acme=rps:1;acme=inflight:2'), refused(/tenant "acme" is listed twice/));
    assert.throws(() => parse('acme='), refused(/tenant "acme" has no limits/));
    assert.throws(() => parse('acme=rate:5'), refused(/tenant "acme": unknown key "rate" \(known: rps, burst, inflight, weight\)/));
    assert.throws(() => parse('acme=rps'), refused(/tenant "acme": expected key:value, got "rps"/));
    assert.throws(() => parse('acme=rps:1,rps:2'), refused(/rps is given twice/));
    assert.throws(() => parse('acme=rps:0'), refused(/rps must be a number above 0/));
    assert.throws(() => parse('acme=inflight:1.5'), refused(/inflight must be a whole number above 0/));
    assert.throws(() => parse('acme=inflight:-3'), refused(/inflight must be a whole number/));
    assert.throws(() => parse('acme=weight:off'), refused(/weight cannot be off/));
    assert.throws(() => parse('acme=weight:5000'), refused(/weight must be a whole number above 0 and at most 1000, got "5000"/));
    assert.throws(() => parse('acme=rps:off,burst:10'), refused(/burst needs an rps limit/));
  });
});
