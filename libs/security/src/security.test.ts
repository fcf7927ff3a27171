import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CONSUMERS, STREAMS, consumerConfigs } from '@jetflow/messaging';
import {
  JETFLOW_ACCOUNT,
  NEVER_GRANTED,
  SecurityInputError,
  deriveIdentities,
  issueSecrets,
  natsSecurity,
  renderServerConfigText,
  verifyPassword,
  type Identity,
  type SecurityInput,
} from './index.js';

const TASKS = ['jetflow.task.dataset.text', 'jetflow.task.dataset.features', 'jetflow.task.analyst.sentiment', 'jetflow.task.analyst.keywords'];
const INPUT: SecurityInput = { partitions: 4, taskSubjects: TASKS, tenants: ['acme', 'globex'] };

/** nats-server's rule for a literal subject: some allow matches and no deny does. */
function matches(pattern: string, subject: string): boolean {
  const p = pattern.split('.');
  const s = subject.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return s.length > i;
    if (i >= s.length || (p[i] !== '*' && p[i] !== s[i])) return false;
  }
  return p.length === s.length;
}
const may = (list: { allow: string[]; deny: string[] }, subject: string) => list.allow.some((a) => matches(a, subject)) && !list.deny.some((d) => matches(d, subject));
const canPub = (i: Identity, subject: string) => may(i.permissions.publish, subject);
const canSub = (i: Identity, subject: string) => may(i.permissions.subscribe, subject);
const byRole = (ids: Identity[], role: string) => ids.find((i) => i.role === role)!;

describe('NATS identities derived from the roles, the topology and the tenants', () => {
  const ids = deriveIdentities({ ...INPUT, workers: { ext: ['jetflow.task.analyst.keywords'] } });

  test('a tenant may publish only to its own ingest subjects, in an account of its own', () => {
    const acme = byRole(ids, 'tenant:acme');
    assert.equal(acme.user, 'tenant-acme');
    assert.equal(acme.account, 'TENANT_acme');
    assert.deepEqual(acme.permissions.publish.allow, ['jetflow.ingest.acme.>']);
    assert.deepEqual(acme.permissions.subscribe.allow, ['_INBOX.>']);
    assert.equal(canPub(acme, 'jetflow.ingest.acme.insights'), true);
    for (const s of [
      'jetflow.ingest.globex.insights',
      'jetflow.submit.acme.fabc',
      'jetflow.submit.globex.fabc',
      'jetflow.result.0.fabc',
      'jetflow.task.analyst.sentiment',
      '$KV.jetflow_cancel.fabc',
      '$JS.API.STREAM.DELETE.JETFLOW_INGEST',
      '$JS.API.INFO',
    ]) {
      assert.equal(canPub(acme, s), false, `tenant may not publish ${s}`);
    }
  });

  test('no identity may delete or purge a stream, whatever else it is allowed', () => {
    for (const i of ids) {
      for (const s of STREAM_NAMES) {
        assert.equal(canPub(i, `$JS.API.STREAM.DELETE.${s}`), false, `${i.user} deletes ${s}`);
        assert.equal(canPub(i, `$JS.API.STREAM.PURGE.${s}`), false, `${i.user} purges ${s}`);
      }
      for (const n of NEVER_GRANTED) assert.ok(i.permissions.publish.deny.includes(n), `${i.user} denies ${n} explicitly`);
    }
  });

  test('every durable consumer is pulled by exactly one service role (task consumers also by the gRPC worker door in ingest), and every identity acks only what it pulls', () => {
    const durables = consumerConfigs({ partitions: INPUT.partitions, taskSubjects: TASKS });
    const services = ids.filter((i) => ['ingest', 'orchestrator', 'dataset-generator', 'analyst', 'operator'].includes(i.role));
    for (const c of durables) {
      const next = `$JS.API.CONSUMER.MSG.NEXT.${c.stream}.${c.config.durable_name}`;
      const pullers = services.filter((i) => canPub(i, next)).map((i) => i.role);
      const door = c.stream === STREAMS.tasks;
      assert.equal(pullers.includes('ingest'), door, `${c.stream}/${c.config.durable_name}: ingest pulls ${door ? 'every task consumer (the worker door)' : 'none of it'}`);
      assert.equal(pullers.length, door ? 2 : 1, `${c.stream}/${c.config.durable_name} pulled by ${pullers.join(', ') || 'nobody'}`);
      for (const i of ids) assert.equal(canPub(i, `$JS.ACK.${c.stream}.${c.config.durable_name}.1.2.3.4.5`), canPub(i, next), `${i.user} acks ${c.config.durable_name} iff it pulls it`);
    }
    // Each subject's consumer and its priority bands' (taskhigh-…, tasklow-…).
    const all = (...names: string[]) => names.flatMap((n) => [`taskhigh-${n}`, `task-${n}`, `tasklow-${n}`]);
    assert.deepEqual(byRole(ids, 'dataset-generator').serves, all('dataset-text', 'dataset-features'));
    assert.deepEqual(byRole(ids, 'analyst').serves, all('analyst-sentiment', 'analyst-keywords'));
    assert.deepEqual(byRole(ids, 'worker:ext').serves, all('analyst-keywords'));
  });

  test("pre-validated submissions travel on jetflow.submit, which only ingest, the orchestrator (schedule firings) and the operator's redrive may publish to", () => {
    const publishers = ids.filter((i) => canPub(i, 'jetflow.submit.acme.fabc')).map((i) => i.role);
    assert.deepEqual(publishers.sort(), ['ingest', 'operator', 'orchestrator']);
    const orch = byRole(ids, 'orchestrator');
    // The orchestrator claims NATS-door keys in the idempotency bucket and reads cancel flags.
    assert.equal(canPub(orch, '$KV.jetflow_idempotency.acme.0123'), true);
    assert.equal(canPub(orch, '$JS.API.DIRECT.GET.KV_jetflow_cancel.$KV.jetflow_cancel.fabc'), true);
    assert.equal(canPub(orch, '$KV.jetflow_cancel.fabc'), false, 'but never sets one');
  });

  test('each identity reads replies only in its own inboxes', () => {
    const jetflow = ids.filter((i) => i.account === JETFLOW_ACCOUNT);
    assert.equal(new Set(jetflow.map((i) => i.inboxPrefix)).size, jetflow.length, 'one prefix per identity');
    for (const me of jetflow) {
      assert.equal(canSub(me, `${me.inboxPrefix}.abc.1`), true);
      for (const other of jetflow.filter((o) => o !== me)) assert.equal(canSub(me, `${other.inboxPrefix}.abc.1`), false, `${me.user} reads ${other.user}'s replies`);
      assert.equal(canSub(me, '_INBOX.abc'), false, `${me.user} reads default inboxes`);
    }
  });

  test('workers publish results, task dead letters and events, never submissions or tasks; outside workers provision nothing', () => {
    for (const role of ['dataset-generator', 'analyst', 'worker:ext']) {
      const w = byRole(ids, role);
      assert.equal(canPub(w, 'jetflow.result.3.fabc'), true);
      assert.equal(canPub(w, 'jetflow.dlq.task.jetflow.task.analyst.keywords'), true);
      assert.equal(canPub(w, 'jetflow.event.acme.fabc'), true);
      for (const s of [
        'jetflow.ingest.acme.insights',
        'jetflow.submit.acme.fabc',
        'jetflow.task.analyst.keywords',
        'jetflow.callback.acme',
        '$KV.jetflow_flows.fabc',
        '$KV.jetflow_cancel.fabc',
        'jetflow.dlq.ingest.x',
      ])
        assert.equal(canPub(w, s), false, `${role} publishes ${s}`);
      assert.equal(canSub(w, 'jetflow.task.analyst.keywords'), false);
    }
    const ext = byRole(ids, 'worker:ext');
    assert.equal(canPub(ext, `$JS.API.STREAM.CREATE.${STREAMS.tasks}`), false);
    assert.equal(canPub(ext, `$JS.API.STREAM.UPDATE.${STREAMS.tasks}`), false);
    assert.equal(canPub(ext, `$JS.API.CONSUMER.MSG.NEXT.${STREAMS.tasks}.task-analyst-sentiment`), false, 'only the subjects it serves');
    assert.equal(canPub(byRole(ids, 'analyst'), '$KV.jetflow_cache.x'), true, 'the analyst caches datasets');
    assert.equal(canPub(byRole(ids, 'dataset-generator'), '$KV.jetflow_cache.x'), false);
  });

  test('ingest submits, cancels and redrives; the operator reads everything and deletes only its own readers', () => {
    const ingest = byRole(ids, 'ingest');
    for (const s of [
      'jetflow.ingest.acme.insights',
      'jetflow.result.1.fabc',
      'jetflow.task.dataset.text',
      'jetflow.callback.acme',
      '$KV.jetflow_cancel.fabc',
      '$KV.jetflow_idempotency.acme.x',
      `$JS.API.STREAM.MSG.DELETE.${STREAMS.dlq}`,
    ]) {
      assert.equal(canPub(ingest, s), true, `ingest publishes ${s}`);
    }
    assert.equal(canPub(ingest, '$KV.jetflow_flows.fabc'), false, 'only the orchestrator writes flow state');
    assert.equal(canSub(ingest, 'jetflow.event.acme.fabc'), true);
    const op = byRole(ids, 'operator');
    assert.equal(canSub(op, 'jetflow.task.dataset.text'), true);
    assert.equal(canPub(op, `$JS.API.STREAM.MSG.GET.${STREAMS.tasks}`), true);
    assert.equal(canPub(op, `$JS.API.CONSUMER.DELETE.${STREAMS.dlq}.abc123`), true);
    assert.equal(canPub(op, `$JS.API.CONSUMER.CREATE.${STREAMS.tasks}`), false, 'no consumer of its own on a work queue');
    assert.equal(canPub(op, `$JS.API.CONSUMER.DELETE.${STREAMS.results}.${CONSUMERS.results(0)}`), false);
    assert.equal(canPub(op, `$JS.API.CONSUMER.MSG.NEXT.${STREAMS.ingest}.${CONSUMERS.ingest('acme')}`), false);
    assert.equal(canPub(op, `$KV.jetflow_cancel.fabc`), false, 'reads, redrives, never cancels behind the API');
  });

  test('invalid input is refused naming what is wrong', () => {
    assert.throws(
      () => deriveIdentities({ ...INPUT, tenants: ['Acme!'] }),
      (e: Error) => e instanceof SecurityInputError && e.field === 'tenants' && /Acme!/.test(e.message),
    );
    assert.throws(() => deriveIdentities({ ...INPUT, tenants: ['acme', 'acme'] }), /tenant "acme" is listed twice/);
    assert.throws(() => deriveIdentities({ ...INPUT, workers: { ext: ['jetflow.ingest.>'] } }), /workers\.ext: "jetflow\.ingest\.>" is not a task subject pattern/);
    assert.throws(() => deriveIdentities({ ...INPUT, workers: { ext: ['jetflow.task.ml.>'] } }), /workers\.ext: jetflow\.task\.ml\.> matches no task subject/);
    assert.throws(() => deriveIdentities({ ...INPUT, partitions: 0 }), /partitions: must be an integer from 1 to 256/);
    assert.throws(() => deriveIdentities({ ...INPUT, taskSubjects: ['jetflow.task.a.>'] }), /taskSubjects: "jetflow\.task\.a\.>" is not a task subject/);
  });
});

const STREAM_NAMES = [...Object.values(STREAMS), 'KV_jetflow_flows', 'KV_jetflow_cancel'];

describe('secrets and the server configuration', () => {
  test('the configuration holds bcrypt hashes of each secret, never the secret; users are split into Jetflow and tenant accounts', () => {
    const sec = natsSecurity(INPUT, { bcryptCost: 4, server: { port: 4222 } });
    const text = JSON.stringify(sec.config);
    assert.equal(sec.config.port, 4222);
    const jetflow = sec.config.accounts[JETFLOW_ACCOUNT]!;
    assert.equal(jetflow.jetstream, 'enabled');
    assert.deepEqual(jetflow.users.map((u) => u.user).sort(), ['analyst', 'dataset-generator', 'ingest', 'operator', 'orchestrator']);
    assert.deepEqual(jetflow.exports, [
      { service: 'jetflow.ingest.acme.>', accounts: ['TENANT_acme'] },
      { service: 'jetflow.ingest.globex.>', accounts: ['TENANT_globex'] },
    ]);
    assert.deepEqual(sec.config.accounts.TENANT_acme!.imports, [{ service: { account: JETFLOW_ACCOUNT, subject: 'jetflow.ingest.acme.>' } }]);
    assert.equal(sec.config.accounts.TENANT_acme!.jetstream, undefined, 'no JetStream in a tenant account');
    const users = Object.values(sec.config.accounts).flatMap((a) => a.users);
    assert.equal(users.length, sec.secrets.length);
    for (const s of sec.secrets) {
      assert.ok(s.password.length >= 40, 'a long random password');
      assert.ok(!text.includes(s.password), `the configuration does not contain ${s.user}'s password`);
      const u = users.find((x) => x.user === s.user)!;
      assert.match(u.password, /^\$2[aby]\$04\$/);
      assert.equal(verifyPassword(s.password, u.password), true);
      assert.ok(u.permissions.publish.allow.length > 0 && u.permissions.subscribe.allow.length > 0, 'an empty allow list would mean everything');
    }
    assert.equal(new Set(sec.secrets.map((s) => s.password)).size, sec.secrets.length, 'every password differs');
  });

  test('kept passwords are reused (no rotation on regeneration); weak ones are refused', () => {
    const ids = deriveIdentities(INPUT);
    const first = issueSecrets(ids);
    const keep = Object.fromEntries(first.map((s) => [s.user, s.password]));
    assert.deepEqual(issueSecrets(ids, { keep }), first);
    assert.throws(() => issueSecrets(ids, { keep: { ingest: 'short' } }), /password of NATS user "ingest" is shorter than 24/);
  });

  test('the rendered text is JSON nats-server reads', () => {
    const ids = deriveIdentities(INPUT);
    const parsed = JSON.parse(renderServerConfigText(ids, issueSecrets(ids), { bcryptCost: 4 })) as { accounts: Record<string, unknown> };
    assert.deepEqual(Object.keys(parsed.accounts).sort(), ['JETFLOW', 'TENANT_acme', 'TENANT_globex']);
  });
});
