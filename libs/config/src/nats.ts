import { readFileSync } from 'node:fs';
import { ConfigError, type Env } from './env.js';

/** How a service proves who it is to NATS, and where its replies come back. */
export interface NatsAuth {
  /**
   * The client's inbox prefix (NATS_INBOX_PREFIX, default `_INBOX.<role>`). Every reply (PubAcks, KV
   * gets, pulled messages) comes to `<prefix>.…`, and an identity's permissions allow only its own.
   */
  inboxPrefix: string;
  /** Absent: the server takes anonymous connections (a trusted network only). */
  credentials?: NatsCredentials;
}

export type NatsCredentials = { kind: 'creds'; file: string; contents: Uint8Array } | { kind: 'user'; user: string; password: string } | { kind: 'token'; token: string };

// Blank means unset; a password keeps its spaces otherwise (it is compared byte for byte).
const raw = (env: Env, name: string) => (env[name]?.trim() ? env[name] : undefined);

const PREFIX = /^[A-Za-z0-9_$-]+(\.[A-Za-z0-9_$-]+)*$/;

/**
 * The standard NATS client variables: NATS_CREDS (a creds file: user JWT and nkey seed), or NATS_USER
 * with NATS_PASSWORD, or NATS_TOKEN — at most one of them — and NATS_INBOX_PREFIX.
 */
export function natsAuth(env: Env, role: string): Readonly<NatsAuth> {
  const inboxPrefix = raw(env, 'NATS_INBOX_PREFIX')?.trim() ?? `_INBOX.${role}`;
  if (!PREFIX.test(inboxPrefix)) throw new ConfigError('NATS_INBOX_PREFIX', `"${inboxPrefix}" is not a subject prefix (tokens of letters, digits, _ $ -, joined by dots; no wildcards)`);
  const creds = raw(env, 'NATS_CREDS')?.trim();
  const user = raw(env, 'NATS_USER')?.trim();
  const password = raw(env, 'NATS_PASSWORD');
  const token = raw(env, 'NATS_TOKEN');
  const given = [creds && 'NATS_CREDS', (user || password) && 'NATS_USER + NATS_PASSWORD', token && 'NATS_TOKEN'].filter(Boolean);
  if (given.length > 1) throw new ConfigError(creds ? 'NATS_CREDS' : 'NATS_TOKEN', `set only one way to authenticate; got ${given.join(' and ')}`);
  if (user && !password) throw new ConfigError('NATS_PASSWORD', `NATS_USER is set ("${user}") but NATS_PASSWORD is not`);
  if (password && !user) throw new ConfigError('NATS_USER', 'NATS_PASSWORD is set but NATS_USER is not');
  if (user && password) return Object.freeze({ inboxPrefix, credentials: Object.freeze({ kind: 'user' as const, user, password }) });
  if (token) return Object.freeze({ inboxPrefix, credentials: Object.freeze({ kind: 'token' as const, token }) });
  if (creds) {
    let contents: Buffer;
    try {
      contents = readFileSync(creds);
    } catch (err) {
      throw new ConfigError('NATS_CREDS', `cannot read ${creds}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    const text = contents.toString('utf8');
    if (!/-----BEGIN NATS USER JWT-----/.test(text) || !/-----BEGIN USER NKEY SEED-----/.test(text)) {
      throw new ConfigError('NATS_CREDS', `${creds} is not a NATS credentials file (it needs a user JWT and a user nkey seed block)`);
    }
    return Object.freeze({ inboxPrefix, credentials: Object.freeze({ kind: 'creds' as const, file: creds, contents: new Uint8Array(contents) }) });
  }
  return Object.freeze({ inboxPrefix });
}
