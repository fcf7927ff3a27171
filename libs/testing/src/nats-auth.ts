import { connect, type ConnectionOptions, type NatsConnection } from 'nats';
import type { Env } from '@jetflow/config';
import { JETFLOW_ACCOUNT, hashPassword, natsSecurity, newPassword, secretEnv, securityInputFromEnv, type NatsSecurity, type Role, type SecurityInput } from '@jetflow/security';
import type { ServiceName } from '@jetflow/stack';

/**
 * NATS with identities for a test: the configuration libs/security derives (the same the deployments
 * use), plus one test-only superuser the harness's own connection uses, so a test can still inspect
 * and inject anything while every service runs with exactly its role's permissions.
 */
export interface TestNatsAuth {
  security: NatsSecurity;
  /** The nats-server configuration: the derived one plus the test superuser. */
  config: Record<string, unknown>;
  /** Connection options of an identity (user, password, inbox prefix); `admin` is the test superuser. */
  options(who: Role | 'admin'): Partial<ConnectionOptions>;
  /** NATS_USER, NATS_PASSWORD and NATS_INBOX_PREFIX of a role. */
  env(role: Role): Record<string, string>;
  /** Connects as an identity, without reconnecting (a test's probe). */
  connect(who: Role | 'admin', servers: string[], o?: Partial<ConnectionOptions>): Promise<NatsConnection>;
}

export const TEST_ADMIN_USER = 'test-admin';

/**
 * The identities for a stack started with this environment (and per-service environment): its
 * partitions, the task subjects of its flow definitions, the tenants of its API keys, and the task
 * subjects each worker service serves. bcrypt cost 4: the passwords are random, and starts stay fast.
 */
export function testNatsAuth(env: Env, serviceEnv: Partial<Record<ServiceName, Env>> = {}, extra: Pick<SecurityInput, 'workers'> & { tenants?: string[] } = {}): TestNatsAuth {
  const security = natsSecurity(securityInputFromEnv(env, serviceEnv, extra), { bcryptCost: 4 });
  const adminPassword = newPassword();
  const accounts = structuredClone(security.config.accounts);
  // No permissions block: everything, as anonymous connections had before (a test's inspections and injections).
  (accounts[JETFLOW_ACCOUNT]!.users as unknown[]).push({ user: TEST_ADMIN_USER, password: hashPassword(adminPassword, 4) });
  const options = (who: Role | 'admin'): Partial<ConnectionOptions> => {
    if (who === 'admin') return { user: TEST_ADMIN_USER, pass: adminPassword };
    const s = security.secretFor(who);
    return { user: s.user, pass: s.password, inboxPrefix: s.inboxPrefix };
  };
  return {
    security,
    config: { ...security.config, accounts },
    options,
    env: (role) => secretEnv(security.secretFor(role)),
    connect: (who, servers, o = {}) => connect({ servers, reconnect: false, timeout: 2_000, ...options(who), ...o }),
  };
}
