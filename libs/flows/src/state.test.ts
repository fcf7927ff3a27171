import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  applyDeadline,
  applyResult,
  callbackBody,
  canonicalJson,
  decodeStoredDefinition,
  definitionHash,
  DefinitionVersions,
  failFlow,
  FlowRegistry,
  INSIGHTS,
  newFlowState,
  publicView,
  storedDefinition,
  tasksToDispatch,
  unstartableFlowState,
  newTaskToken,
  resultProblem,
  type FlowDef,
  type FlowState,
  type ResultIn,
} from './index.js';

const limits = { softLimitMs: 1_000, hardLimitMs: 2_000, maxAttempts: 2, backoff: { initialMs: 100, maxMs: 400, multiplier: 2 } };
const V1: FlowDef = {
  name: 'shift',
  version: 1,
  deadlineMs: 30_000,
  stages: [
    { name: 'prepare', onFailure: 'fail_flow', tasks: [{ name: 'slow-prep', subject: 'jetflow.task.test.slow', ...limits }] },
    {
      name: 'report',
      onFailure: 'continue',
      tasks: [
        { name: 'echo-a', subject: 'jetflow.task.test.echo', ...limits },
        { name: 'echo-b', subject: 'jetflow.task.test.echo', ...limits },
      ],
    },
  ],
};
// The same flow name after an edit: stages and tasks renamed or removed, version bumped.
const V2: FlowDef = {
  name: 'shift',
  version: 2,
  deadlineMs: 30_000,
  stages: [{ name: 'only', onFailure: 'continue', tasks: [{ name: 'renamed', subject: 'jetflow.task.test.echo', ...limits }] }],
};

const start = (def: FlowDef, now = 1_000): FlowState => newFlowState({ flowId: 'ftest1', tenant: 'default', flow: def.name, inputJson: '{}', submittedAt: now }, def, now);
const ok = (task: string, output: unknown = { from: task }) => ({ task, succeeded: true, output, attempts: 1 });
/** A result as the worker sends it: with the token the task was dispatched with. */
const apply = (s: FlowState, def: FlowDef, r: ResultIn, now: number) => applyResult(s, def, { token: s.tasks[r.task]?.token, ...r }, now);
/** A fake store read over a map: the store itself is a KV bucket, exercised by the end-to-end test. */
const storeOf = (...defs: FlowDef[]) => {
  const m = new Map(defs.map((d) => [storedDefinition(d).key, new TextEncoder().encode(storedDefinition(d).value)]));
  return { m, read: async (key: string) => m.get(key) };
};

test('a definition hash depends on the content only, and names the stored key', () => {
  const shuffled = JSON.parse(JSON.stringify({ stages: V1.stages, deadlineMs: V1.deadlineMs, version: 1, name: 'shift' })) as FlowDef;
  assert.equal(definitionHash(shuffled), definitionHash(V1), 'key order does not matter');
  assert.equal(definitionHash(structuredClone(V1)), definitionHash(V1));
  const tighter = structuredClone(V1);
  tighter.stages![1]!.tasks[0]!.hardLimitMs = 1_500;
  assert.notEqual(definitionHash(tighter), definitionHash(V1), 'a changed limit is another definition');
  assert.match(definitionHash(V1), /^[0-9a-f]{16}$/);
  assert.equal(storedDefinition(V1).key, `shift.v1.${definitionHash(V1)}`);
  assert.equal(canonicalJson({ b: 1, a: [{ d: 2, c: 3 }] }), '{"a":[{"c":3,"d":2}],"b":1}');
});

test('a state records the version and hash of the definition it started on', () => {
  const s = start(V1);
  assert.equal(s.version, 1);
  assert.equal(s.defHash, definitionHash(V1));
  assert.deepEqual(Object.keys(s.tasks), ['slow-prep', 'echo-a', 'echo-b']);
});

test('after the definitions change, a flow started on v1 finishes on v1 (read back from the store)', async () => {
  const store = storeOf(V1);
  const now = new DefinitionVersions(new FlowRegistry([V2]), store.read);
  const s = JSON.parse(JSON.stringify(start(V1))) as FlowState; // as read back from KV
  assert.equal(now.known(s), undefined, 'v1 is not loaded any more');
  const got = await now.lookup(s);
  assert.ok('def' in got, JSON.stringify(got));
  assert.deepEqual(got.def, V1);
  assert.equal(now.known(s), got.def, 'remembered: later results need no store read');

  let t = apply(s, got.def, ok('slow-prep'), 2_000);
  assert.equal(t.changed, true);
  assert.equal(s.stage, 1);
  assert.deepEqual(
    tasksToDispatch(s, got.def).map((td) => td.name),
    ['echo-a', 'echo-b'],
    "v1's second stage is dispatched, not v2's",
  );
  apply(s, got.def, ok('echo-a'), 2_100);
  t = apply(s, got.def, ok('echo-b'), 2_200);
  assert.equal(s.status, 'succeeded');
  assert.equal(t.rejected, undefined);
  const body = callbackBody(s);
  assert.deepEqual(Object.keys(body.results), ['echo-a', 'echo-b']);
  assert.deepEqual(Object.keys(body.datasets), ['slow-prep']);
  assert.deepEqual(body.results['echo-a'], { from: 'echo-a' });
});

test('a stored definition that is missing, altered or misfiled is refused with the reason, never run', async () => {
  const s = start(V1);
  const empty = new DefinitionVersions(new FlowRegistry([V2]), async () => undefined);
  const missing = await empty.lookup(s);
  assert.ok('problem' in missing);
  assert.match(missing.problem, /started on definition shift v1 \([0-9a-f]{16}\), which is neither loaded nor in the definitions store/);

  const store = storeOf(V1);
  const key = storedDefinition(V1).key;
  const altered = JSON.parse(storedDefinition(V1).value) as FlowDef;
  altered.deadlineMs = 60_000;
  store.m.set(key, new TextEncoder().encode(JSON.stringify(altered)));
  const r1 = await new DefinitionVersions(new FlowRegistry([V2]), store.read).lookup(s);
  assert.ok('problem' in r1 && /does not match its hash/.test(r1.problem), JSON.stringify(r1));

  store.m.set(key, new TextEncoder().encode('{"name":"shift"'));
  const r2 = await new DefinitionVersions(new FlowRegistry([V2]), store.read).lookup(s);
  assert.ok('problem' in r2 && /not JSON/.test(r2.problem), JSON.stringify(r2));

  store.m.set(key, new TextEncoder().encode(JSON.stringify({ name: 'shift', version: 1, deadlineMs: 30_000, stages: [] })));
  const r3 = await new DefinitionVersions(new FlowRegistry([V2]), store.read).lookup(s);
  assert.ok('problem' in r3 && /not a flow definition \(at stages/.test(r3.problem), JSON.stringify(r3));

  const bad = { ...s, defHash: '../../etc' };
  const r4 = await new DefinitionVersions(new FlowRegistry([V2]), store.read).lookup(bad);
  assert.ok('problem' in r4 && /names no valid definition/.test(r4.problem), JSON.stringify(r4));

  const misfiled = { ...s, flow: 'other' };
  store.m.set(`other.v1.${definitionHash(V1)}`, new TextEncoder().encode(storedDefinition(V1).value));
  const r5 = await new DefinitionVersions(new FlowRegistry([V2]), store.read).lookup(misfiled);
  assert.ok('problem' in r5 && /the store holds shift v1 under other\.v1\./.test(r5.problem), JSON.stringify(r5));

  assert.deepEqual(decodeStoredDefinition(new TextEncoder().encode(storedDefinition(V1).value), definitionHash(V1)), { def: V1 });
});

test('a state written before versioning runs on the loaded definition only if it has its stages and tasks', async () => {
  const legacy = start(INSIGHTS);
  delete legacy.defHash;
  const sameShape = structuredClone(INSIGHTS);
  sameShape.version = 2;
  sameShape.stages[1]!.tasks[0]!.softLimitMs = 4_000;
  const fits = new DefinitionVersions(new FlowRegistry([sameShape]), async () => undefined);
  assert.equal(fits.known(legacy), sameShape, 'same stages and tasks (other limits): runs on it');
  const other = structuredClone(INSIGHTS);
  other.stages[1]!.tasks.pop();
  const r = await new DefinitionVersions(new FlowRegistry([other]), async () => undefined).lookup(legacy);
  assert.ok('problem' in r && /without a definition hash.*other stages or tasks/.test(r.problem), JSON.stringify(r));
});

test('a result for a task the flow does not have, or not dispatched yet, changes nothing and is marked for the dead letters', () => {
  const s = start(V1);
  const before = structuredClone(s);
  const t = apply(s, V1, ok('renamed'), 2_000);
  assert.deepEqual(t, { changed: false, events: [], rejected: { code: 'unknown_task', message: 'a result arrived for task "renamed", which flow shift v1 does not have' } });
  const early = apply(s, V1, ok('echo-a'), 2_000);
  assert.equal(early.changed, false);
  assert.equal(early.rejected?.code, 'unexpected_result', 'a pending task has no token yet: nothing can answer it');
  assert.deepEqual(s, before, 'the flow is untouched');
  // A duplicate of a settled task's result (same token) changes nothing and is no rejection.
  assert.equal(apply(s, V1, ok('slow-prep'), 2_000).changed, true);
  assert.deepEqual(apply(s, V1, ok('slow-prep'), 2_100), { changed: false, events: [] }, 'duplicate');
});

test('a result is applied only with the token of its dispatch; each dispatched task gets its own', () => {
  const s = start(V1);
  const prep = s.tasks['slow-prep']!;
  assert.match(prep.token ?? '', /^[A-Za-z0-9_-]{16}$/, '12 random bytes, base64url');
  assert.equal(s.tasks['echo-a']!.token, undefined, 'issued when dispatched, not before');
  const before = structuredClone(s);
  for (const token of [undefined, '', 'A'.repeat(16), prep.token!.slice(0, 15), `${prep.token!}x`]) {
    const t = applyResult(s, V1, { ...ok('slow-prep'), ...(token === undefined ? {} : { token }) }, 2_000);
    assert.equal(t.changed, false, `token ${token}`);
    assert.equal(t.rejected?.code, 'bad_token');
  }
  assert.deepEqual(s, before, 'no forged result changed the flow');
  assert.equal(applyResult(s, V1, { ...ok('slow-prep'), token: prep.token! }, 2_000).changed, true);
  assert.equal(s.stage, 1);
  const [a, b] = [s.tasks['echo-a']!.token, s.tasks['echo-b']!.token];
  assert.ok(a && b && a !== b && a !== prep.token, 'the next stage dispatched with tokens of its own');
  // The token of another task does not do.
  assert.equal(applyResult(s, V1, { ...ok('echo-a'), token: b }, 2_100).rejected?.code, 'bad_token');
  const tokens = new Set(Array.from({ length: 1_000 }, newTaskToken));
  assert.equal(tokens.size, 1_000);
});

test("a state written before tokens takes its dispatched tasks' results as before", () => {
  const s = start(V1);
  delete s.tasks['slow-prep']!.token;
  assert.equal(resultProblem(s, { task: 'slow-prep' }), undefined);
  assert.equal(resultProblem(s, { task: 'echo-a' })?.code, 'unexpected_result');
  assert.equal(applyResult(s, V1, ok('slow-prep'), 2_000).changed, true);
});

test('failFlow ends a running flow once; on a finished flow it changes nothing but still rejects the message', () => {
  const s = start(V1);
  const t = failFlow(s, { task: '', code: 'definition_unavailable', message: 'gone' }, 5_000);
  assert.deepEqual([t.changed, s.status, s.endReason, s.finishedAt], [true, 'failed', 'gone', 5_000]);
  const late = failFlow(s, { task: '', code: 'invalid_message', message: 'again' }, 6_000);
  assert.deepEqual([late.changed, late.rejected?.code, s.endReason, s.errors.length], [false, 'invalid_message', 'gone', 1]);
  assert.equal(applyDeadline(s, 7_000).changed, false);
});

test('the callback body comes from the state alone, so a flow without its definition still gets one', () => {
  const s = start(INSIGHTS);
  for (const t of ['text', 'features', 'embeddings']) apply(s, INSIGHTS, ok(t), 2_000);
  apply(s, INSIGHTS, ok('sentiment'), 2_100);
  apply(s, INSIGHTS, { task: 'anomaly', succeeded: false, errorCode: 'timeout', errorMessage: 'slow', attempts: 3 }, 2_200);
  applyDeadline(s, 3_000);
  const body = callbackBody(s);
  assert.equal(body.status, 'partial');
  assert.deepEqual(Object.keys(body.results), ['sentiment', 'anomaly', 'keywords']);
  assert.deepEqual(Object.keys(body.datasets), ['text', 'features', 'embeddings']);
  assert.deepEqual(body.results.anomaly, { status: 'failed', error: { code: 'timeout', message: 'slow' } });
  assert.deepEqual(body.results.keywords, { status: 'timed_out', error: null });

  const u = unstartableFlowState(
    { flowId: 'fgone', tenant: 'default', flow: 'retired', submittedAt: 1_000, callbackUrl: 'http://127.0.0.1/x' },
    { task: '', code: 'unknown_flow', message: 'flow "retired" is not defined' },
    1_500,
  );
  assert.deepEqual([u.status, u.version, u.endReason, u.callbackUrl], ['failed', 0, 'flow "retired" is not defined', 'http://127.0.0.1/x']);
  const ub = callbackBody(u);
  assert.deepEqual([ub.status, ub.results, ub.datasets, ub.errors], ['failed', {}, {}, [{ task: '', code: 'unknown_flow', message: 'flow "retired" is not defined' }]]);
});

test('the public view uses a definition only if it is the flow own one; otherwise the stages come from the state', () => {
  const s = start(V1);
  const own = publicView(s, V1);
  assert.deepEqual(
    own.stages.map((st) => st.name),
    ['prepare', 'report'],
  );
  assert.equal(own.version, 1);
  const other = publicView(s, V2);
  assert.deepEqual(
    other.stages.map((st) => [st.name, st.onFailure, st.tasks.map((t) => [t.name, t.subject, t.status])]),
    [
      ['stage-0', null, [['slow-prep', null, 'dispatched']]],
      [
        'stage-1',
        null,
        [
          ['echo-a', null, 'pending'],
          ['echo-b', null, 'pending'],
        ],
      ],
    ],
  );
  assert.equal(publicView(s, undefined).stages.length, 2);
});
