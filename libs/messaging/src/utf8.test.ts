import { test } from 'node:test';
import assert from 'node:assert/strict';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { MsgHdrsImpl, headers as natsHeaders } from 'nats';
import { FlowEventSchema } from '@jetflow/proto';
import { encodeUtf8, installFastUtf8 } from './utf8.js';

const te = new TextEncoder();

test('encodeUtf8 gives the same bytes as TextEncoder for short and long, ASCII and non-ASCII strings', () => {
  const cases = ['', 'a', 'jetflow.task.analyst.x', 'f'.repeat(24), 'f'.repeat(25), 'é', 'naïve café', 'ab😀cd', '\ud800 lone', 'x\u007f\u0080', 'long ' + 'ü→😀'.repeat(500)];
  for (const s of cases) assert.deepEqual(Uint8Array.from(encodeUtf8(s)), te.encode(s), JSON.stringify(s.slice(0, 30)));
});

test('after installFastUtf8, protobuf and nats headers encode as before', () => {
  installFastUtf8();
  const ev = create(FlowEventSchema, { flowId: 'fé1', tenant: 'default', type: 'task.succeeded', message: 'ok 😀' });
  assert.deepEqual(fromBinary(FlowEventSchema, toBinary(FlowEventSchema, ev)), ev);
  const h = natsHeaders();
  h.set('Jetflow-Flow-Id', 'f123');
  assert.ok(h instanceof MsgHdrsImpl, 'encode() is on the implementation, not the MsgHdrs interface');
  assert.equal(new TextDecoder().decode(h.encode()), 'NATS/1.0\r\nJetflow-Flow-Id: f123\r\n\r\n');
});
