import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  BUILTIN_FLOWS,
  DefinitionVersions,
  FlowRegistry,
  INSIGHTS,
  INSIGHTS_V2,
  LEGACY_FLOWS,
  applyResult,
  callbackBody,
  chunkToken,
  knownSubjects,
  newFlowState,
  pendingDispatches,
  validateDefinitions,
  type FlowState,
} from './index.js';

const records = (n: number) => Array.from({ length: n }, (_, i) => ({ id: `r${i}`, text: `text ${i}` }));
const start = (def = INSIGHTS_V2, n = 600): FlowState =>
  newFlowState({ flowId: 'fins2', tenant: 'default', flow: 'insights', inputJson: JSON.stringify({ records: records(n) }), submittedAt: 1 }, def, 1);

test('insights v2 is the built-in, valid against the subjects the built-in workers serve; v1 is kept as a legacy definition', () => {
  assert.deepEqual(
    BUILTIN_FLOWS.map((d) => [d.name, d.version]),
    [['insights', 2]],
  );
  assert.equal(validateDefinitions([INSIGHTS_V2], knownSubjects(false)).length, 1);
  assert.deepEqual(
    LEGACY_FLOWS.map((d) => [d.name, d.version]),
    [['insights', 1]],
  );
});

test('a flow started on v1 finds its definition with only v2 loaded (no store read), and finishes on it', async () => {
  const v1 = newFlowState({ flowId: 'fins1', tenant: 'default', flow: 'insights', inputJson: JSON.stringify({ records: records(3) }), submittedAt: 1 }, INSIGHTS, 1);
  let reads = 0;
  const versions = new DefinitionVersions(new FlowRegistry([INSIGHTS_V2]), () => {
    reads++;
    return Promise.resolve(undefined);
  });
  assert.equal(versions.known(v1), INSIGHTS);
  assert.deepEqual(await versions.lookup(v1), { def: INSIGHTS });
  assert.equal(reads, 0);
  assert.deepEqual(
    pendingDispatches(v1, INSIGHTS).map((d) => d.task),
    ['text', 'features', 'embeddings'],
  );
});

test('v2 maps prepare and score over the records in chunks of 250; the callback leaves the internal steps out and keeps the v1 report keys', () => {
  const s = start();
  assert.equal(s.tasks.prepare!.chunks, 3);
  assert.equal(s.tasks.score!.chunks, 3);
  assert.deepEqual(
    pendingDispatches(s, INSIGHTS_V2).map((d) => `${d.task}:${d.chunk ?? '-'}`),
    ['prepare:0', 'prepare:1', 'prepare:2', 'score:0', 'score:1', 'score:2'],
  );
  const ok = (task: string, chunk?: number) =>
    applyResult(
      s,
      INSIGHTS_V2,
      {
        task,
        succeeded: true,
        attempts: 1,
        output: chunk !== undefined ? { task, chunk } : { task },
        ...(chunk !== undefined ? { chunk, token: chunkToken(s.tasks[task]!.token!, chunk) } : { token: s.tasks[task]!.token }),
      },
      10,
    );
  for (const t of ['prepare', 'score']) for (let c = 0; c < 3; c++) ok(t, c);
  for (const t of ['text', 'features', 'embeddings']) ok(t);
  for (const t of ['sentiment', 'anomaly', 'keywords']) ok(t);
  assert.equal(s.status, 'succeeded');
  const body = callbackBody(s, () => [{ leaked: true }]);
  assert.deepEqual(Object.keys(body.results).sort(), ['anomaly', 'keywords', 'sentiment']);
  assert.deepEqual(Object.keys(body.datasets).sort(), ['embeddings', 'features', 'text']);
  assert.deepEqual(body.datasets.text, { task: 'text' });
});
