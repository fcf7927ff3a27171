import { ApiError } from './api.js';

/**
 * Exit codes, distinct per kind of failure so scripts can branch without parsing stderr.
 * 0-2 keep their meaning from `watch` (the flow's outcome); the others say why a command did not work.
 */
export const EXIT = {
  ok: 0,
  /** The flow failed or was cancelled (watch), or the server refused the request (400, 409, 413, 415, 422). */
  failed: 1,
  /** The flow ended partial (watch). */
  partial: 2,
  /** Bad command line: unknown command or option, missing or malformed argument, unreadable or non-JSON file. */
  usage: 3,
  /** No API key, or a key the server does not know (401, 403). */
  auth: 4,
  /** The flow or dead letter does not exist, or belongs to another tenant (404). */
  notFound: 5,
  /** The server failed or sheds load (5xx, 429): retrying later may work. */
  server: 6,
  /** Ingest could not be reached at all (connection refused, DNS, TLS). */
  unreachable: 7,
} as const;

/** A mistake on the command line: exits with EXIT.usage. */
export class UsageError extends Error {
  override name = 'UsageError';
}

export function exitCodeOfError(err: unknown): number {
  if (err instanceof UsageError) return EXIT.usage;
  if (!(err instanceof ApiError)) return EXIT.failed;
  if (err.status === 0) return EXIT.unreachable;
  if (err.status === 401 || err.status === 403) return EXIT.auth;
  if (err.status === 404) return EXIT.notFound;
  if (err.status === 429 || err.status >= 500) return EXIT.server;
  return EXIT.failed;
}
