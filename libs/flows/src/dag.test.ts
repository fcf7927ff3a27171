/**
 * DAG definitions with map over data: validation (every refusal names its path), the compiled plan,
 * and the pure transitions (needs order, chunks, maxParallel, failure policies, duplicates, replays).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  applyCancel,
  applyResult,
  callbackBody,
  chunkToken,
  DEFAULT_MAX_PARALLEL,
  INSIGHTS,
  msgIds,
  newFlowState,
  pendingDispatches,
  planOf,
  publicView,
  validateDefinitions,
  validateSubmission,
  taskSubjects,
  MAX_CHILD_DEPTH,
  FlowRegistry,
  type Dispatch,
  type FlowDef,
  type FlowState,
  type ResultIn,
  type Transition,
} from './index.js';

const wordcount = (over = 'records', chunkSize = 10, maxParallel?: number, onFailure?: 'continue' | 'fail_flow'): unknown => ({
  name: 'wordcount',
  version: 1,
  deadlineMs: 20_000,
  tasks: [
    { name: 'tokenize', subject: 'jetflow.task.custom.tokenize', map: { over, chunkSize, ...(maxParallel ? { maxParallel } : {}) }, ...(onFailure ? { onFailure } : {}) },
    { name: 'count', subject: 'jetflow.task.custom.count', needs: ['tokenize'] },
  ],
});
const def = (raw: unknown): FlowDef => validateDefinitions([raw])[0]!;
const records = (n: number) => Array.from({ length: n }, (_, i) => ({ id: `r${i}`, text: `w${i} x` }));
const start = (d: FlowDef, input: unknown, now = 1_000): FlowState =>
  newFlowState({ flowId: 'fdag1', tenant: 'default', flow: d.name, inputJson: JSON.stringify(input), submittedAt: now }, d, now);
/** A result as the worker sends it: with its dispatch's token (a chunk's own). */
const result = (s: FlowState, task: string, o: Partial<ResultIn> & { chunk?: number } = {}): ResultIn => {
  const ts = s.tasks[task]!;
  return {
    task,
    succeeded: true,
    attempts: 1,
    output: o.chunk !== undefined ? { chunk: o.chunk } : { from: task },
    token: o.chunk !== undefined ? chunkToken(ts.token!, o.chunk) : ts.token,
    ...o,
  };
};
const ids = (s: FlowState, ds: Dispatch[] | undefined) => (ds ?? []).map((d) => msgIds.task(s.flowId, s.tasks[d.task]!.stage, d.task, d.chunk));

test('validation refuses bad DAG definitions, naming the path', () => {
  const base = wordcount() as { tasks: Array<Record<string, unknown>> };
  const cases: Array<[string, unknown, RegExp]> = [
    ['both stages and tasks', { ...base, stages: INSIGHTS.stages }, /#0 \(wordcount\) at \(root\): give exactly one of stages and tasks \(both are given\)/],
    ['neither', { name: 'x', version: 1, deadlineMs: 1000 }, /#0 \(x\) at \(root\): give exactly one of stages and tasks \(neither is given\)/],
    ['unknown need', { ...base, tasks: [base.tasks[0], { ...base.tasks[1], needs: ['tokenise'] }] }, /wordcount\.tasks\[1\]\.needs\[0\] \(count\): unknown task "tokenise"/],
    ['duplicate name', { ...base, tasks: [base.tasks[0], { ...base.tasks[1], name: 'tokenize' }] }, /wordcount\.tasks\[1\] \(tokenize\): duplicate task name "tokenize"/],
    [
      'cycle',
      {
        ...base,
        tasks: [
          { name: 'a', subject: 'jetflow.task.custom.a', needs: ['c'] },
          { name: 'b', subject: 'jetflow.task.custom.b', needs: ['a'] },
          { name: 'c', subject: 'jetflow.task.custom.c', needs: ['b'] },
        ],
      },
      /wordcount\.tasks: the needs form a cycle: a -> c -> b -> a/,
    ],
    ['self need', { ...base, tasks: [{ name: 'a', subject: 'jetflow.task.custom.a', needs: ['a'] }] }, /the needs form a cycle: a -> a/],
    ['bad map path', wordcount('records..text'), /wordcount\.tasks\[0\]\.map\.over \(tokenize\): "records\.\.text" is not a dot path/],
    ['map path with brackets', wordcount('records[0]'), /map\.over \(tokenize\): "records\[0\]" is not a dot path/],
    ['chunkSize 0', wordcount('records', 0), /#0 \(wordcount\) at tasks\.0\.map\.chunkSize: /],
    ['chunkSize too big', wordcount('records', 1_000_000), /at tasks\.0\.map\.chunkSize: /],
    ['maxParallel too big', wordcount('records', 10, 100_000), /at tasks\.0\.map\.maxParallel: /],
    ['bad policy', { ...base, tasks: [{ ...base.tasks[0], onFailure: 'ignore' }, base.tasks[1]] }, /at tasks\.0\.onFailure: /],
  ];
  for (const [name, raw, re] of cases) assert.throws(() => validateDefinitions([raw]), re, name);
  // The good one: limits take today's defaults, maxParallel its documented default.
  const d = def(wordcount());
  const tok = planOf(d).byName.get('tokenize')!;
  assert.deepEqual([tok.softLimitMs, tok.hardLimitMs, tok.maxAttempts, tok.onFailure, tok.map!.maxParallel, tok.leaf], [5_000, 8_000, 3, 'fail_flow', DEFAULT_MAX_PARALLEL, false]);
  assert.equal(planOf(d).byName.get('count')!.leaf, true);
});

test('stages compile into the same DAG: each stage needs the one before, sees every earlier output, keeps its policy; the last stage is the leaves', () => {
  const plan = planOf(INSIGHTS);
  assert.equal(plan.dag, false);
  const sentiment = plan.byName.get('sentiment')!;
  assert.deepEqual(sentiment.needs, ['text', 'features', 'embeddings']);
  assert.deepEqual(sentiment.deps, ['text', 'features', 'embeddings']);
  assert.deepEqual([sentiment.onFailure, sentiment.level, sentiment.leaf, sentiment.group], ['continue', 1, true, 'analysis']);
  assert.deepEqual(plan.byName.get('text')!.needs, []);
  assert.equal(plan.byName.get('text')!.leaf, false);
  // Its states carry no DAG marks: the same bytes as before the DAG engine.
  const s = newFlowState({ flowId: 'fins1', tenant: 'default', flow: 'insights', inputJson: '{}', submittedAt: 1 }, INSIGHTS, 1);
  assert.ok(Object.values(s.tasks).every((t) => t.leaf === undefined && t.chunks === undefined));
  assert.deepEqual(
    pendingDispatches(s, INSIGHTS).map((d) => msgIds.task(s.flowId, 0, d.task)),
    ['fins1:0:text', 'fins1:0:features', 'fins1:0:embeddings'],
  );
});

test('a task starts when everything it needs has settled (diamond), and the callback has an entry per leaf', () => {
  const d = def({
    name: 'diamond',
    version: 1,
    deadlineMs: 20_000,
    tasks: [
      { name: 'a', subject: 'jetflow.task.custom.a' },
      { name: 'b', subject: 'jetflow.task.custom.b', needs: ['a'] },
      { name: 'c', subject: 'jetflow.task.custom.c', needs: ['a'] },
      { name: 'd', subject: 'jetflow.task.custom.d', needs: ['b', 'c'] },
      { name: 'e', subject: 'jetflow.task.custom.e', needs: ['a'] },
    ],
  });
  const s = start(d, {});
  assert.deepEqual(pendingDispatches(s, d), [{ task: 'a' }]);
  let t = applyResult(s, d, result(s, 'a'), 2_000);
  assert.deepEqual(t.dispatched, [{ task: 'b' }, { task: 'c' }, { task: 'e' }]);
  assert.equal(t.started, true);
  t = applyResult(s, d, result(s, 'b'), 2_100);
  assert.equal(t.dispatched, undefined, 'd waits for c');
  assert.equal(s.tasks.d!.status, 'pending');
  t = applyResult(s, d, result(s, 'c'), 2_200);
  assert.deepEqual(t.dispatched, [{ task: 'd' }]);
  applyResult(s, d, result(s, 'd'), 2_300);
  assert.equal(s.status, 'running', 'e is still out');
  applyResult(s, d, result(s, 'e'), 2_400);
  assert.equal(s.status, 'succeeded');
  const body = callbackBody(s);
  assert.deepEqual(Object.keys(body.results).sort(), ['d', 'e']);
  assert.deepEqual(Object.keys(body.datasets).sort(), ['a', 'b', 'c']);
  assert.deepEqual(body.results.d, { from: 'd' });
});

test('map: chunks of chunkSize, at most maxParallel out at once, each with its own token; outputs in chunk order whatever the arrival order; the dependent starts after the last chunk', () => {
  const d = def(wordcount('batch.records', 10, 4));
  const s = start(d, { batch: { records: records(95) }, lang: 'en' });
  const tok = s.tasks.tokenize!;
  assert.equal(tok.chunks, 10);
  assert.equal(tok.cs, 'dddd------');
  assert.deepEqual(
    ids(s, pendingDispatches(s, d)),
    [0, 1, 2, 3].map((i) => `fdag1:0:tokenize:${i}`),
  );
  const outs: unknown[] = [];
  let maxOut = 0;
  let now = 2_000;
  // Results come back in a scrambled order: always the highest-numbered chunk that is out.
  while (s.tasks.tokenize!.status === 'dispatched') {
    const out = pendingDispatches(s, d).filter((x) => x.task === 'tokenize');
    maxOut = Math.max(maxOut, out.length);
    const i = out[out.length - 1]!.chunk!;
    const t = applyResult(s, d, result(s, 'tokenize', { chunk: i, output: { words: i } }), now++);
    assert.deepEqual(t.chunkOutput, { task: 'tokenize', chunk: i, value: { words: i } });
    outs[i] = t.chunkOutput.value;
  }
  assert.equal(maxOut, 4, 'never more than maxParallel chunks out');
  assert.equal(s.tasks.tokenize!.status, 'succeeded');
  assert.deepEqual(pendingDispatches(s, d), [{ task: 'count' }]);
  applyResult(s, d, result(s, 'count', { output: { count: 190 } }), now++);
  assert.equal(s.status, 'succeeded');
  const body = callbackBody(s, (task) => (task === 'tokenize' ? outs : undefined));
  assert.deepEqual(body.results, { count: { count: 190 } });
  assert.deepEqual(
    body.datasets.tokenize,
    Array.from({ length: 10 }, (_, i) => ({ words: i })),
  );
  // Without the chunk store (ingest's view of the state) a mapped task says how many chunks it had.
  assert.deepEqual(callbackBody(s).datasets.tokenize, { chunks: 10 });
  const view = publicView(s, d);
  assert.deepEqual(view.stages[0]!.tasks[0]!.chunks, { count: 10, succeeded: 10, failed: 0, running: 0 });
});

test('map over an empty array: zero chunks, output [], the dependent runs at once', () => {
  const d = def(wordcount());
  const s = start(d, { records: [] });
  assert.equal(s.tasks.tokenize!.status, 'succeeded');
  assert.equal(s.tasks.tokenize!.chunks, 0);
  assert.deepEqual(pendingDispatches(s, d), [{ task: 'count' }]);
  applyResult(s, d, result(s, 'count'), 2_000);
  assert.equal(s.status, 'succeeded');
  assert.deepEqual(callbackBody(s).datasets.tokenize, []);
});

test('duplicate and redelivered chunk results count once; a result for another chunk, a wrong token or a chunk index out of range changes nothing', () => {
  const d = def(wordcount('records', 10, 2));
  const s = start(d, { records: records(30) });
  const r0 = result(s, 'tokenize', { chunk: 0 });
  assert.equal(applyResult(s, d, r0, 2_000).changed, true);
  const dup = applyResult(s, d, r0, 2_001);
  assert.deepEqual([dup.changed, dup.rejected, dup.dispatched], [false, undefined, undefined]);
  assert.equal(s.tasks.tokenize!.cs, 'sdd');
  // Chunk 1's token does not prove chunk 2.
  const forged = applyResult(s, d, { ...result(s, 'tokenize', { chunk: 1 }), chunk: 2 }, 2_002);
  assert.equal(forged.rejected?.code, 'bad_token');
  assert.equal(applyResult(s, d, { ...result(s, 'tokenize', { chunk: 1 }), token: s.tasks.tokenize!.token }, 2_003).rejected?.code, 'bad_token');
  assert.equal(applyResult(s, d, result(s, 'tokenize', { chunk: 7 }), 2_004).rejected?.code, 'unknown_task');
  assert.equal(s.tasks.tokenize!.cs, 'sdd');
  applyResult(s, d, result(s, 'tokenize', { chunk: 2 }), 2_005);
  applyResult(s, d, result(s, 'tokenize', { chunk: 1 }), 2_006);
  applyResult(s, d, result(s, 'tokenize', { chunk: 1 }), 2_007);
  assert.equal(s.tasks.tokenize!.status, 'succeeded');
  assert.equal(s.tasks.count!.status, 'dispatched');
});

test('a failed chunk fails its task: fail_flow ends the flow failed, continue lets the dependent run and see the status', () => {
  for (const policy of ['fail_flow', 'continue'] as const) {
    const d = def(wordcount('records', 10, 2, policy));
    const s = start(d, { records: records(40) });
    applyResult(s, d, result(s, 'tokenize', { chunk: 0 }), 2_000);
    const t = applyResult(s, d, result(s, 'tokenize', { chunk: 1, succeeded: false, errorCode: 'terminal', errorMessage: 'bad record' }), 2_001);
    assert.equal(s.tasks.tokenize!.status, 'failed');
    assert.equal(s.tasks.tokenize!.error!.message, 'chunk 1 of 4: bad record');
    if (policy === 'fail_flow') {
      assert.equal(s.status, 'failed');
      assert.match(s.endReason!, /task tokenize failed and its onFailure fails the flow/);
      assert.deepEqual(pendingDispatches(s, d), []);
    } else {
      assert.equal(s.status, 'running');
      assert.deepEqual(t.dispatched, [{ task: 'count' }], 'the dependent runs; no more chunks');
      // A chunk still out answers late: the task is settled, nothing changes.
      assert.equal(applyResult(s, d, result(s, 'tokenize', { chunk: 2 }), 2_002).changed, false);
      applyResult(s, d, result(s, 'count'), 2_003);
      assert.equal(s.status, 'partial');
      assert.deepEqual(callbackBody(s).datasets.tokenize, { status: 'failed' });
    }
  }
});

test('replay after a crash at each step: from the last written state, the held results give the same dispatches (ids and tokens) in any order', () => {
  const d = def({
    name: 'wc',
    version: 1,
    deadlineMs: 20_000,
    tasks: [
      { name: 'tokenize', subject: 'jetflow.task.custom.tokenize', map: { over: 'records', chunkSize: 3, maxParallel: 3 } },
      { name: 'side', subject: 'jetflow.task.custom.side' },
      { name: 'count', subject: 'jetflow.task.custom.count', needs: ['tokenize', 'side'] },
    ],
  });
  const first = start(d, { records: records(20) });
  // The run without a crash: every result in order, the engine's write points noted (a task started, the end).
  const results: ResultIn[] = [];
  const written: string[] = [JSON.stringify(first)];
  const published = new Set<string>(ids(first, pendingDispatches(first, d)).map((id) => `${id}`));
  const tokens = new Map<string, string>();
  const noteTokens = (s: FlowState, ds: Dispatch[] | undefined) => {
    for (const x of ds ?? [])
      tokens.set(msgIds.task(s.flowId, s.tasks[x.task]!.stage, x.task, x.chunk), x.chunk === undefined ? s.tasks[x.task]!.token! : chunkToken(s.tasks[x.task]!.token!, x.chunk));
  };
  noteTokens(first, pendingDispatches(first, d));
  const s = structuredClone(first);
  const writtenAt: number[] = [0];
  for (let step = 0; s.status === 'running'; step++) {
    const out = pendingDispatches(s, d);
    const x = out[0]!;
    const r = result(s, x.task, x.chunk !== undefined ? { chunk: x.chunk } : {});
    results.push(r);
    const t: Transition = applyResult(s, d, r, 2_000 + step);
    for (const id of ids(s, t.dispatched)) published.add(id);
    noteTokens(s, t.dispatched);
    if (t.started || s.status !== 'running') {
      written.push(JSON.stringify(s));
      writtenAt.push(results.length);
    }
  }
  assert.equal(s.status, 'succeeded');
  // A crash after any result: the stored state is the last written; the results after it were held (not acked) and come back.
  for (let crashAfter = 0; crashAfter <= results.length; crashAfter++) {
    let w = 0;
    while (w + 1 < writtenAt.length && writtenAt[w + 1]! <= crashAfter) w++;
    for (const order of ['same', 'reversed'] as const) {
      const r = structuredClone(JSON.parse(written[w]!) as FlowState);
      const replayed = new Set<string>(ids(r, pendingDispatches(r, d)));
      const held = results.slice(writtenAt[w], crashAfter);
      for (const res of order === 'same' ? held : [...held].reverse()) {
        const t = applyResult(r, d, res, 9_000);
        assert.equal(t.rejected, undefined, `crash after ${crashAfter} (${order}): a held result is taken`);
        for (const id of ids(r, t.dispatched)) replayed.add(id);
        noteTokens(r, t.dispatched);
      }
      for (const id of replayed) assert.ok(published.has(id), `crash after ${crashAfter} (${order}): ${id} was published by the run without a crash`);
      // The replay goes on to the same end, publishing nothing the first run did not.
      while (r.status === 'running') {
        const x = pendingDispatches(r, d)[0]!;
        const t = applyResult(r, d, result(r, x.task, x.chunk !== undefined ? { chunk: x.chunk } : {}), 9_500);
        for (const id of ids(r, t.dispatched)) assert.ok(published.has(id), `after the replay: ${id}`);
      }
      assert.equal(r.status, 'succeeded');
      assert.deepEqual(r.tasks.tokenize!.token, first.tasks.tokenize?.token ?? r.tasks.tokenize!.token);
    }
  }
  // Every chunk's token derives from its task's: a replay derives the same.
  const again = JSON.parse(written[1]!) as FlowState;
  for (let i = 0; i < 7; i++) assert.equal(chunkToken(again.tasks.tokenize!.token!, i), tokens.get(`fdag1:0:tokenize:${i}`));
});

test('a cancel or deadline settles the chunks still out; the state of 10,000 chunks stays small', () => {
  const d = def(wordcount('records', 1, 10_000));
  const s = start(d, { records: records(10_000) });
  assert.equal(pendingDispatches(s, d).length, 10_000);
  for (let i = 0; i < 10_000; i += 2) applyResult(s, d, result(s, 'tokenize', { chunk: i, output: { words: 2, text: 'x'.repeat(200) } }), 2_000);
  const bytes = Buffer.byteLength(JSON.stringify({ ...s, input: undefined }));
  assert.ok(bytes < 20_000, `the state without its input is ${bytes} bytes`);
  applyCancel(s, 'user', 3_000);
  assert.equal(s.status, 'cancelled');
  assert.equal(s.tasks.tokenize!.status, 'cancelled');
  assert.deepEqual(pendingDispatches(s, d), []);
});

test('a state written before DAGs (a stage flow mid-stage) finishes on the new engine with the same message ids', () => {
  const legacy: FlowState = {
    flowId: 'flegacy',
    tenant: 'default',
    flow: 'insights',
    version: 1,
    status: 'running',
    stage: 0,
    submittedAt: 1,
    startedAt: 1,
    deadlineAt: 100_000,
    metadata: {},
    input: '{"records":[]}',
    tasks: {
      text: { stage: 0, status: 'succeeded', attempts: 1, output: { rows: 1 }, token: 't1' },
      features: { stage: 0, status: 'dispatched', attempts: 0, dispatchedAt: 1, token: 't2' },
      embeddings: { stage: 0, status: 'succeeded', attempts: 1, output: { rows: 1 }, token: 't3' },
      sentiment: { stage: 1, status: 'pending', attempts: 0 },
      anomaly: { stage: 1, status: 'pending', attempts: 0 },
      keywords: { stage: 1, status: 'pending', attempts: 0 },
    },
    errors: [],
  };
  assert.deepEqual(ids(legacy, pendingDispatches(legacy, INSIGHTS)), ['flegacy:0:features']);
  const t = applyResult(legacy, INSIGHTS, { task: 'features', succeeded: true, output: { rows: 2 }, attempts: 1, token: 't2' }, 50);
  assert.equal(legacy.stage, 1);
  assert.deepEqual(ids(legacy, t.dispatched), ['flegacy:1:sentiment', 'flegacy:1:anomaly', 'flegacy:1:keywords']);
  assert.ok(t.events.some((e) => e.type === 'stage.completed' && e.stage === 'datasets'));
  for (const n of ['sentiment', 'anomaly', 'keywords']) applyResult(legacy, INSIGHTS, { task: n, succeeded: n !== 'anomaly', attempts: 1, token: legacy.tasks[n]!.token }, 60);
  assert.equal(legacy.status, 'partial', 'analysis continues on failure');
  const body = callbackBody(legacy);
  assert.deepEqual(Object.keys(body.results), ['sentiment', 'anomaly', 'keywords']);
  assert.deepEqual(Object.keys(body.datasets), ['text', 'features', 'embeddings']);
});

test('submission: the mapped path must hold an array (400 naming it), and the chunks stay within the task limit (naming the count)', () => {
  const registry = new FlowRegistry([def(wordcount('batch.records', 10))]);
  const refuse = (input: unknown, max?: number) => {
    try {
      validateSubmission({ flow: 'wordcount', input }, { registry, ...(max ? { maxTasksPerFlow: max } : {}) });
    } catch (err) {
      return err as Error & { code: string; details: { details: Array<{ path: string; message: string }> } };
    }
    assert.fail('accepted');
  };
  const missing = refuse({ records: [] });
  assert.equal(missing.code, 'invalid_argument');
  assert.match(missing.message, /input\.batch\.records: flow wordcount maps task tokenize over it: expected an array, got nothing \(missing\)/);
  assert.match(refuse({ batch: { records: 'r1' } }).message, /input\.batch\.records: .*expected an array, got string/);
  const many = refuse({ batch: { records: records(200) } }, 15);
  assert.match(many.message, /input: flow wordcount would run 21 task instances \(tokenize: 20 chunks\); at most 15 per flow \(JETFLOW_MAX_TASKS_PER_FLOW\)/);
  assert.doesNotThrow(() => validateSubmission({ flow: 'wordcount', input: { batch: { records: records(200) } } }, { registry }));
  // The orchestrator guards the rest the same way: a state whose input cannot be cut ends failed at start, naming the path.
  const s = start(registry.get('wordcount')!, { batch: {} });
  assert.equal(s.status, 'failed');
  assert.match(s.endReason!, /input\.batch\.records: flow wordcount maps task tokenize over it/);
});

test('child-flow tasks: exactly one of subject and flow, not itself, not mapped; no subject of their own; too deep a child ends failed at start', () => {
  const base = { name: 'report', version: 1, deadlineMs: 20_000 };
  const cases: Array<[string, unknown, RegExp]> = [
    ['both', { ...base, tasks: [{ name: 'sub', flow: 'wordcount', subject: 'jetflow.task.custom.x' }] }, /report\.tasks\[0\] \(sub\): give exactly one of subject and flow/],
    ['neither', { ...base, tasks: [{ name: 'sub' }] }, /report\.tasks\[0\] \(sub\): give exactly one of subject and flow/],
    ['itself', { ...base, tasks: [{ name: 'sub', flow: 'report' }] }, /report\.tasks\[0\] \(sub\) flow: a flow cannot run itself as a child/],
    ['mapped', { ...base, tasks: [{ name: 'sub', flow: 'wordcount', map: { over: 'records', chunkSize: 1 } }] }, /report\.tasks\[0\] \(sub\) map: a child-flow task cannot be mapped/],
    ['bad name', { ...base, tasks: [{ name: 'sub', flow: 'Word Count' }] }, /report\.tasks\[0\] \(sub\) flow: "Word Count" is not a flow name/],
  ];
  for (const [name, raw, re] of cases) assert.throws(() => validateDefinitions([raw]), re, name);
  const d = def({
    ...base,
    tasks: [
      { name: 'sub', flow: 'wordcount' },
      { name: 'sum', subject: 'jetflow.task.custom.count', needs: ['sub'] },
    ],
  });
  assert.equal(planOf(d).byName.get('sub')!.child, 'wordcount');
  assert.deepEqual(taskSubjects([d]), ['jetflow.task.custom.count'], 'a child-flow task has no subject to provision or serve');
  const s = start(d, {});
  assert.deepEqual(pendingDispatches(s, d), [{ task: 'sub' }]);
  // The child's end comes back as the parent task's result, with the task's token.
  applyResult(s, d, { task: 'sub', succeeded: true, attempts: 1, output: { count: { n: 1 } }, token: s.tasks.sub!.token }, 2_000);
  assert.deepEqual(pendingDispatches(s, d), [{ task: 'sum' }]);
  const deep = newFlowState(
    { flowId: 'fchild', tenant: 'default', flow: 'report', inputJson: '{}', submittedAt: 1, parent: { flowId: 'fparent', task: 'sub', token: 't', depth: MAX_CHILD_DEPTH + 1 } },
    d,
    1,
  );
  assert.equal(deep.status, 'failed');
  assert.match(deep.endReason!, /child flows nest at most 4 deep/);
  assert.deepEqual(deep.parent, { flowId: 'fparent', task: 'sub', token: 't', depth: 5 });
});
