import assert from 'node:assert/strict';
import { test } from 'node:test';
import { directGetsCatchUp } from './kv-view.js';

test('direct gets are trusted only from servers that answer them once caught up (2.9.17+, nats-server#4162)', () => {
  for (const v of ['2.9.10', '2.9.16', '2.8.4', 'nonsense', undefined]) assert.equal(directGetsCatchUp(v), false, String(v));
  for (const v of ['2.9.17', '2.9.25', '2.10.0', '2.11.4', 'v2.12.1', '3.0.0']) assert.equal(directGetsCatchUp(v), true, v);
});
