import { SUBJECTS } from '@jetflow/messaging';
import { hashPassword, type NatsSecret } from './credentials.js';
import { JETFLOW_ACCOUNT, type Identity } from './roles.js';

interface UserEntry {
  user: string;
  password: string;
  permissions: {
    publish: { allow: string[]; deny?: string[] };
    subscribe: { allow: string[]; deny?: string[] };
  };
}

interface AccountEntry {
  jetstream?: 'enabled';
  users: UserEntry[];
  exports?: Array<{ service: string; accounts: string[] }>;
  imports?: Array<{ service: { account: string; subject: string } }>;
}

/** The part of a nats-server configuration this module owns; the rest (ports, store, cluster) is the caller's. */
export interface NatsAuthConfig {
  accounts: Record<string, AccountEntry>;
}

export interface RenderOptions {
  /** bcrypt cost of the stored hashes (default 11; tests use less to start fast). */
  bcryptCost?: number;
  /** Other server settings merged in (port, jetstream store_dir, http, server_name, cluster…). */
  server?: Record<string, unknown>;
}

/**
 * The nats-server 2.9 configuration (its conf format accepts JSON) for these identities: no user
 * without a password (so anonymous connections are refused), bcrypt hashes only, one account for
 * Jetflow with JetStream, and one account per tenant importing only `jetflow.ingest.<tenant>.>`.
 *
 * Why tenants are accounts and not users of the Jetflow account: a publish may name any reply
 * subject, and JetStream sends its PubAck there. Inside one account a tenant could aim that ack at
 * `$KV.jetflow_cancel.<flow>` or a result subject and have a stream store it (measured on 2.9.10).
 * Across a service import the server rewrites the reply to one of its own, so the ack can only come back.
 */
export function renderServerConfig(identities: readonly Identity[], secrets: readonly NatsSecret[], o: RenderOptions = {}): NatsAuthConfig & Record<string, unknown> {
  const byUser = new Map(secrets.map((s) => [s.user, s]));
  const accounts: Record<string, AccountEntry> = { [JETFLOW_ACCOUNT]: { jetstream: 'enabled', users: [], exports: [] } };
  const users = new Set<string>();
  for (const i of identities) {
    if (users.has(i.user)) throw new Error(`NATS user "${i.user}" is defined twice`);
    users.add(i.user);
    const secret = byUser.get(i.user);
    if (!secret) throw new Error(`no secret for NATS user "${i.user}"`);
    // An empty allow list means "everything" to nats-server: never render one.
    if (!i.permissions.publish.allow.length || !i.permissions.subscribe.allow.length) throw new Error(`NATS user "${i.user}" has an empty allow list`);
    const entry: UserEntry = {
      user: i.user,
      password: hashPassword(secret.password, o.bcryptCost),
      permissions: {
        publish: { allow: i.permissions.publish.allow, ...(i.permissions.publish.deny.length ? { deny: i.permissions.publish.deny } : {}) },
        subscribe: { allow: i.permissions.subscribe.allow, ...(i.permissions.subscribe.deny.length ? { deny: i.permissions.subscribe.deny } : {}) },
      },
    };
    if (i.account === JETFLOW_ACCOUNT) {
      accounts[JETFLOW_ACCOUNT]!.users.push(entry);
      continue;
    }
    const tenant = i.role.startsWith('tenant:') ? i.role.slice('tenant:'.length) : undefined;
    if (!tenant) throw new Error(`NATS user "${i.user}" is outside the ${JETFLOW_ACCOUNT} account but is not a tenant`);
    if (accounts[i.account]) throw new Error(`account ${i.account} has more than one tenant identity`);
    const subject = `${SUBJECTS.ingest}.${tenant}.>`;
    accounts[JETFLOW_ACCOUNT]!.exports!.push({ service: subject, accounts: [i.account] });
    accounts[i.account] = { users: [entry], imports: [{ service: { account: JETFLOW_ACCOUNT, subject } }] };
  }
  if (!accounts[JETFLOW_ACCOUNT]!.exports!.length) delete accounts[JETFLOW_ACCOUNT]!.exports;
  return { ...(o.server ?? {}), accounts };
}

/** The configuration as the text of a nats-server config file. */
export function renderServerConfigText(identities: readonly Identity[], secrets: readonly NatsSecret[], o: RenderOptions = {}): string {
  return `${JSON.stringify(renderServerConfig(identities, secrets, o), null, 2)}\n`;
}
