import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { authOptions } from './connect.js';

describe('nats.js options for a NATS identity', () => {
  test('user and password, with the inbox prefix', () => {
    assert.deepEqual(authOptions({ inboxPrefix: '_INBOX.ingest', credentials: { kind: 'user', user: 'ingest', password: 'p' } }), {
      inboxPrefix: '_INBOX.ingest',
      user: 'ingest',
      pass: 'p',
    });
  });

  test('a token; no credentials (anonymous) keeps the prefix; no auth at all leaves the client defaults', () => {
    assert.deepEqual(authOptions({ inboxPrefix: '_INBOX.x', credentials: { kind: 'token', token: 't' } }), { inboxPrefix: '_INBOX.x', token: 't' });
    assert.deepEqual(authOptions({ inboxPrefix: '_INBOX.x' }), { inboxPrefix: '_INBOX.x' });
    assert.deepEqual(authOptions(undefined), {});
  });

  test("a creds file becomes the client's creds authenticator", () => {
    const o = authOptions({ inboxPrefix: '_INBOX.x', credentials: { kind: 'creds', file: '/x.creds', contents: new TextEncoder().encode('creds') } });
    assert.equal(o.inboxPrefix, '_INBOX.x');
    assert.equal(typeof o.authenticator, 'function');
    assert.equal(o.user, undefined);
  });
});
