import { RetryableError, TerminalError, type JetflowError } from '@jetflow/errors';
import { isStorageError } from './errors.js';

/**
 * A storage failure in terms the task runtime acts on (libs/errors codes): a bad or missing
 * reference, or data that cannot be decoded, is terminal (a retry reads the same thing); anything
 * else (a network error, throttling, a 5xx, a timeout) is a hiccup and retryable. `what` says what
 * the task was doing, e.g. "reading dataset text".
 */
export function storageTaskError(err: unknown, what: string): JetflowError {
  const message = `${what}: ${(err as Error | undefined)?.message ?? String(err)}`;
  if (isStorageError(err)) {
    if (err.reason === 'invalid_argument' || err.reason === 'invalid_ref' || err.reason === 'not_found' || err.reason === 'invalid_data') {
      return new TerminalError(message, { cause: err });
    }
  }
  return new RetryableError(message, { cause: err });
}
