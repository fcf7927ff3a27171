import { createHash } from 'node:crypto';
import { JetflowError, ErrorCodes } from '@jetflow/errors';

/** Who a request comes from: the tenant its key names, and whether the key is an operator key. */
export interface Principal {
  tenant: string;
  operator: boolean;
}

/** Maps "Bearer <key>" to its tenant and role. Keys are kept only as SHA-256 hashes. */
export class Authenticator {
  constructor(
    private readonly keys: ReadonlyMap<string, { tenant: string; role: 'tenant' | 'operator' }>,
    private readonly disabled: boolean,
  ) {}

  principalOf(authorization: string | undefined): Principal {
    if (this.disabled) {
      // Trusted network: "Bearer tenant:<name>" picks the tenant, default otherwise; everyone operates.
      const m = /^Bearer tenant:([a-z0-9][a-z0-9_-]{0,62})$/.exec(authorization ?? '');
      return { tenant: m ? m[1]! : 'default', operator: true };
    }
    const m = /^Bearer\s+(\S+)$/i.exec(authorization ?? '');
    if (!m)
      throw new JetflowError(
        ErrorCodes.UNAUTHENTICATED,
        authorization ? 'malformed Authorization header; expected "Bearer <api key>"' : 'missing Authorization header; expected "Bearer <api key>"',
      );
    const id = this.keys.get(createHash('sha256').update(m[1]!).digest('hex'));
    if (!id) throw new JetflowError(ErrorCodes.UNAUTHENTICATED, 'unknown API key');
    return { tenant: id.tenant, operator: id.role === 'operator' };
  }

  tenantOf(authorization: string | undefined): string {
    return this.principalOf(authorization).tenant;
  }
}

/** Refuses a tenant key on a system-wide view (one that shows every tenant's load or the deployment's layout). */
export function requireOperator(p: Principal, what: string): void {
  if (!p.operator) {
    throw new JetflowError(ErrorCodes.PERMISSION_DENIED, `${what} is a system-wide view and needs an operator API key; this is a tenant key (tenant "${p.tenant}")`);
  }
}
