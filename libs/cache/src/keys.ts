import { createHash } from 'node:crypto';

/** Keys longer than this (after escaping) are hashed; subjects stay short and cheap to match. */
export const MAX_KV_KEY_LENGTH = 200;

// JetStream KV keys are subject tokens: [-/=._A-Za-z0-9], no leading or trailing '.', no empty token.
const PLAIN = /^[-/_A-Za-z0-9]$/;

/**
 * Maps any string to a legal KV key, injectively: legal characters pass through, everything else
 * (and '=' itself, the escape character) becomes `=XX` per UTF-8 byte, and a '.' that would make an
 * empty token is escaped too. An escaped key longer than MAX_KV_KEY_LENGTH becomes a readable prefix
 * plus `=H` and the SHA-256 of the original key; `=H` never occurs in an escaped key (an escape is
 * `=` and two hex digits), so hashed and unhashed keys cannot collide.
 */
export function toKvKey(key: string): string {
  if (key.length === 0) throw new Error('cache key must be a non-empty string');
  let out = '';
  const chars = Array.from(key);
  chars.forEach((ch, i) => {
    if (PLAIN.test(ch)) {
      out += ch;
    } else if (ch === '.' && i > 0 && i < chars.length - 1 && chars[i - 1] !== '.' && chars[i + 1] !== '.') {
      out += ch;
    } else {
      for (const byte of Buffer.from(ch, 'utf8')) out += `=${byte.toString(16).toUpperCase().padStart(2, '0')}`;
    }
  });
  if (out.length <= MAX_KV_KEY_LENGTH) return out;
  const digest = createHash('sha256').update(key, 'utf8').digest('hex');
  return `${out.slice(0, MAX_KV_KEY_LENGTH - 66)}=H${digest}`;
}
