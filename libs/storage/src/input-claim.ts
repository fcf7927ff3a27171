import { readInputObject } from './input-ref.js';
import type { ObjectStore } from './object-store.js';

/** Where claimed flow inputs live: inputs/<tenant>/<content hash or key>. */
export const inputKeyPrefix = (tenant: string) => `inputs/${tenant}/`;

export interface InputClaim {
  /** Inputs larger than this travel as an S3 reference. */
  thresholdBytes: number;
  store(tenant: string, flowId: string, inputJson: Uint8Array): Promise<string>;
  /** Reads a stored input back: JSON, or JSON lines as `{ records }` (the orchestrator cuts mapped tasks' chunks from it; a submission's `inputRef` too). */
  load(ref: string): Promise<unknown>;
}

/** The input claim check shared by ingest (HTTP/gRPC) and the orchestrator (NATS door). */
export function inputClaim(objects: ObjectStore, thresholdBytes: number): InputClaim {
  return {
    thresholdBytes,
    async store(tenant, _flowId, inputJson) {
      const claim = await objects.claimCheck(inputJson, { thresholdBytes: 0, keyPrefix: inputKeyPrefix(tenant), contentType: 'application/json' });
      if (!claim.ref) throw new Error('claim check kept the input inline');
      return claim.ref;
    },
    load: (ref) => readInputObject(objects, ref),
  };
}
