import { StorageError } from './errors.js';

export interface S3Location {
  bucket: string;
  key: string;
}

const PREFIX = 's3://';

/** `s3://bucket/key`: the form references take in messages, records and callbacks. */
export function formatS3Ref(bucket: string, key: string): string {
  return `${PREFIX}${bucket}/${key}`;
}

export function parseS3Ref(ref: string): S3Location {
  if (typeof ref !== 'string' || !ref.startsWith(PREFIX)) {
    throw new StorageError('invalid_ref', `not an s3:// reference: '${String(ref).slice(0, 200)}'`);
  }
  const rest = ref.slice(PREFIX.length);
  const slash = rest.indexOf('/');
  if (slash <= 0 || slash === rest.length - 1) {
    throw new StorageError('invalid_ref', `s3 reference needs a bucket and a key: '${ref.slice(0, 200)}'`);
  }
  return { bucket: rest.slice(0, slash), key: rest.slice(slash + 1) };
}

/** S3 keys: 1 to 1024 UTF-8 bytes. A leading slash would make a different, confusing key. */
export function checkKey(key: string): string {
  if (typeof key !== 'string' || key.length === 0) {
    throw new StorageError('invalid_argument', 'object key must be a non-empty string');
  }
  if (Buffer.byteLength(key) > 1024) {
    throw new StorageError('invalid_argument', `object key is longer than 1024 bytes: '${key.slice(0, 100)}...'`);
  }
  if (key.startsWith('/')) {
    throw new StorageError('invalid_argument', `object key must not start with '/': '${key}'`);
  }
  return key;
}
