import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import { BAD_REQUEST_TYPE_URL, decodeRpcStatus, encodeRpcStatus } from './grpc-status.js';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

test('google.rpc.Status with a BadRequest: the bytes the standard messages define', () => {
  const url = Buffer.from(BAD_REQUEST_TYPE_URL).toString('hex');
  // FieldViolation{field:"a",description:"b"} inside BadRequest.field_violations(1), packed in Any{type_url(1), value(2)} in Status.details(3).
  const badRequest = '0a06' + '0a0161' + '120162';
  const any = '0a29' + url + '1208' + badRequest;
  assert.equal(hex(encodeRpcStatus(3, 'm', [{ path: 'a', message: 'b' }])), '0803' + '12016d' + '1a35' + any);
  assert.equal(hex(encodeRpcStatus(5, 'gone')), '0805' + '1204' + Buffer.from('gone').toString('hex'));
});

test('decodeRpcStatus reads back every violation, skips other details and unknown fields, refuses garbage', () => {
  const issues = [
    { path: 'callbackUrl', message: 'must be http or https' },
    { path: 'input.records[0].id', message: 'Too small' },
    { path: '', message: 'body must be a JSON object' },
  ];
  const st = decodeRpcStatus(encodeRpcStatus(3, 'bad — ünïcode', issues));
  assert.deepEqual(st, { code: 3, message: 'bad — ünïcode', fieldViolations: issues.map((i) => ({ field: i.path, description: i.message })), detailTypes: [BAD_REQUEST_TYPE_URL] });

  const w = new BinaryWriter();
  w.tag(9, WireType.Varint).uint32(7); // a field this decoder does not know
  w.tag(3, WireType.LengthDelimited)
    .fork()
    .tag(1, WireType.LengthDelimited)
    .string('type.googleapis.com/google.rpc.RetryInfo')
    .tag(2, WireType.LengthDelimited)
    .bytes(new Uint8Array([8, 1]))
    .join();
  const mixed = new Uint8Array([...encodeRpcStatus(3, 'x', issues.slice(0, 1)), ...w.finish()]);
  const m = decodeRpcStatus(mixed);
  assert.deepEqual(m.detailTypes, [BAD_REQUEST_TYPE_URL, 'type.googleapis.com/google.rpc.RetryInfo']);
  assert.deepEqual(m.fieldViolations, [{ field: 'callbackUrl', description: 'must be http or https' }]);

  assert.throws(() => decodeRpcStatus(new Uint8Array([0x1a, 0x7f, 1])), /premature EOF|invalid|out of range/i);
});
