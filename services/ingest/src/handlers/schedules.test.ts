import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadFlowRegistry } from '@jetflow/flows';
import { MAX_SCHEDULE_BYTES, ScheduleHandlers, type ScheduleStore } from './schedules.js';

class Conflict extends Error {}

/** KV semantics that matter here: create fails on an existing key, update on a stale revision. */
class MemoryStore implements ScheduleStore {
  readonly data = new Map<string, { value: string; revision: number }>();
  private rev = 0;
  /** Called before an update is applied (to interleave another writer). */
  beforeUpdate: (() => void) | undefined;
  async get(key: string) {
    return this.data.get(key);
  }
  async create(key: string, value: string) {
    if (this.data.has(key)) throw new Conflict('exists');
    this.data.set(key, { value, revision: ++this.rev });
    return this.rev;
  }
  async update(key: string, value: string, revision: number) {
    const hook = this.beforeUpdate;
    this.beforeUpdate = undefined;
    hook?.();
    if (this.data.get(key)?.revision !== revision) throw new Conflict('stale');
    this.data.set(key, { value, revision: ++this.rev });
    return this.rev;
  }
  async delete(key: string) {
    this.data.delete(key);
  }
  async keys(prefix: string) {
    return [...this.data.keys()].filter((k) => k.startsWith(`${prefix}.`));
  }
}

const registry = loadFlowRegistry({});
const submission = { flow: 'insights', input: { records: [{ id: 'a', text: 'hi' }] } };
const spec = { id: 'nightly', cron: '0 2 * * *', timezone: 'UTC', submission };
const setup = () => {
  const store = new MemoryStore();
  return { store, h: new ScheduleHandlers({ store, registry, isConflict: (e) => e instanceof Conflict }) };
};
const codeOf = async (p: Promise<unknown>) =>
  p.then(
    () => 'ok',
    (e: { code?: string }) => e.code,
  );

test('create: new, the same body again (existing), another body 409; records by <tenant>.<id>', async () => {
  const { store, h } = setup();
  const a = await h.create('acme', spec);
  assert.equal(a.created, true);
  assert.equal(a.schedule.fired, 0);
  assert.ok(a.schedule.nextFireAt);
  assert.deepEqual([...store.data.keys()], ['acme.nightly']);
  assert.equal((await h.create('acme', spec)).created, false);
  assert.equal(await codeOf(h.create('acme', { ...spec, cron: '0 3 * * *' })), 'conflict');
  assert.equal(await codeOf(h.create('acme', { ...spec, cron: 'nope' })), 'invalid_argument');
});

test('tenants see only their own schedules', async () => {
  const { h } = setup();
  await h.create('acme', spec);
  await h.create('globex', { ...spec, id: 'other' });
  assert.deepEqual(
    (await h.list('acme')).schedules.map((s) => s.id),
    ['nightly'],
  );
  assert.equal(await codeOf(h.get('globex', 'nightly')), 'not_found');
  assert.equal(await codeOf(h.delete('globex', 'nightly')), 'not_found');
  assert.equal(await codeOf(h.setPaused('globex', 'nightly', true)), 'not_found');
  assert.equal(await codeOf(h.get('acme', '../x')), 'not_found');
});

test('pause and resume retry their compare-and-set when the firing replica wrote in between', async () => {
  const { store, h } = setup();
  await h.create('acme', spec);
  // The orchestrator advances the record between the read and the write.
  store.beforeUpdate = () => {
    const e = store.data.get('acme.nightly')!;
    const r = JSON.parse(e.value) as { fired: number };
    store.data.set('acme.nightly', { value: JSON.stringify({ ...r, fired: r.fired + 1 }), revision: e.revision + 100 });
  };
  const p = await h.setPaused('acme', 'nightly', true);
  assert.equal(p.paused, true);
  assert.equal(p.nextFireAt, null);
  assert.equal(p.fired, 1, 'the firing written in between is kept');
  const r = await h.setPaused('acme', 'nightly', false);
  assert.equal(r.paused, false);
  assert.ok(r.nextFireAt);
  assert.deepEqual(await h.delete('acme', 'nightly'), { id: 'nightly', deleted: true });
  assert.equal(await codeOf(h.get('acme', 'nightly')), 'not_found');
});

test('a schedule too large to store is refused naming submission', async () => {
  const { h } = setup();
  const big = { ...spec, submission: { flow: 'insights', input: { records: Array.from({ length: 20 }, (_, i) => ({ id: `r${i}`, text: 'x'.repeat(15_000) })) } } };
  assert.ok(JSON.stringify(big).length > MAX_SCHEDULE_BYTES);
  await assert.rejects(h.create('acme', big), (e: { code?: string; details?: Array<{ path: string }> }) => e.code === 'invalid_argument' && e.details?.[0]?.path === 'submission');
});
