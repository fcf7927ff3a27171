/**
 * The smallest worker that speaks the wire contract by hand (nats.js and the generated protobuf code,
 * no @jetflow/worker): it serves only the `echo` behaviour. With a fault it breaks one rule, so
 * test/conformance.test.ts can show that the kit catches it. Not a model for production (no heartbeats,
 * limits, retries or cancellation): docs/WORKERS.md describes those.
 */
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { headers as natsHeaders, type ConsumerMessages, type JsMsg, type NatsConnection } from 'nats';
import { TaskResultSchema, TaskSchema, TaskStatus } from '@jetflow/proto';
import { CONSUMERS, STREAMS, partitionOf } from '@jetflow/messaging';
import { BEHAVIOURS } from './kit.js';

export type RawWorkerFault = 'none' | 'drop-token' | 'ack-before-publish' | 'random-msg-id' | 'wrong-partition';

export interface RawWorker {
  stop(): Promise<void>;
}

export async function startRawWorker(nc: NatsConnection, o: { partitions: number; fault: RawWorkerFault }): Promise<RawWorker> {
  const js = nc.jetstream();
  const consumer = await js.consumers.get(STREAMS.tasks, CONSUMERS.task(BEHAVIOURS.echo));
  const messages: ConsumerMessages = await consumer.consume({ max_messages: 4 });
  const enc = new TextEncoder();
  const dec = new TextDecoder();

  const handle = async (m: JsMsg) => {
    let task;
    try {
      task = fromBinary(TaskSchema, m.data);
    } catch {
      m.term();
      return;
    }
    const now = BigInt(Date.now());
    const result = create(TaskResultSchema, {
      flowId: task.flowId,
      task: task.task,
      stage: task.stage,
      status: TaskStatus.SUCCEEDED,
      outputJson: enc.encode(JSON.stringify({ input: JSON.parse(dec.decode(task.inputJson)) as unknown, task: task.task, attempt: m.info.deliveryCount })),
      attempts: m.info.deliveryCount,
      startedAtMs: now,
      finishedAtMs: now,
      worker: `raw-${o.fault}`,
      resultToken: o.fault === 'drop-token' ? '' : task.resultToken,
    });
    const h = natsHeaders();
    h.set('Jetflow-Kind', 'result');
    h.set('Jetflow-Flow-Id', task.flowId);
    const p = (partitionOf(task.flowId, o.partitions) + (o.fault === 'wrong-partition' ? 1 : 0)) % o.partitions;
    const msgID = o.fault === 'random-msg-id' ? `${task.flowId}:${Math.random()}` : `${task.flowId}:${task.task}:result`;
    if (o.fault === 'ack-before-publish') m.ack();
    await js.publish(`jetflow.result.${p}.${task.flowId}`, toBinary(TaskResultSchema, result), { msgID, headers: h });
    if (o.fault !== 'ack-before-publish') m.ack();
  };

  const done = (async () => {
    for await (const m of messages) await handle(m).catch(() => m.nak(1_000));
  })();
  return {
    async stop() {
      await messages.close();
      await done;
    },
  };
}
