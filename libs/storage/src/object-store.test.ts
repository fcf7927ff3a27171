import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { S3Client } from '@aws-sdk/client-s3';
import { createS3Client } from './clients.js';
import { isStorageError } from './errors.js';
import { startLocalAws, type LocalAws } from './local-aws.js';
import { ObjectStore } from './object-store.js';
import { parseS3Ref } from './refs.js';

const credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

describe('ObjectStore against s3rver', () => {
  let aws: LocalAws;
  let s3: S3Client;
  let store: ObjectStore;

  before(async () => {
    aws = await startLocalAws();
    s3 = createS3Client({ s3Endpoint: aws.s3Endpoint, region: 'us-east-1', credentials });
    store = new ObjectStore({ s3, bucket: 'jetflow-test', claimThresholdBytes: 1024 });
    await store.ensureBucket();
  });
  after(async () => {
    s3.destroy();
    await aws.stop();
  });

  test('ensureBucket is idempotent, also when replicas race', async () => {
    await store.ensureBucket();
    const racers = Array.from({ length: 5 }, () => new ObjectStore({ s3, bucket: 'jetflow-race' }));
    await Promise.all(racers.map((r) => r.ensureBucket()));
    const { ref } = await racers[0]!.putBytes('x', Buffer.from('ok'));
    assert.equal(Buffer.from(await store.getBytes(ref)).toString(), 'ok');
  });

  test('bytes and JSON round trip', async () => {
    const bytes = new Uint8Array([0, 1, 2, 255, 254]);
    const put = await store.putBytes('raw/a.bin', bytes);
    assert.deepEqual(put, { ref: 's3://jetflow-test/raw/a.bin', bytes: 5 });
    assert.deepEqual(new Uint8Array(await store.getBytes(put.ref)), bytes);

    const value = { name: 'ünïcødé ✓', n: [1, 2.5, null], nested: { ok: true } };
    const json = await store.putJson('raw/a.json', value);
    assert.deepEqual(await store.getJson(json.ref), value);
  });

  test('JSON lines are gzip-compressed and read back in order', async () => {
    const rows = Array.from({ length: 5000 }, (_, i) => ({ id: `r${i}`, text: `line ${i} with \n newline and ✓`, v: i / 3 }));
    const put = await store.putJsonLines('datasets/flow-1/text.jsonl.gz', rows);
    assert.equal(put.ref, 's3://jetflow-test/datasets/flow-1/text.jsonl.gz');
    assert.equal(put.rows, 5000);
    assert.ok(put.bytes < put.rawBytes / 3, `expected compression, got ${put.bytes} of ${put.rawBytes}`);

    const stored = Buffer.from(await store.getBytes(put.ref));
    assert.equal(stored.length, put.bytes);
    assert.deepEqual([stored[0], stored[1]], [0x1f, 0x8b], 'stored object is gzip');

    assert.deepEqual(await store.getJsonLines(put.ref), rows);
  });

  test('JSON lines from an async iterable, empty files and plain (uncompressed) files', async () => {
    async function* gen() {
      for (let i = 0; i < 3; i++) yield { i };
    }
    const put = await store.putJsonLines('datasets/gen.jsonl.gz', gen());
    assert.equal(put.rows, 3);
    assert.deepEqual(await store.getJsonLines(put.ref), [{ i: 0 }, { i: 1 }, { i: 2 }]);

    const empty = await store.putJsonLines('datasets/empty.jsonl.gz', []);
    assert.equal(empty.rows, 0);
    assert.deepEqual(await store.getJsonLines(empty.ref), []);

    const plain = await store.putBytes('datasets/plain.jsonl', Buffer.from('{"a":1}\r\n\n{"a":2}'));
    assert.deepEqual(await store.getJsonLines(plain.ref), [{ a: 1 }, { a: 2 }]);
  });

  test('readJsonLines streams and can stop early', async () => {
    const rows = Array.from({ length: 20_000 }, (_, i) => ({ i, pad: 'x'.repeat(50) }));
    const { ref } = await store.putJsonLines('datasets/big.jsonl.gz', rows);
    const seen: number[] = [];
    for await (const row of store.readJsonLines<{ i: number }>(ref)) {
      seen.push(row.i);
      if (seen.length === 10) break;
    }
    assert.deepEqual(seen, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    // The connection was released: further reads still work.
    assert.equal((await store.getJsonLines(ref)).length, 20_000);
  });

  test('corrupt JSON lines fail naming the ref and line', async () => {
    const { ref } = await store.putBytes('datasets/bad.jsonl', Buffer.from('{"a":1}\n{oops\n'));
    await assert.rejects(store.getJsonLines(ref), (err: unknown) => {
      assert.ok(isStorageError(err, 'invalid_data'));
      assert.match(err.message, /datasets\/bad\.jsonl: line 2/);
      return true;
    });
    await assert.rejects(store.putJsonLines('datasets/x', [1, undefined]), (err: unknown) => isStorageError(err, 'invalid_argument'));
  });

  test('missing objects and bad refs', async () => {
    await assert.rejects(store.getBytes('s3://jetflow-test/nope'), (err: unknown) => {
      assert.ok(isStorageError(err, 'not_found'));
      assert.equal(err.code, 'not_found');
      return true;
    });
    await assert.rejects(store.getBytes('s3://no-such-bucket-here/x'), (err: unknown) => isStorageError(err, 'not_found'));
    await assert.rejects(store.getBytes('http://x/y'), (err: unknown) => isStorageError(err, 'invalid_ref'));
    await assert.rejects(store.getBytes('s3://bucket-only'), (err: unknown) => isStorageError(err, 'invalid_ref'));
    await assert.rejects(store.putBytes('', Buffer.alloc(1)), (err: unknown) => isStorageError(err, 'invalid_argument'));
  });

  test('claim check: inline up to the threshold, a content-addressed ref above it', async () => {
    const small = Buffer.alloc(1024, 7);
    const inline = await store.claimCheck(small);
    assert.deepEqual(inline, { inline: small });

    const big = Buffer.alloc(1025, 7);
    const claim = await store.claimCheck(big, { keyPrefix: 'claims/flow-9' });
    assert.equal(claim.inline, undefined);
    assert.ok(claim.ref);
    assert.match(parseS3Ref(claim.ref).key, /^claims\/flow-9\/[0-9a-f]{64}$/);
    assert.deepEqual(Buffer.from(await store.resolveClaim(claim)), big);
    assert.deepEqual(await store.resolveClaim(inline), small);

    // Same content, same ref: a retried publish carries an identical message.
    assert.deepEqual(await store.claimCheck(Buffer.alloc(1025, 7), { keyPrefix: 'claims/flow-9/' }), claim);

    // Per-call threshold.
    assert.ok((await store.claimCheck(small, { thresholdBytes: 10 })).ref);
    assert.ok((await store.claimCheck(big, { thresholdBytes: 1_000_000 })).inline);

    await assert.rejects(store.resolveClaim({}), (err: unknown) => isStorageError(err, 'invalid_data'));
  });

  test('claim check of JSON values', async () => {
    const small = { a: 1 };
    const big = { text: 'y'.repeat(5000) };
    const c1 = await store.claimCheckJson(small);
    const c2 = await store.claimCheckJson(big);
    assert.ok(c1.inline);
    assert.ok(c2.ref);
    assert.deepEqual(await store.resolveClaimJson(c1), small);
    assert.deepEqual(await store.resolveClaimJson(c2), big);
  });
});
