/**
 * JetStream errors matched by their API error code (`err_code`), never by message text: descriptions
 * change between server versions, codes do not. Numbers from nats-server's errors.json (2.9 and later;
 * the few added after 2.9 are marked). Names follow nats.js's `JetStreamApiCodes`.
 */
export const JetStreamApiCodes = {
  /** 503 "JetStream system temporarily unavailable": no meta/stream leader (election, busy cluster). */
  ClusterNotAvailable: 10008,
  /** 503 "incomplete results" (a cluster answered only in part). */
  ClusterIncomplete: 10004,
  /** 500 "JetStream cluster can not handle request". */
  ClusterNotLeader: 10009,
  /** 400 no suitable peers for the replica count (the server's own text). */
  ClusterNoPeers: 10005,
  /** 503 "insufficient resources" (e.g. more replicas than servers). */
  InsufficientResources: 10023,
  /** 400 "resource limits exceeded for account". */
  AccountResourcesExceeded: 10002,
  /** 500 "insufficient storage resources available". */
  StorageResourcesExceeded: 10047,
  /** 500 "insufficient memory resources available". */
  MemoryResourcesExceeded: 10028,
  /** 500 "replicas > 1 not supported in non-clustered mode". */
  StreamReplicasNotSupported: 10074,
  /** 503 a publish the stream could not store: "maximum bytes exceeded", "maximum messages exceeded" (discard new). */
  StreamStoreFailed: 10077,
  /** 500 general stream limits error. */
  StreamLimits: 10053,
  /** 400 "message size exceeds maximum allowed". */
  StreamMessageExceedsMaximum: 10054,
  /** 404 "stream not found". */
  StreamNotFound: 10059,
  /** 400 "stream name already in use with a different configuration". */
  StreamNameInUse: 10058,
  /** 400 "subjects overlap with an existing stream". */
  StreamSubjectOverlap: 10065,
  /** 400 "wrong last sequence: <n>": a compare-and-set (Nats-Expected-Last-Subject-Sequence) lost. */
  StreamWrongLastSequence: 10071,
  /** 400 "wrong last msg ID". */
  StreamWrongLastMsgId: 10070,
  /** 400 "expected stream does not match". */
  StreamNotMatch: 10060,
  /** 500 "stream is offline". */
  StreamOffline: 10118,
  /** 404 "consumer not found". */
  ConsumerNotFound: 10014,
  /** 400 "consumer name already in use" (a durable with another config). */
  ConsumerNameExists: 10013,
  /** 400 "consumer already exists and is still active". */
  ConsumerExistingActive: 10105,
  /** 400 "filtered consumer not unique on workqueue stream". */
  ConsumerWQConsumerNotUnique: 10100,
  /** 500 "consumer is offline". */
  ConsumerOffline: 10119,
  /** 400 "consumer already exists" (action create; servers after 2.9). */
  ConsumerAlreadyExists: 10148,
  /** 404 "no message found" (a get of a sequence or subject the stream does not hold). */
  NoMessageFound: 10037,
  /** 400 "sequence <n> not found". */
  SequenceNotFound: 10043,
  /** 503 "JetStream not enabled". */
  JetStreamNotEnabled: 10076,
  /** 503 "JetStream not enabled for account". */
  JetStreamNotEnabledForAccount: 10039,
} as const;
export type JetStreamApiCode = (typeof JetStreamApiCodes)[keyof typeof JetStreamApiCodes];

/** The JetStream API error as the server sent it (nats.js keeps it as `api_error`; so do our publishers). */
export interface JsApiError {
  /** HTTP-like status: 400, 404, 503… */
  code: number;
  /** The unique JetStream error code (JetStreamApiCodes). */
  err_code?: number;
  description: string;
}

/** The JetStream error code of an error, if it carries one (nats.js errors and our publishers' errors do). */
export function jsErrorCode(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const c = (err as { api_error?: { err_code?: unknown } }).api_error?.err_code;
  return typeof c === 'number' && Number.isInteger(c) ? c : undefined;
}

/** Whether the error is a JetStream API error with one of these codes. */
export function isJsError(err: unknown, ...codes: number[]): boolean {
  const c = jsErrorCode(err);
  return c !== undefined && codes.includes(c);
}

/** A compare-and-set lost: someone else wrote the key/subject since it was read (KV create/update). */
export function isCasConflict(err: unknown): boolean {
  return isJsError(err, JetStreamApiCodes.StreamWrongLastSequence);
}

/**
 * Reads the `error` of a PubAck or API response from an untrusted bus message: a plain object with a
 * numeric code and a string description (err_code kept when it is an integer), else undefined.
 */
export function parseJsApiError(v: unknown): JsApiError | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const o = v as Record<string, unknown>;
  const code = typeof o.code === 'number' && Number.isInteger(o.code) ? o.code : 0;
  const description = typeof o.description === 'string' ? o.description.slice(0, 500) : '';
  const out: JsApiError = { code, description };
  if (typeof o.err_code === 'number' && Number.isInteger(o.err_code)) out.err_code = o.err_code;
  return out;
}
