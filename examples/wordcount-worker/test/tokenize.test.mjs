// Unit tests of the task, with no NATS: runTask runs it in this process as the worker would.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { errorCodeOf, runTask } from '@jetflow/worker';
import { tokenize } from '../tasks.mjs';

test('tokenize counts words per record and the most frequent ones', async () => {
  const { output } = await runTask(tokenize, {
    flowInput: {
      records: [
        { id: 'a', text: 'The cat and the hat' },
        { id: 'b', text: "It's the cat!" },
      ],
    },
  });
  assert.equal(output.words, 8);
  assert.deepEqual(output.perRecord, [
    { id: 'a', words: 5 },
    { id: 'b', words: 3 },
  ]);
  assert.deepEqual(output.top.slice(0, 2), [
    ['the', 3],
    ['cat', 2],
  ]);
});

test('a record without text is a terminal error naming it (no retry)', async () => {
  await assert.rejects(
    runTask(tokenize, { flowInput: { records: [{ id: 'a', text: 'ok' }, { id: 'b' }] } }),
    (err) => errorCodeOf(err) === 'terminal' && /records\[1\]\.text must be a string/.test(err.message),
  );
});

test('past the soft limit the task gives up with a retryable error', async () => {
  const cancelled = AbortSignal.abort();
  await assert.rejects(
    runTask(tokenize, { flowInput: { records: [{ text: 'x' }] } }, { signal: cancelled }),
    (err) => errorCodeOf(err) !== 'terminal' && /soft time limit/.test(err.message),
  );
});
