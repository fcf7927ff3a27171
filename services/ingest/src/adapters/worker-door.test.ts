import { test } from 'node:test';
import assert from 'node:assert/strict';
import { create } from '@bufbuild/protobuf';
import { WorkerHelloSchema } from '@jetflow/proto';
import { ConfigError } from '@jetflow/config';
import { codeOf, isTerminal } from '@jetflow/errors';
import { sha256hex, workerKeys } from '../config.js';
import { checkHello, failureError, outputOf } from './worker-door.js';

const KEY = 'py-key-0123456789abcdef';

test('JETFLOW_WORKER_KEYS: name, subject patterns and key; bad entries name what is wrong', () => {
  const keys = workerKeys({ JETFLOW_WORKER_KEYS: `py:jetflow.task.py.>|jetflow.task.ml.*:${KEY}, other:jetflow.task.x.y:sha256:${'a'.repeat(64)}` });
  assert.deepEqual(keys.get(sha256hex(KEY)), { name: 'py', patterns: ['jetflow.task.py.>', 'jetflow.task.ml.*'] });
  assert.deepEqual(keys.get('a'.repeat(64)), { name: 'other', patterns: ['jetflow.task.x.y'] });
  const bad: Array<[string, RegExp]> = [
    ['py:jetflow.task.py.>', /expected "<name>:<subject pattern>/],
    [`Py!:jetflow.task.py.>:${KEY}`, /invalid worker name "Py!"/],
    [`py:jetflow.ingest.>:${KEY}`, /"jetflow\.ingest\.>" is not a task subject pattern/],
    [`py:jetflow.task.>.x:${KEY}`, /is not a task subject pattern/],
    ['py:jetflow.task.py.>:short', /shorter than 16 characters/],
    ['py:jetflow.task.py.>:sha256:abc', /64 hex digits/],
    [`a:jetflow.task.py.>:${KEY},b:jetflow.task.py.>:${KEY}`, /workers "a" and "b" have the same key/],
  ];
  for (const [v, re] of bad)
    assert.throws(
      () => workerKeys({ JETFLOW_WORKER_KEYS: v }),
      (e: Error) => e instanceof ConfigError && e.message.includes('JETFLOW_WORKER_KEYS') && re.test(e.message),
      v,
    );
  assert.throws(() => workerKeys({ JETFLOW_WORKER_KEYS: `py:jetflow.task.py.>:${KEY}` }, new Map([[sha256hex(KEY), {}]])), /also an API key/);
});

test('a hello is checked against the key (PERMISSION_DENIED naming the subject) and the known subjects', () => {
  const key = { name: 'py', patterns: ['jetflow.task.py.>'] };
  const known = new Set(['jetflow.task.py.profile', 'jetflow.task.py.other', 'jetflow.task.custom.secret']);
  const hello = (o: Partial<{ subjects: string[]; slots: number; name: string; version: string }>) => create(WorkerHelloSchema, { subjects: ['jetflow.task.py.profile'], slots: 2, ...o });
  assert.deepEqual(checkHello(hello({ subjects: ['jetflow.task.py.profile', 'jetflow.task.py.other', 'jetflow.task.py.profile'], name: 'w1' }), key, known), {
    subjects: ['jetflow.task.py.other', 'jetflow.task.py.profile'],
    slots: 2,
    name: 'w1',
    version: 'unknown',
  });
  const refused = (h: ReturnType<typeof hello> | undefined, code: string, re: RegExp) =>
    assert.throws(
      () => checkHello(h, key, known),
      (e: Error) => codeOf(e) === code && re.test(e.message),
    );
  refused(hello({ subjects: ['jetflow.task.py.profile', 'jetflow.task.custom.secret'] }), 'permission_denied', /may not serve jetflow\.task\.custom\.secret/);
  refused(hello({ subjects: ['jetflow.task.py.nothing'] }), 'not_found', /no flow definition names the task subject jetflow\.task\.py\.nothing/);
  refused(hello({ subjects: [] }), 'invalid_argument', /hello\.subjects/);
  refused(hello({ subjects: ['jetflow.task.py'] }), 'invalid_argument', /not a task subject/);
  refused(hello({ slots: 0 }), 'invalid_argument', /hello\.slots must be from 1 to 1000/);
  refused(hello({ slots: 1001 }), 'invalid_argument', /hello\.slots/);
  refused(hello({ name: 'a b' }), 'invalid_argument', /hello\.name/);
  refused(hello({ version: 'x\n' }), 'invalid_argument', /hello\.version/);
  refused(undefined, 'invalid_argument', /first message .* must be a hello/);
});

test("a worker's failure keeps its kind and code; an output that is not JSON is terminal", () => {
  const r = failureError({ retryable: true, code: 'model_down', message: 'the model server is down' });
  assert.equal(isTerminal(r), false);
  assert.equal(r.message, 'model_down: the model server is down');
  const t = failureError({ retryable: false, code: 'Bad Code!', message: '' });
  assert.equal(isTerminal(t), true);
  assert.equal(t.message, 'task_failed: no message');
  assert.deepEqual(outputOf(new Uint8Array()), { output: null });
  const bytes = new TextEncoder().encode('{"rows":3}');
  assert.equal(outputOf(bytes).outputJson, bytes);
  assert.throws(
    () => outputOf(new TextEncoder().encode('{rows')),
    (e: Error) => isTerminal(e) && /not JSON/.test(e.message),
  );
});
