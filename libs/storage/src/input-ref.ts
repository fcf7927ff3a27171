import { gunzipSync } from 'node:zlib';
import { StorageError } from './errors.js';
import type { ObjectStore } from './object-store.js';

/**
 * A flow input read from S3 (`inputRef`, or the claim check): one JSON object, or JSON lines, one
 * record per line, which becomes `{ records: [...] }`; gzip either way. A missing object is
 * `not_found`; bytes that are neither form are `invalid_data`, naming the line that fails.
 */
export function parseInputObject(bytes: Uint8Array, ref: string): Record<string, unknown> {
  let buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length >= 2 && buf[0] === 0x1f && buf[1] === 0x8b) {
    try {
      buf = gunzipSync(buf);
    } catch (cause) {
      throw new StorageError('invalid_data', `${ref} starts like gzip but does not gunzip`, { cause });
    }
  }
  const text = buf.toString('utf8');
  const first = text.trimStart()[0];
  if (first === undefined) throw new StorageError('invalid_data', `${ref} is empty: expected a JSON object or JSON lines (one record per line)`);
  // One JSON object (it may span lines), else JSON lines.
  try {
    const v = JSON.parse(text) as unknown;
    if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
    if (Array.isArray(v)) throw new StorageError('invalid_data', `${ref} is a JSON array: give an object ({"records": [...]}) or JSON lines, one record per line`);
  } catch (err) {
    if (err instanceof StorageError) throw err;
    if (first === '{' && !text.includes('\n')) throw new StorageError('invalid_data', `${ref} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  const records: unknown[] = [];
  let line = 0;
  for (const raw of text.split('\n')) {
    line++;
    const l = raw.trim();
    if (!l) continue;
    let v: unknown;
    try {
      v = JSON.parse(l);
    } catch (cause) {
      throw new StorageError('invalid_data', `${ref} line ${line} is not JSON (the object holds neither one JSON object nor JSON lines)`, { cause });
    }
    if (!v || typeof v !== 'object' || Array.isArray(v)) throw new StorageError('invalid_data', `${ref} line ${line} is not a JSON object (JSON lines hold one record per line)`);
    records.push(v);
  }
  return { records };
}

/** Reads and parses a flow input from S3 (parseInputObject). */
export async function readInputObject(objects: Pick<ObjectStore, 'getBytes'>, ref: string): Promise<Record<string, unknown>> {
  return parseInputObject(await objects.getBytes(ref), ref);
}
