/**
 * Why a storage call failed, in terms a caller can act on. Match on `code` or `reason`, not on
 * `instanceof` (errors cross threads and the wire). AWS SDK failures are passed through unchanged
 * or kept as `cause`.
 */
export type StorageErrorReason =
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
  /** The existing table does not have the shape this code needs. */
  | 'schema_mismatch';

/** The project-wide code (libs/errors vocabulary), which maps to HTTP and gRPC statuses. */
export type StorageErrorCode = 'invalid_argument' | 'not_found' | 'internal';

const CODE_OF: Record<StorageErrorReason, StorageErrorCode> = {
  invalid_argument: 'invalid_argument',
  invalid_ref: 'invalid_argument',
  invalid_cursor: 'invalid_argument',
  not_found: 'not_found',
  invalid_data: 'internal',
  schema_mismatch: 'internal',
};

export class StorageError extends Error {
  override readonly name = 'StorageError';
  readonly code: StorageErrorCode;
  readonly reason: StorageErrorReason;

  constructor(reason: StorageErrorReason, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.reason = reason;
    this.code = CODE_OF[reason];
  }
}

export function isStorageError(err: unknown, reason?: StorageErrorReason): err is StorageError {
  if (typeof err !== 'object' || err === null) return false;
  const e = err as { name?: unknown; reason?: unknown };
  return e.name === 'StorageError' && typeof e.reason === 'string' && (reason === undefined || e.reason === reason);
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
