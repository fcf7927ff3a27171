import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MAX_KV_KEY_LENGTH, toKvKey } from './keys.js';

// The rule nats.js and the server apply to KV keys.
const legal = (k: string) => /^[-/=.\w]+$/.test(k) && !k.startsWith('.') && !k.endsWith('.') && !k.includes('..');

test('legal keys pass through unchanged', () => {
  for (const k of ['abc', 'tenant/acme/flow-1', 'a.b.c', 'A_Z-09', 'x.y/z']) assert.equal(toKvKey(k), k);
});

test('odd keys are escaped into legal, distinct keys', () => {
  const odd = ['a b', 'a=b', 'a=3Db', '.lead', 'trail.', 'a..b', '...', 'x*', 'x>', 'ünï', '🙂', 'a:b', 'a%20b', 'tab\t', '='];
  const mapped = odd.map(toKvKey);
  for (const [i, k] of mapped.entries()) assert.ok(legal(k), `${JSON.stringify(odd[i])} -> ${k} is not legal`);
  assert.equal(new Set(mapped).size, odd.length);
  assert.equal(toKvKey('a b'), 'a=20b');
  assert.equal(toKvKey('a=b'), 'a=3Db');
  assert.notEqual(toKvKey('a=b'), toKvKey('a=3Db'));
});

test('long keys are hashed, stay legal and distinct', () => {
  const long1 = 'k'.repeat(500);
  const long2 = `${'k'.repeat(499)}j`;
  const h1 = toKvKey(long1);
  const h2 = toKvKey(long2);
  assert.ok(h1.length <= MAX_KV_KEY_LENGTH && legal(h1));
  assert.notEqual(h1, h2);
  assert.match(h1, /=H[0-9a-f]{64}$/);
  assert.ok(legal(toKvKey('.'.repeat(300))));
  assert.equal(toKvKey('k'.repeat(MAX_KV_KEY_LENGTH)), 'k'.repeat(MAX_KV_KEY_LENGTH));
});

test('empty keys are refused', () => {
  assert.throws(() => toKvKey(''), /non-empty/);
});
