/**
 * Stable codes for storage failures the caller can act on. Match on `code`, not on `instanceof`
 * (errors cross threads and the wire). Transport failures of the AWS SDK are passed through as `cause`.
 */
export type StorageErrorCode =
  /** A bad argument: an empty key, an invalid tenant, a malformed config value. */
  | 'invalid_argument'
  /** A string that should be an `s3://bucket/key` reference is not one. */
  | 'invalid_ref'
  /** A listing cursor that is malformed or belongs to another query. */
  | 'invalid_cursor'
  /** The object or record does not exist. */
  | 'not_found'
  /** Stored data could not be decoded (corrupt JSON lines, a claim with neither inline nor ref). */
  | 'invalid_data'
  /** The existing table or bucket does not have the shape this code needs. */
  | 'schema_mismatch';

export class StorageError extends Error {
  override readonly name = 'StorageError';
  readonly code: StorageErrorCode;

  constructor(code: StorageErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

export function isStorageError(err: unknown, code?: StorageErrorCode): err is StorageError {
  if (typeof err !== 'object' || err === null) return false;
  const e = err as { name?: unknown; code?: unknown };
  return e.name === 'StorageError' && typeof e.code === 'string' && (code === undefined || e.code === code);
}

/** The AWS SDK's service exceptions carry the error name; `$metadata.httpStatusCode` the status. */
export function awsErrorName(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const name = (err as { name?: unknown }).name;
  return typeof name === 'string' ? name : undefined;
}

export function awsHttpStatus(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const meta = (err as { $metadata?: { httpStatusCode?: unknown } }).$metadata;
  return typeof meta?.httpStatusCode === 'number' ? meta.httpStatusCode : undefined;
}
