/**
 * The small set of error codes used across threads and the wire. Match on `code`, never on instanceof.
 * One table maps every code to an HTTP status and a gRPC status (see STATUS).
 */
export const ErrorCodes = {
  INVALID_ARGUMENT: 'invalid_argument',
  UNAUTHENTICATED: 'unauthenticated',
  PERMISSION_DENIED: 'permission_denied',
  NOT_FOUND: 'not_found',
  CONFLICT: 'conflict',
  PAYLOAD_TOO_LARGE: 'payload_too_large',
  UNSUPPORTED_MEDIA_TYPE: 'unsupported_media_type',
  OVERLOADED: 'overloaded',
  QUOTA_EXCEEDED: 'quota_exceeded',
  UNAVAILABLE: 'unavailable',
  TERMINAL: 'terminal',
  RETRYABLE: 'retryable',
  TIMEOUT: 'timeout',
  CANCELLED: 'cancelled',
  INTERNAL: 'internal',
} as const;
export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

// gRPC status numbers (from @grpc/grpc-js's Status enum), kept here so libs need not import grpc-js.
const GRPC = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;

export const STATUS: Record<ErrorCode, { http: number; grpc: number; doc: string }> = {
  invalid_argument: { http: 400, grpc: GRPC.INVALID_ARGUMENT, doc: 'The request is malformed; details name each bad field.' },
  unauthenticated: { http: 401, grpc: GRPC.UNAUTHENTICATED, doc: 'No or bad API key.' },
  permission_denied: { http: 403, grpc: GRPC.PERMISSION_DENIED, doc: 'A valid key that may not do this: system-wide views need an operator key.' },
  not_found: { http: 404, grpc: GRPC.NOT_FOUND, doc: 'Unknown flow, or a flow of another tenant.' },
  conflict: { http: 409, grpc: GRPC.ALREADY_EXISTS, doc: 'Idempotency key reused with a different body.' },
  payload_too_large: { http: 413, grpc: GRPC.RESOURCE_EXHAUSTED, doc: 'The body is larger than the configured limit.' },
  unsupported_media_type: { http: 415, grpc: GRPC.INVALID_ARGUMENT, doc: 'The body is not JSON.' },
  overloaded: { http: 429, grpc: GRPC.RESOURCE_EXHAUSTED, doc: 'The system sheds load; retry after Retry-After seconds.' },
  quota_exceeded: {
    http: 429,
    grpc: GRPC.RESOURCE_EXHAUSTED,
    doc: 'The tenant is past its submissions per second or its flows in flight; retry after Retry-After seconds (gRPC: retry-after in the trailers).',
  },
  unavailable: { http: 503, grpc: GRPC.UNAVAILABLE, doc: 'The broker is unreachable; nothing was accepted.' },
  terminal: { http: 422, grpc: GRPC.FAILED_PRECONDITION, doc: 'A task failed in a way retries cannot fix.' },
  retryable: { http: 503, grpc: GRPC.UNAVAILABLE, doc: 'A transient failure; retried with backoff.' },
  timeout: { http: 504, grpc: GRPC.DEADLINE_EXCEEDED, doc: 'A time limit passed.' },
  cancelled: { http: 409, grpc: GRPC.CANCELLED, doc: 'The flow was cancelled.' },
  internal: { http: 500, grpc: GRPC.INTERNAL, doc: 'An unexpected error; reported with context.' },
};

export interface FieldIssue {
  path: string;
  message: string;
}

export class JetflowError extends Error {
  readonly code: ErrorCode;
  readonly details: FieldIssue[];
  readonly retryAfterMs: number | undefined;
  constructor(code: ErrorCode, message: string, opts: { details?: FieldIssue[]; cause?: unknown; retryAfterMs?: number } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'JetflowError';
    this.code = code;
    this.details = opts.details ?? [];
    this.retryAfterMs = opts.retryAfterMs;
  }
  toJSON() {
    return { code: this.code, message: this.message, details: this.details };
  }
}

/** Never retried: bad input, oversized payload, a bug in the request. */
export class TerminalError extends JetflowError {
  constructor(message: string, opts: { cause?: unknown; details?: FieldIssue[] } = {}) {
    super(ErrorCodes.TERMINAL, message, opts);
    this.name = 'TerminalError';
  }
}

/** Retried with backoff, optionally not before retryAfterMs. */
export class RetryableError extends JetflowError {
  constructor(message: string, opts: { cause?: unknown; retryAfterMs?: number } = {}) {
    super(ErrorCodes.RETRYABLE, message, opts);
    this.name = 'RetryableError';
  }
}

/**
 * A compare-and-set lost (JetStream "wrong last sequence"): someone else wrote the key since it was
 * read. Not a broker failure and not worth a blind retry: re-read, then decide.
 */
export class CasConflictError extends JetflowError {
  constructor(message: string, opts: { cause?: unknown } = {}) {
    super(ErrorCodes.CONFLICT, message, opts);
    this.name = 'CasConflictError';
  }
}

export function invalid(details: FieldIssue[], message?: string): JetflowError {
  const msg = message ?? (details.length ? details.map((d) => `${d.path || '(body)'}: ${d.message}`).join('; ') : 'invalid request');
  return new JetflowError(ErrorCodes.INVALID_ARGUMENT, msg, { details });
}

/** The code of any thrown value; plain errors (and errors crossing threads) are matched by their code property. */
export function codeOf(err: unknown): ErrorCode {
  const c = (err as { code?: unknown } | null)?.code;
  if (typeof c === 'string' && c in STATUS) return c as ErrorCode;
  return ErrorCodes.INTERNAL;
}

export function isTerminal(err: unknown): boolean {
  const c = codeOf(err);
  return c === 'terminal' || c === 'invalid_argument' || c === 'payload_too_large' || c === 'unsupported_media_type';
}

export * from './grpc-status.js';
