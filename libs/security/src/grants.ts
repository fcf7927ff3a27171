/**
 * The NATS subjects behind each thing a Jetflow process does, as nats.js 2.29 sends them to
 * nats-server 2.9 (read from the client's source: jsm, kv, consumer and jsclient modules). A role is
 * the union of the grants its code needs; anything not granted is refused by the server.
 */

export interface Grant {
  /** Subjects this identity may publish to (requests to the JetStream API are publishes). */
  pub: string[];
  /** Subjects it may subscribe to. */
  sub: string[];
  /** Publishes refused even where an allow above matches (deny wins in nats-server). */
  denyPub?: string[];
}

const API = '$JS.API';

/** `nc.jetstreamManager()` checks the API with an account-info request first. */
export const accountInfo = (): Grant => ({ pub: [`${API}.INFO`], sub: [] });

/** Replies (PubAcks, API answers, pulled messages, KV watches) all come to the identity's own inboxes. */
export const inbox = (prefix: string): Grant => ({ pub: [], sub: [`${prefix}.>`] });

/** Provisioning at start: look up, create, and change in place (replicas, limits) — never delete or purge. */
export const provisionStream = (stream: string): Grant => ({
  pub: [`${API}.STREAM.INFO.${stream}`, `${API}.STREAM.CREATE.${stream}`, `${API}.STREAM.UPDATE.${stream}`],
  sub: [],
});

/**
 * Creating or updating a named durable. On 2.9 nats.js sends CONSUMER.CREATE.<stream>.<name>[.<filter>]
 * (the filter subject is part of the request subject); DURABLE.CREATE is the form older clients use.
 */
export const provisionConsumer = (stream: string, durable: string): Grant => ({
  pub: [
    `${API}.CONSUMER.INFO.${stream}.${durable}`,
    `${API}.CONSUMER.CREATE.${stream}.${durable}`,
    `${API}.CONSUMER.CREATE.${stream}.${durable}.>`,
    `${API}.CONSUMER.DURABLE.CREATE.${stream}.${durable}`,
  ],
  sub: [],
});

/**
 * Pulling from a durable and settling what it delivered: info (consumers.get, heartbeat checks),
 * pull requests, and ack / nak / working / term, which are publishes to the message's reply subject.
 * The second ack form is the one servers with JetStream domains (2.10+) use.
 */
export const consume = (stream: string, durable: string): Grant => ({
  pub: [`${API}.CONSUMER.INFO.${stream}.${durable}`, `${API}.CONSUMER.MSG.NEXT.${stream}.${durable}`, `$JS.ACK.${stream}.${durable}.>`, `$JS.ACK.*.*.${stream}.${durable}.>`],
  sub: [],
});

/**
 * Making, pulling and settling consumers of a work-queue stream whose consumers are named at run time (the
 * ingest stream's, one per tenant, made as tenants appear): provisionConsumer and consume with the name a
 * wildcard, for the one role that reads the stream. Deleting is refused but for `retire`, a consumer of an
 * earlier layout that the new ones cannot sit beside.
 */
export const consumeAny = (stream: string, retire?: string): Grant => ({
  pub: [
    `${API}.CONSUMER.INFO.${stream}.*`,
    `${API}.CONSUMER.CREATE.${stream}.*`,
    `${API}.CONSUMER.CREATE.${stream}.*.>`,
    `${API}.CONSUMER.DURABLE.CREATE.${stream}.*`,
    `${API}.CONSUMER.MSG.NEXT.${stream}.*`,
    `$JS.ACK.${stream}.*.>`,
    `$JS.ACK.*.*.${stream}.*.>`,
    ...(retire ? [`${API}.CONSUMER.DELETE.${stream}.${retire}`] : []),
  ],
  sub: [],
});

/** Reading consumer state (gauges, the ops API's consumer list). */
export const listConsumers = (stream: string): Grant => ({ pub: [`${API}.CONSUMER.LIST.${stream}`, `${API}.CONSUMER.NAMES.${stream}`], sub: [] });

/**
 * Reading a stream through short-lived consumers of its own: ephemeral pull consumers (the listings'
 * scans; CONSUMER.CREATE.<stream> without a name), ordered push consumers (KV watch and keys: named
 * create with the filter in the subject, re-created unnamed on a gap, flow-control replies to $JS.FC),
 * their info, pulls and deletion. Deleting or pulling from the stream's durables stays refused.
 */
export const readStream = (stream: string, durables: readonly string[] = []): Grant => ({
  pub: [
    `${API}.STREAM.INFO.${stream}`,
    `${API}.CONSUMER.CREATE.${stream}`,
    `${API}.CONSUMER.CREATE.${stream}.*`,
    `${API}.CONSUMER.CREATE.${stream}.*.>`,
    `${API}.CONSUMER.INFO.${stream}.*`,
    `${API}.CONSUMER.MSG.NEXT.${stream}.*`,
    `${API}.CONSUMER.DELETE.${stream}.*`,
    `$JS.FC.${stream}.>`,
  ],
  sub: [],
  denyPub: durables.flatMap((d) => [
    `${API}.CONSUMER.DELETE.${stream}.${d}`,
    `${API}.CONSUMER.MSG.NEXT.${stream}.${d}`,
    `${API}.CONSUMER.CREATE.${stream}.${d}`,
    `${API}.CONSUMER.CREATE.${stream}.${d}.>`,
  ]),
});

/** Reading single messages: by sequence (STREAM.MSG.GET) or, where the stream allows it, direct gets. */
export const getMessages = (stream: string): Grant => ({
  pub: [`${API}.STREAM.MSG.GET.${stream}`, `${API}.DIRECT.GET.${stream}`, `${API}.DIRECT.GET.${stream}.>`],
  sub: [],
});

/** KV reads: `views.kv()` looks the bucket's stream up; get is a message get (direct on servers that allow it). */
export const kvRead = (bucket: string): Grant => ({ pub: [`${API}.STREAM.INFO.KV_${bucket}`, ...getMessages(`KV_${bucket}`).pub], sub: [] });

/** KV writes (put, create, update, delete): publishes to $KV.<bucket>.<key> with headers. */
export const kvWrite = (bucket: string): Grant => ({ pub: [`$KV.${bucket}.>`], sub: [] });

/** Core publishes (events) and JetStream publishes (their PubAck comes to the inbox). */
export const publish = (...subjects: string[]): Grant => ({ pub: subjects, sub: [] });

/** Core subscriptions (live events). */
export const subscribe = (...subjects: string[]): Grant => ({ pub: [], sub: subjects });

/** Subjects no identity is ever given: deleting or purging a stream. Denied explicitly, so no allow can open them. */
export const NEVER: readonly string[] = [`${API}.STREAM.DELETE.>`, `${API}.STREAM.PURGE.>`];

/**
 * The union of grants, each subject once, in a stable order. A deny that one grant adds (a reader may not
 * touch a stream's durables) never takes away what another grant allows by name (provisioning that durable).
 */
export function merge(grants: Grant[]): Required<Grant> {
  const uniq = (xs: string[]) => [...new Set(xs)];
  const pub = uniq(grants.flatMap((g) => g.pub));
  const allowed = new Set(pub);
  return {
    pub,
    sub: uniq(grants.flatMap((g) => g.sub)),
    denyPub: uniq([...NEVER, ...grants.flatMap((g) => g.denyPub ?? []).filter((s) => !allowed.has(s))]),
  };
}
