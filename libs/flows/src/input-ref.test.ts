import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FlowRegistry, INSIGHTS_V2, inputRefProblem, validateSubmission } from './index.js';

const PREFIXES = ['s3://jetflow-data/uploads/{tenant}/'];

test('inputRefProblem: s3://bucket/key under the tenant own prefix, nothing else', () => {
  assert.equal(inputRefProblem('s3://jetflow-data/uploads/acme/2026/batch.jsonl', 'acme', PREFIXES), undefined);
  assert.match(inputRefProblem('s3://jetflow-data/uploads/other/batch.jsonl', 'acme', PREFIXES)!, /must be under s3:\/\/jetflow-data\/uploads\/acme\//);
  assert.match(inputRefProblem('s3://jetflow-data/inputs/acme/abc', 'acme', PREFIXES)!, /must be under/);
  assert.match(inputRefProblem('https://example.com/x', 'acme')!, /not an s3:\/\/bucket\/key reference/);
  assert.match(inputRefProblem('s3://jetflow-data/', 'acme')!, /not an s3:\/\/bucket\/key/);
  assert.match(inputRefProblem('s3://UPPER/x', 'acme')!, /not an S3 bucket name/);
  assert.match(inputRefProblem('s3://jetflow-data/uploads/acme/../other/x', 'acme', PREFIXES)!, /segment/);
  assert.match(inputRefProblem('s3://jetflow-data//x', 'acme')!, /empty first segment/);
  assert.match(inputRefProblem('s3://jetflow-data/uploads/acme/a\nb', 'acme', PREFIXES)!, /control character/);
  assert.match(inputRefProblem(`s3://jetflow-data/${'k'.repeat(1100)}`, 'acme')!, /longer than 1024 bytes/);
});

test('validateSubmission: input or inputRef, exactly one, the ref checked against the prefixes', () => {
  const opts = { registry: new FlowRegistry([INSIGHTS_V2]), tenant: 'acme', inputRefPrefixes: PREFIXES };
  const sub = validateSubmission({ flow: 'insights', inputRef: 's3://jetflow-data/uploads/acme/b.jsonl' }, opts);
  assert.equal(sub.inputRef, 's3://jetflow-data/uploads/acme/b.jsonl');
  assert.equal(sub.input, undefined);
  const details = (body: unknown) => {
    try {
      validateSubmission(body, opts);
    } catch (err) {
      return (err as { details?: Array<{ path: string; message: string }> }).details ?? [];
    }
    return [];
  };
  assert.deepEqual(
    details({ flow: 'insights', inputRef: 's3://jetflow-data/uploads/x/b.jsonl' }).map((d) => d.path),
    ['inputRef'],
  );
  assert.match(details({ flow: 'insights' })[0]!.message, /required: the input, or inputRef/);
  assert.match(details({ flow: 'insights', input: { records: [{ id: 'a', text: 'x' }] }, inputRef: 's3://jetflow-data/uploads/acme/b' })[0]!.message, /not both/);
});
