import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { decodeJsonLines, withDecoded } from './datasets.js';

const lines = (rows: unknown[]) => Buffer.from(rows.map((r) => `${JSON.stringify(r)}\n`).join(''));
const gz = (rows: unknown[]) => new Uint8Array(gzipSync(lines(rows)));

describe('datasets as bytes', () => {
  it('parses gzip and plain JSON-lines bodies in order, skipping blank lines', () => {
    const plain = new Uint8Array(Buffer.from('{"id":"c"}\n\n{"id":"d"}'));
    assert.deepEqual(decodeJsonLines([gz([{ id: 'a' }, { id: 'b' }]), plain, gz([])], 'dataset text'), [{ id: 'a' }, { id: 'b' }, { id: 'c' }, { id: 'd' }]);
    assert.deepEqual(decodeJsonLines([], 'dataset text'), []);
  });

  it('names the dataset, the part and the line of what is wrong', () => {
    const bad = new Uint8Array(gzipSync(Buffer.from('{"id":"a"}\n{"id":\n')));
    assert.throws(
      () => decodeJsonLines([gz([{ id: 'x' }]), bad], 'dataset features'),
      (e: Error & { code?: string }) => e.code === 'terminal' && e.message === 'dataset features, part 1, line 2: not JSON',
    );
    assert.throws(() => decodeJsonLines([new Uint8Array([0x1f, 0x8b, 1, 2, 3])], 'dataset score'), /dataset score: part 0 is not valid gzip/);
    assert.throws(() => decodeJsonLines(['text' as unknown as Uint8Array], 'dataset score'), /dataset score: part 0 is not bytes/);
  });

  it('puts the parsed datasets beside the others, a dependency named __proto__ as a plain key', () => {
    const parsed = { features: [{ id: 'a', values: {} }] };
    const out = withDecoded(parsed, { embeddings: [gz([{ id: 'a', vector: [1, 0] }])], ['__proto__']: [gz([{ id: 'p' }])] });
    assert.deepEqual(out.features, parsed.features);
    assert.deepEqual(out.embeddings, [{ id: 'a', vector: [1, 0] }]);
    assert.deepEqual(Object.getOwnPropertyDescriptor(out, '__proto__')?.value, [{ id: 'p' }]);
    assert.equal(Object.getPrototypeOf(out), Object.prototype);
    assert.equal(withDecoded(parsed, undefined), parsed);
    assert.throws(() => withDecoded({}, { text: 'x' as unknown as Uint8Array[] }), /dataset text: its bodies are not an array/);
  });
});
