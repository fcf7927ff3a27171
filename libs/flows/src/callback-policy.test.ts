import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CallbackPolicy, nonPublicReason, type Resolver } from './callback-policy.js';
import { validateSubmission } from './submission.js';
import { loadFlowRegistry } from './load.js';

const strict = new CallbackPolicy([]);

test('nonPublicReason: public unicast passes; every inside or special range is named', () => {
  for (const ip of ['8.8.8.8', '1.1.1.1', '2606:4700:4700::1111', '2a00:1450:4001:82a::200e', '::ffff:8.8.8.8', '64:ff9b::8.8.8.8', '2002:808:808::1'])
    assert.equal(nonPublicReason(ip), undefined, ip);
  const cases: Array<[string, RegExp]> = [
    ['127.0.0.1', /IPv4 loopback/],
    ['0.0.0.0', /IPv4 unspecified/],
    ['10.1.2.3', /IPv4 private/],
    ['172.16.0.1', /IPv4 private/],
    ['192.168.1.1', /IPv4 private/],
    ['169.254.169.254', /IPv4 linkLocal/],
    ['100.64.0.1', /IPv4 carrierGradeNat/],
    ['255.255.255.255', /IPv4 broadcast/],
    ['224.0.0.1', /IPv4 multicast/],
    ['240.0.0.1', /IPv4 reserved/],
    ['192.0.2.1', /IPv4 reserved/],
    ['198.18.0.1', /IPv4/],
    ['::', /IPv6 unspecified/],
    ['::1', /IPv6 loopback/],
    ['fe80::1', /IPv6 linkLocal/],
    ['fc00::1', /IPv6 uniqueLocal/],
    ['fd12:3456::1', /IPv6 uniqueLocal/],
    ['ff02::1', /IPv6 multicast/],
    ['2001:db8::1', /IPv6 reserved/],
    ['::ffff:127.0.0.1', /IPv4-mapped IPv6 of 127\.0\.0\.1 \(IPv4 loopback\)/],
    ['::ffff:7f00:1', /IPv4-mapped IPv6 of 127\.0\.0\.1/],
    ['::ffff:a9fe:a9fe', /IPv4-mapped IPv6 of 169\.254\.169\.254/],
    ['::127.0.0.1', /IPv4-compatible IPv6 \(deprecated\) of 127\.0\.0\.1/],
    ['::8.8.8.8', /IPv4-compatible IPv6 \(deprecated\) of 8\.8\.8\.8/],
    ['::ffff:0:127.0.0.1', /IPv4-translated IPv6 of 127\.0\.0\.1/],
    ['64:ff9b::127.0.0.1', /NAT64 IPv6 of 127\.0\.0\.1/],
    ['64:ff9b::10.0.0.1', /NAT64 IPv6 of 10\.0\.0\.1/],
    ['64:ff9b:1::1', /local-use NAT64/],
    ['2002:7f00:1::', /6to4 IPv6 of 127\.0\.0\.1/],
    ['2002:a9fe:a9fe::1', /6to4 IPv6 of 169\.254\.169\.254/],
    // Teredo: server 65.54.227.120 (public), client 127.0.0.1 inverted in the last 32 bits.
    ['2001:0:4136:e378:8000:63bf:80ff:fffe', /Teredo IPv6 of 127\.0\.0\.1/],
    ['not-an-ip', /not an IP address/],
    ['fe80::1%eth0', /not an IP address/],
  ];
  for (const [ip, re] of cases) assert.match(nonPublicReason(ip) ?? 'PUBLIC', re, ip);
  // Teredo with public ends is public: the embedded addresses decide.
  assert.equal(nonPublicReason('2001:0:4136:e378:8000:63bf:f7f7:f7f7'), undefined);
});

test('checkUrl refuses loopback in every spelling the URL parser accepts, naming the address', () => {
  const spellings = [
    'http://127.0.0.1/',
    'http://127.1/',
    'http://0x7f.1/',
    'http://0x7f000001/',
    'http://2130706433/',
    'http://017700000001/',
    'http://0177.0.0.1/',
    'http://%31%32%37.0.0.1/',
    'http://127.0.0.1./',
    'http://[::ffff:127.0.0.1]/',
    'http://[0:0:0:0:0:ffff:7f00:1]/',
    'http://[::127.0.0.1]/',
    'http://[::ffff:0:127.0.0.1]/',
    'http://[64:ff9b::127.0.0.1]/',
    'http://[2002:7f00:1::]/',
    'http://[::1]:8080/',
    'http://[::]/',
    'http://0/',
    'http://0.0.0.0:9000/',
    'http://169.254.169.254/latest/meta-data/',
    'https://[fe80::1]/',
  ];
  for (const url of spellings) assert.match(strict.checkUrl(url) ?? 'ALLOWED', /^target \S+ is not a public address \(.+\) and not in JETFLOW_CALLBACK_ALLOWLIST$/, url);
  assert.match(strict.checkUrl('http://[::127.0.0.1]/')!, /target ::7f00:1 is not a public address \(IPv4-compatible IPv6 \(deprecated\) of 127\.0\.0\.1\)/);
  for (const url of ['http://localhost:8080/', 'http://LOCALHOST./', 'http://api.localhost/', 'http://metadata.google.internal/', 'http://printer.local/'])
    assert.match(strict.checkUrl(url) ?? 'ALLOWED', /is not public and not in JETFLOW_CALLBACK_ALLOWLIST/, url);
  assert.equal(strict.checkUrl('ftp://example.com/x'), 'must be http or https');
  assert.equal(strict.checkUrl('not a url'), 'not a valid URL');
  for (const url of ['https://hooks.example.com/x', 'http://8.8.8.8/', 'http://[2606:4700:4700::1111]/', 'http://[::ffff:8.8.8.8]/']) assert.equal(strict.checkUrl(url), undefined, url);
});

test('the allowlist: CIDRs and hosts it names pass; an IPv4 rule covers the ::ffff: form, never ::a.b.c.d', () => {
  const p = new CallbackPolicy(['127.0.0.0/8', 'hooks.corp', '10.1.0.0/16', 'fd00::/8']);
  for (const url of [
    'http://127.0.0.1:8080/',
    'http://0x7f.1/',
    'http://2130706433/',
    'http://[::ffff:127.0.0.1]/',
    'http://hooks.corp/',
    'http://HOOKS.corp./',
    'http://10.1.2.3/',
    'http://[fd00::5]/',
  ])
    assert.equal(p.checkUrl(url), undefined, url);
  for (const url of ['http://[::127.0.0.1]/', 'http://[64:ff9b::127.0.0.1]/', 'http://10.2.0.1/', 'http://[::1]/']) assert.ok(p.checkUrl(url), url);
  assert.equal(CallbackPolicy.validateEntries(['127.0.0.0/8', '::1', 'localhost', 'fd00::/8']), undefined);
  assert.equal(CallbackPolicy.validateEntries(['10.0.0.0/']), 'bad CIDR "10.0.0.0/"');
  assert.equal(CallbackPolicy.validateEntries(['10.0.0.0/33']), 'bad CIDR "10.0.0.0/33"');
  assert.equal(CallbackPolicy.validateEntries(['hooks_corp!']), 'bad host "hooks_corp!"');
});

test('target() resolves once and checks every address; a named host is trusted with what it resolves to', async () => {
  let calls = 0;
  const answers =
    (...addrs: string[]): Resolver =>
    async () => {
      calls++;
      return addrs.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
    };
  const ok = await strict.target('https://hooks.example.com/x', answers('8.8.8.8', '2606:4700:4700::1111'));
  assert.deepEqual(ok, { ok: true, host: 'hooks.example.com', address: { address: '8.8.8.8', family: 4 } });
  assert.equal(calls, 1);
  // One bad address among good ones is enough to refuse: the connection could pick it.
  const mixed = await strict.target('https://hooks.example.com/x', answers('8.8.8.8', '127.0.0.1'));
  assert.deepEqual(mixed, { ok: false, reason: 'hooks.example.com resolves to 127.0.0.1, which is not a public address (IPv4 loopback) and not in JETFLOW_CALLBACK_ALLOWLIST' });
  assert.match(((await strict.target('https://x.example/', answers('::ffff:10.0.0.1'))) as { reason: string }).reason, /IPv4-mapped IPv6 of 10\.0\.0\.1/);
  assert.deepEqual(await strict.target('https://x.example/', answers()), { ok: false, reason: 'x.example resolves to no address' });
  await assert.rejects(
    strict.target('https://x.example/', async () => {
      throw new Error('getaddrinfo ENOTFOUND x.example');
    }),
    /ENOTFOUND/,
  );
  // Literal addresses are never resolved.
  calls = 0;
  assert.deepEqual(await new CallbackPolicy(['127.0.0.0/8']).target('http://0x7f.1:9/', answers('8.8.8.8')), { ok: true, host: '127.0.0.1', address: { address: '127.0.0.1', family: 4 } });
  assert.equal(calls, 0);
  assert.equal((await strict.target('http://[::127.0.0.1]/', answers('8.8.8.8'))).ok, false);
  const named = new CallbackPolicy(['hooks.corp']);
  assert.deepEqual(await named.target('http://hooks.corp/', answers('10.9.8.7')), { ok: true, host: 'hooks.corp', address: { address: '10.9.8.7', family: 4 } });
});

test('submission-time validation uses the same checks for literal addresses', () => {
  const registry = loadFlowRegistry({});
  const submit = (callbackUrl: string) => {
    try {
      validateSubmission({ flow: 'insights', input: { records: [{ id: 'r1', text: 'x' }] }, callbackUrl }, { registry, checkCallbackUrl: (u) => strict.checkUrl(u) });
      return undefined;
    } catch (err) {
      return (err as { details?: Array<{ path: string; message: string }> }).details;
    }
  };
  for (const url of ['http://[::ffff:127.0.0.1]/', 'http://[::127.0.0.1]/', 'http://0x7f.1/', 'http://2130706433/', 'http://0177.0.0.1/']) {
    const details = submit(url);
    assert.equal(details?.[0]?.path, 'callbackUrl', url);
    assert.match(details[0].message, /is not a public address/, url);
  }
  assert.equal(submit('https://hooks.example.com/x'), undefined);
});
