import { BinaryReader, BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import type { FieldIssue } from './index.js';

/**
 * The standard rich gRPC error: a `google.rpc.Status` in the `grpc-status-details-bin` trailer, with
 * the bad fields as a `google.rpc.BadRequest` packed in a `google.protobuf.Any`. Hand-encoded (three
 * tiny messages, field numbers from googleapis' google/rpc/status.proto and error_details.proto) so no
 * third-party proto files need vendoring:
 *   Status         { int32 code = 1; string message = 2; repeated Any details = 3; }
 *   Any            { string type_url = 1; bytes value = 2; }
 *   BadRequest     { repeated FieldViolation field_violations = 1; }
 *   FieldViolation { string field = 1; string description = 2; }
 */
export const STATUS_DETAILS_TRAILER = 'grpc-status-details-bin';
export const BAD_REQUEST_TYPE_URL = 'type.googleapis.com/google.rpc.BadRequest';

export interface RpcStatus {
  code: number;
  message: string;
  /** Field violations of every BadRequest detail; other detail types are skipped. */
  fieldViolations: Array<{ field: string; description: string }>;
  /** type_url of every detail, BadRequest included. */
  detailTypes: string[];
}

/** Encodes a google.rpc.Status; a BadRequest detail is added when there are field issues. */
export function encodeRpcStatus(code: number, message: string, issues: readonly FieldIssue[] = []): Uint8Array {
  const w = new BinaryWriter();
  if (code !== 0) w.tag(1, WireType.Varint).int32(code);
  if (message) w.tag(2, WireType.LengthDelimited).string(message);
  if (issues.length) {
    const br = new BinaryWriter();
    for (const i of issues) {
      br.tag(1, WireType.LengthDelimited).fork();
      if (i.path) br.tag(1, WireType.LengthDelimited).string(i.path);
      if (i.message) br.tag(2, WireType.LengthDelimited).string(i.message);
      br.join();
    }
    w.tag(3, WireType.LengthDelimited).fork().tag(1, WireType.LengthDelimited).string(BAD_REQUEST_TYPE_URL).tag(2, WireType.LengthDelimited).bytes(br.finish()).join();
  }
  return w.finish();
}

/** Calls `onField` for each field of one message, skipping unknown ones; throws on malformed bytes. */
function eachField(bytes: Uint8Array, onField: (no: number, wt: WireType, r: BinaryReader) => boolean): void {
  const r = new BinaryReader(bytes);
  while (r.pos < r.len) {
    const [no, wt] = r.tag();
    if (!onField(no, wt, r)) r.skip(wt, no);
  }
}

/** Decodes a google.rpc.Status (for clients and tests); throws on bytes that are not one. */
export function decodeRpcStatus(bytes: Uint8Array): RpcStatus {
  const out: RpcStatus = { code: 0, message: '', fieldViolations: [], detailTypes: [] };
  const ld = (wt: WireType) => wt === WireType.LengthDelimited;
  eachField(bytes, (no, wt, r) => {
    if (no === 1 && wt === WireType.Varint) out.code = r.int32();
    else if (no === 2 && ld(wt)) out.message = r.string();
    else if (no === 3 && ld(wt)) {
      let typeUrl = '';
      let value: Uint8Array = new Uint8Array();
      eachField(r.bytes(), (n, t, a) => {
        if (n === 1 && ld(t)) typeUrl = a.string();
        else if (n === 2 && ld(t)) value = a.bytes();
        else return false;
        return true;
      });
      out.detailTypes.push(typeUrl);
      if (typeUrl === BAD_REQUEST_TYPE_URL) {
        eachField(value, (n, t, b) => {
          if (n !== 1 || !ld(t)) return false;
          const v = { field: '', description: '' };
          eachField(b.bytes(), (f, ft, c) => {
            if (f === 1 && ld(ft)) v.field = c.string();
            else if (f === 2 && ld(ft)) v.description = c.string();
            else return false;
            return true;
          });
          out.fieldViolations.push(v);
          return true;
        });
      }
    } else return false;
    return true;
  });
  return out;
}
