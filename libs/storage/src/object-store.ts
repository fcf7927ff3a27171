import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { CreateBucketCommand, GetObjectCommand, HeadBucketCommand, PutObjectCommand, type BucketLocationConstraint, type S3Client } from '@aws-sdk/client-s3';
import { awsErrorName, awsHttpStatus, StorageError } from './errors.js';
import { decodeJsonLines, encodeJsonLines } from './json-lines.js';
import { checkKey, formatS3Ref, parseS3Ref } from './refs.js';

export const DEFAULT_CLAIM_THRESHOLD_BYTES = 64 * 1024;
export const DEFAULT_CLAIM_KEY_PREFIX = 'claims/';

export interface ObjectStoreOptions {
  s3: S3Client;
  bucket: string;
  /** Payloads above this size are stored and referenced by `claimCheck`. Default 64 KiB. */
  claimThresholdBytes?: number;
  /** Where `claimCheck` stores payloads unless told otherwise. Default `claims/`. */
  claimKeyPrefix?: string;
}

export interface PutOptions {
  contentType?: string;
  contentEncoding?: string;
}

export interface StoredObject {
  /** `s3://bucket/key` */
  ref: string;
  /** Bytes stored (after compression). */
  bytes: number;
}

export interface StoredJsonLines extends StoredObject {
  rows: number;
  /** Bytes of JSON lines before gzip. */
  rawBytes: number;
}

/** A payload either carried inline or checked into S3 (the claim-check pattern). */
export type Claim = { inline: Uint8Array; ref?: undefined } | { ref: string; inline?: undefined };

export interface ClaimCheckOptions {
  /** Inline up to and including this many bytes. Defaults to the store's `claimThresholdBytes`. */
  thresholdBytes?: number;
  /** Key prefix of the stored payload. Defaults to the store's `claimKeyPrefix`. */
  keyPrefix?: string;
  contentType?: string;
}

/**
 * Objects in one S3 bucket: raw bytes, JSON, gzip JSON lines (datasets) and claim checks.
 * Reads take `s3://bucket/key` references, which may name another bucket.
 */
export class ObjectStore {
  readonly s3: S3Client;
  readonly bucket: string;
  readonly claimThresholdBytes: number;
  readonly claimKeyPrefix: string;

  constructor(opts: ObjectStoreOptions) {
    if (!opts.bucket) throw new StorageError('invalid_argument', 'ObjectStore needs a bucket name');
    this.s3 = opts.s3;
    this.bucket = opts.bucket;
    this.claimThresholdBytes = checkThreshold(opts.claimThresholdBytes ?? DEFAULT_CLAIM_THRESHOLD_BYTES);
    this.claimKeyPrefix = opts.claimKeyPrefix ?? DEFAULT_CLAIM_KEY_PREFIX;
  }

  /** The reference of `key` in this store's bucket. */
  refFor(key: string): string {
    return formatS3Ref(this.bucket, checkKey(key));
  }

  /** Creates the bucket unless it exists. Safe to call from every replica at start. */
  async ensureBucket(): Promise<void> {
    if (await this.bucketExists()) return;
    const region = await this.s3.config.region();
    try {
      await this.s3.send(
        new CreateBucketCommand({
          Bucket: this.bucket,
          // us-east-1 is the one region that rejects an explicit location constraint.
          ...(region && region !== 'us-east-1' ? { CreateBucketConfiguration: { LocationConstraint: region as BucketLocationConstraint } } : {}),
        }),
      );
    } catch (err) {
      // Another replica won the race (s3rver says AlreadyExists even to the owner).
      const name = awsErrorName(err);
      if (name !== 'BucketAlreadyOwnedByYou' && name !== 'BucketAlreadyExists') {
        throw new Error(`cannot create bucket '${this.bucket}': ${(err as Error).message}`, { cause: err });
      }
      if (!(await this.bucketExists())) {
        throw new Error(`bucket '${this.bucket}' exists but is owned by someone else`, { cause: err });
      }
    }
  }

  private async bucketExists(): Promise<boolean> {
    try {
      await this.s3.send(new HeadBucketCommand({ Bucket: this.bucket }));
      return true;
    } catch (err) {
      const status = awsHttpStatus(err);
      if (status === 404) return false;
      if (status === 403) {
        throw new Error(`bucket '${this.bucket}' is not accessible with these credentials (403)`, { cause: err });
      }
      throw err;
    }
  }

  async putBytes(key: string, bytes: Uint8Array, opts: PutOptions = {}): Promise<StoredObject> {
    checkKey(key);
    await this.s3.send(
      new PutObjectCommand({
        Bucket: this.bucket,
        Key: key,
        Body: bytes,
        ContentLength: bytes.byteLength,
        ContentType: opts.contentType ?? 'application/octet-stream',
        ...(opts.contentEncoding ? { ContentEncoding: opts.contentEncoding } : {}),
      }),
    );
    return { ref: formatS3Ref(this.bucket, key), bytes: bytes.byteLength };
  }

  async getBytes(ref: string): Promise<Uint8Array> {
    const body = await this.open(ref);
    return body.transformToByteArray();
  }

  async putJson(key: string, value: unknown): Promise<StoredObject> {
    return this.putBytes(key, encodeJson(value, key), { contentType: 'application/json' });
  }

  async getJson<T = unknown>(ref: string): Promise<T> {
    return decodeJson<T>(await this.getBytes(ref), ref);
  }

  /** Writes rows as gzip-compressed JSON lines (a dataset file). */
  async putJsonLines(key: string, rows: Iterable<unknown> | AsyncIterable<unknown>): Promise<StoredJsonLines> {
    const encoded = await encodeJsonLines(rows);
    const stored = await this.putBytes(key, encoded.body, {
      contentType: 'application/x-ndjson',
      contentEncoding: 'gzip',
    });
    return { ...stored, rows: encoded.rows, rawBytes: encoded.rawBytes };
  }

  /** Reads a whole JSON lines file (gzip or plain) into memory. */
  async getJsonLines<T = unknown>(ref: string): Promise<T[]> {
    const rows: T[] = [];
    for await (const row of this.readJsonLines<T>(ref)) rows.push(row);
    return rows;
  }

  /** Streams the rows of a JSON lines file (gzip or plain) without holding the file in memory. */
  async *readJsonLines<T = unknown>(ref: string): AsyncGenerator<T> {
    const body = await this.open(ref);
    yield* decodeJsonLines<T>(body as unknown as Readable, ref);
  }

  /**
   * Inline when small, otherwise stored under `<keyPrefix><sha256>` and referenced. The key is derived
   * from the content, so a retried or replayed call writes the same object and returns the same ref.
   */
  async claimCheck(bytes: Uint8Array, opts: ClaimCheckOptions = {}): Promise<Claim> {
    const threshold = checkThreshold(opts.thresholdBytes ?? this.claimThresholdBytes);
    if (bytes.byteLength <= threshold) return { inline: bytes };
    const prefix = normalisePrefix(opts.keyPrefix ?? this.claimKeyPrefix);
    const key = `${prefix}${createHash('sha256').update(bytes).digest('hex')}`;
    const { ref } = await this.putBytes(key, bytes, { contentType: opts.contentType ?? 'application/octet-stream' });
    return { ref };
  }

  /** The bytes of a claim, fetched from S3 when it carries a reference. */
  async resolveClaim(claim: { inline?: Uint8Array | undefined; ref?: string | undefined }): Promise<Uint8Array> {
    if (claim.inline !== undefined && claim.ref !== undefined) {
      throw new StorageError('invalid_data', 'claim has both inline data and a ref');
    }
    if (claim.inline !== undefined) return claim.inline;
    if (claim.ref !== undefined) return this.getBytes(claim.ref);
    throw new StorageError('invalid_data', 'claim has neither inline data nor a ref');
  }

  /** `claimCheck` of a value's JSON. */
  async claimCheckJson(value: unknown, opts: ClaimCheckOptions = {}): Promise<Claim> {
    return this.claimCheck(encodeJson(value, 'claim'), { contentType: 'application/json', ...opts });
  }

  async resolveClaimJson<T = unknown>(claim: { inline?: Uint8Array | undefined; ref?: string | undefined }): Promise<T> {
    return decodeJson<T>(await this.resolveClaim(claim), claim.ref ?? 'inline claim');
  }

  private async open(ref: string) {
    const { bucket, key } = parseS3Ref(ref);
    try {
      const res = await this.s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      if (!res.Body) throw new StorageError('invalid_data', `${ref} has no body`);
      return res.Body;
    } catch (err) {
      const name = awsErrorName(err);
      if (name === 'NoSuchKey' || name === 'NoSuchBucket' || awsHttpStatus(err) === 404) {
        throw new StorageError('not_found', `${ref} does not exist`, { cause: err });
      }
      throw err;
    }
  }
}

function encodeJson(value: unknown, what: string): Uint8Array {
  const text = JSON.stringify(value);
  if (text === undefined) throw new StorageError('invalid_argument', `${what}: value cannot be written as JSON`);
  return Buffer.from(text);
}

function decodeJson<T>(bytes: Uint8Array, what: string): T {
  try {
    return JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8')) as T;
  } catch (cause) {
    throw new StorageError('invalid_data', `${what} is not valid JSON`, { cause });
  }
}

function checkThreshold(n: number): number {
  if (!Number.isInteger(n) || n < 0) {
    throw new StorageError('invalid_argument', `claim threshold must be a non-negative integer of bytes, got ${n}`);
  }
  return n;
}

function normalisePrefix(prefix: string): string {
  if (prefix === '') return '';
  checkKey(prefix);
  return prefix.endsWith('/') ? prefix : `${prefix}/`;
}
