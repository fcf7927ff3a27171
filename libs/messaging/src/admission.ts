import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { AdmissionLoadSchema, FlowsEndedSchema } from '@jetflow/proto';
import { SUBJECTS } from './topology.js';

/** Core NATS subjects of the orchestrator replicas' admission exchange (no stream: each report replaces the last). */
export const ADMISSION_SUBJECTS = {
  /** AdmissionLoad, every half second from each orchestrator replica; read by its peers and by ingest. */
  load: `${SUBJECTS.admission}.load`,
  /** FlowsEnded: flows a replica saw end that it had not started. */
  ended: `${SUBJECTS.admission}.ended`,
} as const;

export interface AdmissionLoad {
  instance: string;
  /** Per tenant: flows the replica started and has not seen end. */
  running: Map<string, number>;
  /** Per tenant: flows waiting in the ingest stream. */
  queued: Map<string, number>;
  /** The queued counts were measured just before this report. */
  queuedNow?: boolean;
}

// The tenant and flow id rules of libs/flows, restated: libs/flows imports this library.
const TENANT_RE = /^[a-z0-9][a-z0-9_-]{0,62}$/;
const FLOW_ID_RE = /^[a-z0-9]{2,64}$/;
const INSTANCE_RE = /^[\x21-\x7e]{1,200}$/;
/** Bounds of what a report may carry: anyone who can publish on the subject could have sent it. */
export const ADMISSION_LIMITS = { tenants: 10_000, count: 100_000_000, flowIds: 5_000 } as const;

export function encodeLoad(l: AdmissionLoad): Uint8Array {
  return toBinary(
    AdmissionLoadSchema,
    create(AdmissionLoadSchema, { instance: l.instance, running: Object.fromEntries(l.running), queued: Object.fromEntries(l.queued), queuedNow: l.queuedNow ?? false }),
  );
}

/** A decoded, checked report; throws naming what is wrong (bad bytes, a bad tenant name, too many entries). */
export function decodeLoad(bytes: Uint8Array): AdmissionLoad {
  const m = fromBinary(AdmissionLoadSchema, bytes);
  if (!INSTANCE_RE.test(m.instance)) throw new Error(`instance ${JSON.stringify(m.instance.slice(0, 40))} is not an instance id`);
  return { instance: m.instance, running: counts('running', m.running), queued: counts('queued', m.queued), queuedNow: m.queuedNow };
}

function counts(field: string, rec: Record<string, number>): Map<string, number> {
  const entries = Object.entries(rec);
  if (entries.length > ADMISSION_LIMITS.tenants) throw new Error(`${field}: ${entries.length} tenants, more than ${ADMISSION_LIMITS.tenants}`);
  const out = new Map<string, number>();
  for (const [tenant, n] of entries) {
    if (!TENANT_RE.test(tenant)) throw new Error(`${field}: ${JSON.stringify(tenant.slice(0, 70))} is not a tenant name`);
    if (!Number.isInteger(n) || n < 0 || n > ADMISSION_LIMITS.count) throw new Error(`${field}.${tenant}: ${n} is not a count`);
    if (n > 0) out.set(tenant, n);
  }
  return out;
}

export function encodeEnded(instance: string, flowIds: string[]): Uint8Array {
  return toBinary(FlowsEndedSchema, create(FlowsEndedSchema, { instance, flowIds }));
}

export function decodeEnded(bytes: Uint8Array): { instance: string; flowIds: string[] } {
  const m = fromBinary(FlowsEndedSchema, bytes);
  if (!INSTANCE_RE.test(m.instance)) throw new Error(`instance ${JSON.stringify(m.instance.slice(0, 40))} is not an instance id`);
  if (m.flowIds.length > ADMISSION_LIMITS.flowIds) throw new Error(`${m.flowIds.length} flow ids, more than ${ADMISSION_LIMITS.flowIds}`);
  const bad = m.flowIds.find((id) => !FLOW_ID_RE.test(id));
  if (bad !== undefined) throw new Error(`${JSON.stringify(bad.slice(0, 70))} is not a flow id`);
  return { instance: m.instance, flowIds: m.flowIds };
}
