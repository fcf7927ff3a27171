import { test } from 'node:test';
import assert from 'node:assert/strict';
import { INSIGHTS, definitionHash, type FlowDef } from './definitions.js';
import { decodeIndex, planRegistration, type DefinitionIndex } from './registrations.js';

const T = new Date('2026-01-05T10:00:00.000Z');
const v = (version: number, deadlineMs = 10_000): FlowDef => ({ ...INSIGHTS, name: 'wc', version, deadlineMs });
const indexOf = (...defs: Array<[FlowDef, 'builtin' | 'file' | 'api']>): DefinitionIndex => ({
  name: 'wc',
  versions: defs.map(([d, source]) => ({ version: d.version, hash: definitionHash(d), storedAt: T.toISOString(), source })).sort((a, b) => b.version - a.version),
});

test('a new name or a newer version is created, newest first in the index', () => {
  const first = planRegistration(undefined, v(1), 'api', T);
  assert.equal(first.outcome, 'created');
  assert.deepEqual(first.outcome === 'created' && first.index.versions.map((x) => [x.version, x.source]), [[1, 'api']]);
  const second = planRegistration(indexOf([v(1), 'file']), v(3), 'api', T);
  assert.equal(second.outcome, 'created');
  assert.deepEqual(second.outcome === 'created' && second.index.versions.map((x) => x.version), [3, 1]);
  assert.equal(second.outcome === 'created' && second.entry.hash, definitionHash(v(3)));
});

test('the same version with the same content is unchanged, whichever version it is', () => {
  const idx = indexOf([v(1), 'api'], [v(2), 'api']);
  assert.equal(planRegistration(idx, v(2), 'api', T).outcome, 'unchanged');
  assert.equal(planRegistration(idx, v(1), 'api', T).outcome, 'unchanged', 're-applying an older version unchanged is idempotent too');
  assert.equal(planRegistration(idx, v(1), 'file', T).outcome, 'unchanged');
});

test('the same version with other content is a conflict naming both hashes and the next version', () => {
  const p = planRegistration(indexOf([v(1), 'api'], [v(2), 'api']), v(2, 20_000), 'api', T);
  assert.equal(p.outcome, 'conflict');
  assert.match(
    p.outcome === 'conflict' ? p.message : '',
    new RegExp(`wc v2 is stored already with other content \\(stored hash ${definitionHash(v(2))}, this one ${definitionHash(v(2, 20_000))}\\).*v3`),
  );
  assert.equal(planRegistration(indexOf([v(1), 'file']), v(1, 20_000), 'file', T).outcome, 'conflict', 'a file that changes a stored version');
});

test('through the API an older version not stored is a conflict; seeding from the file adds it', () => {
  const idx = indexOf([v(1), 'api'], [v(3), 'api']);
  const p = planRegistration(idx, v(2), 'api', T);
  assert.equal(p.outcome, 'conflict');
  assert.match(p.outcome === 'conflict' ? p.message : '', /wc v2 is older than the newest stored version v3; a new version must be newer \(v4\)/);
  const seeded = planRegistration(idx, v(2), 'file', T);
  assert.deepEqual(seeded.outcome === 'created' && seeded.index.versions.map((x) => x.version), [3, 2, 1]);
});

test('an index off the bus is checked: not JSON, malformed, another name', () => {
  const enc = (x: unknown) => new TextEncoder().encode(typeof x === 'string' ? x : JSON.stringify(x));
  const good = indexOf([v(2), 'api'], [v(1), 'builtin']);
  assert.deepEqual(decodeIndex(enc({ ...good, versions: [...good.versions].reverse() }), 'wc'), good, 'sorted newest first');
  assert.match((decodeIndex(enc('{'), 'wc') as { problem: string }).problem, /not JSON/);
  assert.match((decodeIndex(enc({ name: 'wc', versions: [{ version: 1, hash: 'xyz', storedAt: '', source: 'api' }] }), 'wc') as { problem: string }).problem, /at versions\.0\.hash/);
  assert.match((decodeIndex(enc({ name: 'wc', versions: [{ ...good.versions[0], source: 'hacker' }] }), 'wc') as { problem: string }).problem, /at versions\.0\.source/);
  assert.match((decodeIndex(enc(good), 'other') as { problem: string }).problem, /names wc/);
});
