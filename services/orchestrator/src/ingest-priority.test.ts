import { test } from 'node:test';
import assert from 'node:assert/strict';
import { create, toBinary } from '@bufbuild/protobuf';
import { headers as natsHeaders } from 'nats';
import { SubmitFlowRequestSchema } from '@jetflow/proto';
import { INGEST_CONTENT_TYPE } from '@jetflow/messaging';
import { ingestPriority } from './ingest-lanes.js';

const enc = new TextEncoder();
const msg = (data: Uint8Array, h: Record<string, string> = {}) => {
  const headers = natsHeaders();
  for (const [k, v] of Object.entries(h)) headers.set(k, v);
  return { data, headers };
};

test('the admission pick reads a priority from the header, else from a small JSON or protobuf body; anything else is 5', () => {
  assert.equal(ingestPriority(msg(new Uint8Array(), { 'Jetflow-Priority': '9', 'Content-Type': INGEST_CONTENT_TYPE })), 9);
  assert.equal(ingestPriority(msg(new Uint8Array(), { 'Jetflow-Priority': '11' })), 5, 'out of range');
  assert.equal(ingestPriority(msg(new Uint8Array(), { 'Jetflow-Priority': 'x' })), 5);
  assert.equal(ingestPriority(msg(new Uint8Array([1, 2, 3]), { 'Content-Type': INGEST_CONTENT_TYPE })), 5, "the services' own FlowRequest without the header: not decoded");
  assert.equal(ingestPriority(msg(enc.encode(JSON.stringify({ flow: 'f', priority: 2 })))), 2, 'the NATS door, JSON');
  assert.equal(ingestPriority(msg(enc.encode(JSON.stringify({ flow: 'f', priority: 2.5 })))), 5);
  assert.equal(ingestPriority(msg(enc.encode('not json'))), 5);
  assert.equal(ingestPriority(msg(enc.encode('null'))), 5);
  const pb = toBinary(SubmitFlowRequestSchema, create(SubmitFlowRequestSchema, { flow: 'f', priority: 8 }));
  assert.equal(ingestPriority(msg(pb, { 'Content-Type': 'application/protobuf' })), 8, 'the NATS door, protobuf');
  const big = enc.encode(JSON.stringify({ flow: 'f', priority: 9, input: { pad: 'x'.repeat(70_000) } }));
  assert.equal(ingestPriority(msg(big)), 5, 'a large body is not parsed for it (the engine still validates and keeps it)');
});
