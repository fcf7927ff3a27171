import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { StringDecoder } from 'node:string_decoder';
import { createGunzip, createGzip } from 'node:zlib';
import { StorageError } from './errors.js';

export interface EncodedJsonLines {
  /** gzip-compressed JSON lines. */
  body: Buffer;
  rows: number;
  /** Size before compression. */
  rawBytes: number;
}

// Rows are grouped into chunks of about this size: one stream write per row is slow for big datasets.
const CHUNK_CHARS = 64 * 1024;

/** Serialises rows as gzip-compressed JSON lines (one JSON value per `\n`-terminated line). */
export async function encodeJsonLines(rows: Iterable<unknown> | AsyncIterable<unknown>): Promise<EncodedJsonLines> {
  let count = 0;
  let rawBytes = 0;
  async function* chunks(): AsyncGenerator<Buffer> {
    let pending = '';
    for await (const row of rows) {
      const line = JSON.stringify(row);
      if (line === undefined) {
        throw new StorageError('invalid_argument', `row ${count} cannot be written as JSON (it is ${typeof row})`);
      }
      pending += line + '\n';
      count++;
      if (pending.length >= CHUNK_CHARS) {
        const buf = Buffer.from(pending);
        rawBytes += buf.length;
        pending = '';
        yield buf;
      }
    }
    if (pending) {
      const buf = Buffer.from(pending);
      rawBytes += buf.length;
      yield buf;
    }
  }
  const out: Buffer[] = [];
  await pipeline(Readable.from(chunks()), createGzip(), async (source: AsyncIterable<Buffer>) => {
    for await (const chunk of source) out.push(chunk);
  });
  return { body: Buffer.concat(out), rows: count, rawBytes };
}

/**
 * Parses JSON lines from a byte stream, gunzipping when the data starts with the gzip magic bytes
 * (so plain `.jsonl` files written by other tools read too). Blank lines are skipped. `what` names
 * the source in errors.
 */
export async function* decodeJsonLines<T = unknown>(body: AsyncIterable<Uint8Array>, what: string): AsyncGenerator<T> {
  const it = body[Symbol.asyncIterator]();
  const first = await it.next();
  if (first.done) return;
  const head = Buffer.from(first.value);

  async function* raw(): AsyncGenerator<Buffer> {
    yield head;
    for (;;) {
      const next = await it.next();
      if (next.done) return;
      yield Buffer.from(next.value);
    }
  }

  let bytes: AsyncIterable<Buffer>;
  let piping: Promise<void> | undefined;
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) {
    const gunzip = createGunzip();
    // pipeline destroys gunzip when the source fails, so the failure surfaces in the loop below;
    // its own rejection is then redundant (and fires on an early `break` too), hence swallowed.
    piping = pipeline(Readable.from(raw()), gunzip).catch(() => undefined);
    bytes = gunzip;
  } else {
    bytes = raw();
  }

  const decoder = new StringDecoder('utf8');
  let rest = '';
  let lineNo = 0;
  const parse = (line: string): T => {
    try {
      return JSON.parse(line) as T;
    } catch (cause) {
      throw new StorageError('invalid_data', `${what}: line ${lineNo} is not valid JSON`, { cause });
    }
  };
  try {
    for await (const chunk of bytes) {
      const lines = (rest + decoder.write(chunk)).split('\n');
      rest = lines.pop() ?? '';
      for (const text of lines) {
        lineNo++;
        const line = text.trim();
        if (line) yield parse(line);
      }
    }
    rest += decoder.end();
    const line = rest.trim();
    lineNo++;
    if (line) yield parse(line);
  } catch (err) {
    if (err instanceof StorageError) throw err;
    throw new StorageError('invalid_data', `${what}: cannot read JSON lines: ${(err as Error).message}`, { cause: err });
  } finally {
    // On an early exit this releases the source (for S3, the HTTP socket); after a full read it is a no-op.
    if (bytes instanceof Readable) bytes.destroy();
    await it.return?.();
    await piping;
  }
}
