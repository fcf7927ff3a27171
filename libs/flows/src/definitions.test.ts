import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { INSIGHTS, validateDefinitions, subjectMatches, routesFor, FlowRegistry, knownSubjects, loadFlowRegistry, taskSubjects, type FlowDef, type StageDef } from './index.js';

const clone = (): FlowDef => structuredClone(INSIGHTS);

test('the built-in insights definition is valid', () => {
  assert.equal(validateDefinitions([INSIGHTS], knownSubjects(false)).length, 1);
});

test('invalid definitions fail at start with errors that say where', () => {
  const cases: Array<[string, (d: FlowDef) => void, RegExp]> = [
    [
      'unknown subject',
      (d) => (d.stages![1]!.tasks[0]!.subject = 'jetflow.task.analyst.tarot'),
      /insights\.stages\[1\]\.tasks\[0\] \(sentiment\): unknown subject "jetflow.task.analyst.tarot"/,
    ],
    ['subject outside the hierarchy', (d) => (d.stages![0]!.tasks[0]!.subject = 'tasks.text'), /stages\[0\]\.tasks\[0\] \(text\): subject "tasks.text" must be jetflow.task/],
    ['duplicate task name', (d) => (d.stages![1]!.tasks[1]!.name = 'sentiment'), /stages\[1\]\.tasks\[1\] \(sentiment\): duplicate task name/],
    ['duplicate stage name', (d) => (d.stages![1]!.name = 'datasets'), /stages\[1\]: duplicate stage name "datasets"/],
    ['soft above hard', (d) => (d.stages![0]!.tasks[2]!.softLimitMs = 9_000), /tasks\[2\] \(embeddings\): softLimitMs \(9000\) must not exceed hardLimitMs/],
    ['hard limit past the deadline', (d) => ((d.stages![0]!.tasks[0]!.hardLimitMs = 20_000), (d.stages![0]!.tasks[0]!.softLimitMs = 1_000)), /exceeds the flow deadline/],
    ['bad backoff', (d) => (d.stages![0]!.tasks[0]!.backoff.initialMs = 9_999), /backoff.initialMs must not exceed backoff.maxMs/],
    ['negative attempts', (d) => (d.stages![0]!.tasks[0]!.maxAttempts = 0), /at stages\.0\.tasks\.0\.maxAttempts/],
    ['missing failure policy', (d) => delete (d.stages![0] as Partial<StageDef>).onFailure, /at stages\.0\.onFailure/],
  ];
  for (const [name, mutate, re] of cases) {
    const d = clone();
    mutate(d);
    assert.throws(() => validateDefinitions([d], knownSubjects(false)), re, name);
  }
  assert.throws(() => validateDefinitions([clone(), clone()]), /duplicate flow name "insights"/);
});

test('subject wildcards and "which consumer gets this task"', () => {
  assert.ok(subjectMatches('jetflow.task.analyst.>', 'jetflow.task.analyst.sentiment'));
  assert.ok(subjectMatches('jetflow.task.*.sentiment', 'jetflow.task.analyst.sentiment'));
  assert.ok(!subjectMatches('jetflow.task.dataset.*', 'jetflow.task.analyst.sentiment'));
  assert.ok(!subjectMatches('jetflow.task.analyst', 'jetflow.task.analyst.sentiment'));
  const reg = new FlowRegistry([INSIGHTS]);
  const [r] = routesFor('jetflow.task.analyst.sentiment', reg);
  assert.deepEqual(r, {
    subject: 'jetflow.task.analyst.sentiment',
    stream: 'JETFLOW_TASKS',
    consumer: 'task-analyst-sentiment',
    servedBy: 'analyst',
    usedBy: [{ flow: 'insights', version: 1, stage: 'analysis', task: 'sentiment' }],
  });
  assert.deepEqual(
    routesFor('jetflow.task.dataset.>', reg).map((x) => x.consumer),
    ['task-dataset-embeddings', 'task-dataset-features', 'task-dataset-text'],
  );
  assert.deepEqual(routesFor('jetflow.task.nothing.here', reg), []);
});

test('JETFLOW_FLOWS_FILE adds definitions and names the file and place of an error', () => {
  const dir = mkdtempSync(join(tmpdir(), 'jf-defs-'));
  const ok = join(dir, 'ok.json');
  const extra = { ...clone(), name: 'insights-lite', stages: [clone().stages![0]!] };
  writeFileSync(ok, JSON.stringify([extra]));
  assert.deepEqual(loadFlowRegistry({ JETFLOW_FLOWS_FILE: ok }).names().sort(), ['insights', 'insights-lite']);
  const bad = join(dir, 'bad.json');
  writeFileSync(bad, JSON.stringify([{ ...extra, stages: [{ ...extra.stages[0]!, tasks: [{ ...extra.stages[0]!.tasks[0]!, subject: 'jetflow.task.test.echo' }] }] }]));
  // A subject no built-in worker serves is an outside worker's: accepted, and its consumer provisioned.
  assert.deepEqual(taskSubjects(loadFlowRegistry({ JETFLOW_FLOWS_FILE: bad }).defs).includes('jetflow.task.test.echo'), true);
  writeFileSync(bad, JSON.stringify([{ ...extra, stages: [{ ...extra.stages[0]!, tasks: [{ ...extra.stages[0]!.tasks[0]!, subject: 'jetflow.task.custom.Tokenize' }] }] }]));
  assert.throws(() => loadFlowRegistry({ JETFLOW_FLOWS_FILE: bad }), /JETFLOW_FLOWS_FILE: .*subject "jetflow.task.custom.Tokenize" must be jetflow.task.<kind>.<name>/);
  writeFileSync(bad, '{ not json');
  assert.throws(() => loadFlowRegistry({ JETFLOW_FLOWS_FILE: bad }), /JETFLOW_FLOWS_FILE: .*is not valid JSON/);
  assert.throws(() => loadFlowRegistry({ JETFLOW_FLOWS_FILE: join(dir, 'missing.json') }), /JETFLOW_FLOWS_FILE: cannot read .*ENOENT/);
});
