import { createHash } from 'node:crypto';
import { JetflowError, ErrorCodes } from '../../../../libs/errors/src/index.js';

/** Maps "Bearer <key>" to its tenant. Keys are kept only as SHA-256 hashes. */
export class Authenticator {
  constructor(
    private readonly keys: ReadonlyMap<string, string>,
    private readonly disabled: boolean,
  ) {}

  tenantOf(authorization: string | undefined): string {
    if (this.disabled) {
      // Trusted network: "Bearer tenant:<name>" picks the tenant, default otherwise.
      const m = /^Bearer tenant:([a-z0-9][a-z0-9_-]{0,62})$/.exec(authorization ?? '');
      return m ? m[1]! : 'default';
    }
    const m = /^Bearer\s+(\S+)$/i.exec(authorization ?? '');
    if (!m) throw new JetflowError(ErrorCodes.UNAUTHENTICATED, authorization ? 'malformed Authorization header; expected "Bearer <api key>"' : 'missing Authorization header; expected "Bearer <api key>"');
    const tenant = this.keys.get(createHash('sha256').update(m[1]!).digest('hex'));
    if (!tenant) throw new JetflowError(ErrorCodes.UNAUTHENTICATED, 'unknown API key');
    return tenant;
  }
}
