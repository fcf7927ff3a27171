import { headers as natsHeaders } from 'nats';
import { CasConflictError } from '@jetflow/errors';
import { JetStreamApiCodes } from './js-errors.js';
import type { JetStreamPublisher } from './publisher.js';

/**
 * KV writes through the shared-inbox publisher: a KV put is a publish to $KV.<bucket>.<key>, and
 * compare-and-set is the Nats-Expected-Last-Subject-Sequence header — exactly what the client's
 * kv.update() sends, at a fraction of its CPU (no request object per write). Each write carries a
 * message id derived from the key and the expected revision, so a retried write whose PubAck was
 * lost is recognised as the same write instead of failing its own compare-and-set.
 */
export class KvWriter {
  constructor(
    private readonly pub: JetStreamPublisher,
    readonly bucket: string,
  ) {}

  private async write(key: string, data: Uint8Array, expected: number | undefined): Promise<number> {
    const h = natsHeaders();
    if (expected !== undefined) h.set('Nats-Expected-Last-Subject-Sequence', String(expected));
    const ack = await this.pub.publish(`$KV.${this.bucket}.${key}`, data, { headers: h, ...(expected !== undefined ? { msgId: `${key}@${expected}` } : {}) });
    return ack.seq;
  }

  /**
   * Creates the key; when it exists, fails with a CasConflictError (isCasConflict: "wrong last sequence").
   * A create the bucket's duplicate window collapses into an earlier one (`<key>@0`: another create of
   * the key, or ours whose PubAck was lost) is a conflict too: its data was not written, and a caller
   * that took it for written would work on a copy the key does not hold. Read the key instead.
   */
  async create(key: string, data: Uint8Array): Promise<number> {
    const h = natsHeaders();
    h.set('Nats-Expected-Last-Subject-Sequence', '0');
    const ack = await this.pub.publish(`$KV.${this.bucket}.${key}`, data, { headers: h, msgId: `${key}@0` });
    if (ack.duplicate) {
      const description = `wrong last sequence: key ${key} was created already (a duplicate of create ${ack.seq})`;
      throw Object.assign(new CasConflictError(`JetStream collapsed a create of ${key}: ${description}`), {
        api_error: { code: 400, err_code: JetStreamApiCodes.StreamWrongLastSequence, description },
      });
    }
    return ack.seq;
  }

  /** Writes only if the key's last revision is `revision`; else fails with a CasConflictError (isCasConflict). */
  update(key: string, data: Uint8Array, revision: number): Promise<number> {
    return this.write(key, data, revision);
  }

  put(key: string, data: Uint8Array): Promise<number> {
    return this.write(key, data, undefined);
  }
}
