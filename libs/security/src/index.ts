import { issueSecrets, type NatsSecret } from './credentials.js';
import { deriveIdentities, type Identity, type SecurityInput } from './roles.js';
import { renderServerConfig, type NatsAuthConfig, type RenderOptions } from './server-config.js';

export {
  DEFAULT_SERVES,
  JETFLOW_ACCOUNT,
  SERVICE_ROLES,
  SecurityInputError,
  deriveIdentities,
  inboxPrefixOf,
  tenantAccount,
  type Identity,
  type Permissions,
  type Role,
  type SecurityInput,
  type ServiceRole,
} from './roles.js';
export { MIN_PASSWORD_LENGTH, checkPassword, hashPassword, issueSecrets, newPassword, secretEnv, verifyPassword, type NatsSecret } from './credentials.js';
export { renderServerConfig, renderServerConfigText, type NatsAuthConfig, type RenderOptions } from './server-config.js';
export { NEVER as NEVER_GRANTED } from './grants.js';
export { securityInputFromEnv } from './env.js';

export interface NatsSecurity {
  identities: Identity[];
  /** Plaintext, one per identity: hand each only to its client. */
  secrets: NatsSecret[];
  /** The nats-server configuration (bcrypt hashes only). */
  config: NatsAuthConfig & Record<string, unknown>;
  secretFor(role: Identity['role']): NatsSecret;
}

/**
 * The one source of NATS identities: identities and permissions from the roles, the topology and the
 * tenants; a secret each (new, or kept by user name); the server configuration that admits exactly them.
 */
export function natsSecurity(input: SecurityInput, o: RenderOptions & { keep?: Readonly<Record<string, string>> } = {}): NatsSecurity {
  const identities = deriveIdentities(input);
  const secrets = issueSecrets(identities, o.keep ? { keep: o.keep } : {});
  const config = renderServerConfig(identities, secrets, o);
  return {
    identities,
    secrets,
    config,
    secretFor(role) {
      const s = secrets.find((x) => x.role === role);
      if (!s) throw new Error(`no NATS identity for role ${role}`);
      return s;
    },
  };
}
