import { StorageError } from './errors.js';

/** Where a listing stopped: the last returned item's keys in the queried index. */
export interface ListPosition {
  index: string;
  pk: string;
  indexPk: string;
  indexSk: string;
}

/** Opaque to callers (base64url JSON); bound to the index and partition it came from. */
export function encodeCursor(pos: ListPosition): string {
  return Buffer.from(JSON.stringify([pos.index, pos.indexPk, pos.indexSk, pos.pk])).toString('base64url');
}

/** Decodes a cursor and checks it belongs to this query: a cursor cannot cross tenants or indexes. */
export function decodeCursor(cursor: string, expect: { index: string; indexPk: string }): ListPosition {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch (cause) {
    throw new StorageError('invalid_cursor', 'cursor is malformed', { cause });
  }
  if (!Array.isArray(parsed) || parsed.length !== 4 || !parsed.every((p) => typeof p === 'string' && p.length > 0)) {
    throw new StorageError('invalid_cursor', 'cursor is malformed');
  }
  const [index, indexPk, indexSk, pk] = parsed as [string, string, string, string];
  if (index !== expect.index || indexPk !== expect.indexPk) {
    throw new StorageError('invalid_cursor', 'cursor belongs to a different listing (tenant or status filter changed)');
  }
  return { index, indexPk, indexSk, pk };
}
