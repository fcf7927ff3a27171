import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from './index.js';
import { natsAuth } from './nats.js';

const refused = (variable: string, message: RegExp) => (e: unknown) => e instanceof ConfigError && e.variable === variable && message.test(e.message);

describe('NATS credentials from the standard variables', () => {
  test('none set: anonymous, with the role inbox prefix', () => {
    assert.deepEqual(natsAuth({}, 'ingest'), { inboxPrefix: '_INBOX.ingest' });
  });

  test('NATS_USER + NATS_PASSWORD, with NATS_INBOX_PREFIX; the password keeps its characters', () => {
    assert.deepEqual(natsAuth({ NATS_USER: 'worker-ext', NATS_PASSWORD: 'p@ss word', NATS_INBOX_PREFIX: '_INBOX.worker-ext' }, 'analyst'), {
      inboxPrefix: '_INBOX.worker-ext',
      credentials: { kind: 'user', user: 'worker-ext', password: 'p@ss word' },
    });
  });

  test('a user without a password, or a password without a user, fails naming the missing variable', () => {
    assert.throws(() => natsAuth({ NATS_USER: 'ingest' }, 'ingest'), refused('NATS_PASSWORD', /NATS_USER is set \("ingest"\) but NATS_PASSWORD is not/));
    assert.throws(() => natsAuth({ NATS_USER: 'ingest', NATS_PASSWORD: '  ' }, 'ingest'), refused('NATS_PASSWORD', /not/));
    assert.throws(() => natsAuth({ NATS_PASSWORD: 'secret' }, 'ingest'), refused('NATS_USER', /NATS_PASSWORD is set but NATS_USER is not/));
  });

  test('two ways at once are refused', () => {
    assert.throws(() => natsAuth({ NATS_TOKEN: 't', NATS_USER: 'u', NATS_PASSWORD: 'p' }, 'ingest'), refused('NATS_TOKEN', /only one way.*NATS_USER \+ NATS_PASSWORD and NATS_TOKEN/));
    assert.throws(() => natsAuth({ NATS_CREDS: '/x.creds', NATS_TOKEN: 't' }, 'ingest'), refused('NATS_CREDS', /only one way/));
  });

  test('NATS_TOKEN', () => {
    assert.deepEqual(natsAuth({ NATS_TOKEN: 's3cret' }, 'orchestrator').credentials, { kind: 'token', token: 's3cret' });
  });

  test('NATS_CREDS must be a readable credentials file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'jetflow-creds-'));
    assert.throws(() => natsAuth({ NATS_CREDS: join(dir, 'missing.creds') }, 'ingest'), refused('NATS_CREDS', /cannot read .*missing\.creds: ENOENT/));
    writeFileSync(join(dir, 'bad.creds'), 'user=alice\n');
    assert.throws(() => natsAuth({ NATS_CREDS: join(dir, 'bad.creds') }, 'ingest'), refused('NATS_CREDS', /is not a NATS credentials file/));
    const good = '-----BEGIN NATS USER JWT-----\neyJ0eXAi\n------END NATS USER JWT------\n\n-----BEGIN USER NKEY SEED-----\nSUAM\n------END USER NKEY SEED------\n';
    writeFileSync(join(dir, 'ok.creds'), good);
    const c = natsAuth({ NATS_CREDS: join(dir, 'ok.creds') }, 'ingest').credentials;
    assert.equal(c?.kind, 'creds');
    assert.equal(Buffer.from((c as { contents: Uint8Array }).contents).toString(), good);
  });

  test('an inbox prefix with a wildcard or an empty token is refused', () => {
    assert.throws(() => natsAuth({ NATS_INBOX_PREFIX: '_INBOX.*' }, 'ingest'), refused('NATS_INBOX_PREFIX', /not a subject prefix/));
    assert.throws(() => natsAuth({ NATS_INBOX_PREFIX: '_INBOX..x' }, 'ingest'), refused('NATS_INBOX_PREFIX', /not a subject prefix/));
  });
});
