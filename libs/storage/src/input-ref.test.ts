import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { parseInputObject } from './input-ref.js';

const b = (s: string) => new TextEncoder().encode(s);

describe('parseInputObject (inputRef contents)', () => {
  it('takes one JSON object, on one line or several', () => {
    assert.deepEqual(parseInputObject(b('{"records":[{"id":"a","text":"x"}]}'), 's3://b/k'), { records: [{ id: 'a', text: 'x' }] });
    assert.deepEqual(parseInputObject(b('{\n  "records": [\n    {"id": "a", "text": "x"}\n  ]\n}\n'), 's3://b/k'), { records: [{ id: 'a', text: 'x' }] });
  });
  it('makes JSON lines, one record per line, into { records } (blank lines skipped), gzip or not', () => {
    const jl = '{"id":"a","text":"x"}\n\n{"id":"b","text":"y"}\n';
    const want = {
      records: [
        { id: 'a', text: 'x' },
        { id: 'b', text: 'y' },
      ],
    };
    assert.deepEqual(parseInputObject(b(jl), 's3://b/k'), want);
    assert.deepEqual(parseInputObject(gzipSync(jl), 's3://b/k.gz'), want);
  });
  it('names what is wrong: the line that is not JSON, an array, an empty object', () => {
    assert.throws(() => parseInputObject(b('{"id":"a"}\n{"id": oops}\n'), 's3://b/k'), { code: 'internal', reason: 'invalid_data', message: /s3:\/\/b\/k line 2 is not JSON/ });
    assert.throws(() => parseInputObject(b('{"records": ['), 's3://b/k'), { reason: 'invalid_data', message: /s3:\/\/b\/k is not valid JSON/ });
    assert.throws(() => parseInputObject(b('[1,2]'), 's3://b/k'), { reason: 'invalid_data', message: /is a JSON array/ });
    assert.throws(() => parseInputObject(b('{"id":"a"}\n[1]\n'), 's3://b/k'), { reason: 'invalid_data', message: /line 2 is not a JSON object/ });
    assert.throws(() => parseInputObject(b('  \n'), 's3://b/k'), { reason: 'invalid_data', message: /is empty/ });
  });
});
