import { randomBytes } from 'node:crypto';
import bcrypt from 'bcryptjs';
import type { Identity, Role } from './roles.js';

/** What one client needs to connect as its identity: the only place a plaintext password exists. */
export interface NatsSecret {
  role: Role;
  user: string;
  password: string;
  /** The inbox prefix its permissions allow (NATS_INBOX_PREFIX). */
  inboxPrefix: string;
}

export const MIN_PASSWORD_LENGTH = 24;

/** 32 random bytes, base64url: 256 bits, so the bcrypt cost only has to make the stored hash slow to test. */
export const newPassword = () => randomBytes(32).toString('base64url');

/**
 * A secret for every identity: a new random password, or the one in `keep` (by user name) so that
 * regenerating the server configuration does not rotate what is already deployed.
 */
export function issueSecrets(identities: readonly Identity[], o: { keep?: Readonly<Record<string, string>> } = {}): NatsSecret[] {
  return identities.map((i) => {
    const kept = o.keep?.[i.user];
    if (kept !== undefined) checkPassword(i.user, kept);
    return { role: i.role, user: i.user, password: kept ?? newPassword(), inboxPrefix: i.inboxPrefix };
  });
}

export function checkPassword(user: string, password: string): void {
  if (password.length < MIN_PASSWORD_LENGTH) throw new Error(`the password of NATS user "${user}" is shorter than ${MIN_PASSWORD_LENGTH} characters`);
  // bcrypt reads only the first 72 bytes: a longer password would be weaker than it looks.
  if (Buffer.byteLength(password) > 72) throw new Error(`the password of NATS user "${user}" is longer than 72 bytes (bcrypt ignores the rest)`);
  if (/\s/.test(password)) throw new Error(`the password of NATS user "${user}" contains whitespace`);
}

/** The bcrypt hash nats-server stores instead of the password ($2b$, which 2.9 accepts). */
export function hashPassword(password: string, cost = 11): string {
  return bcrypt.hashSync(password, cost);
}

export function verifyPassword(password: string, hash: string): boolean {
  return bcrypt.compareSync(password, hash);
}

/** The standard variables a service reads its NATS identity from (see libs/config natsAuth). */
export function secretEnv(s: NatsSecret): Record<string, string> {
  return { NATS_USER: s.user, NATS_PASSWORD: s.password, NATS_INBOX_PREFIX: s.inboxPrefix };
}
