import type { JsMsg, NatsConnection } from 'nats';

const ACK = new TextEncoder().encode('+ACK');
/** Past this many remembered timers the oldest is forgotten (it then comes back at its deadline, as before). */
const MAX_HELD = 200_000;

/**
 * Finished flows' deadline timers, taken out of the results stream when the flow ends.
 *
 * A flow's deadline is a control message on its result partition that the engine hands back with a delay
 * (a nak) until the deadline. A flow that ended before it (nearly all) used to get its timer back at the
 * deadline all the same: a delivery, an ack, the server keeping one delayed message per flow of the last
 * deadline, and after a restart or on a stack that took over a KV read each (the finished-flow set is in
 * memory). At 100 flows/s that is 100 wake-ups a second for nothing; a stack started right after a busy one
 * spent its first seconds on them. Here the partition owner remembers each timer it delayed and acks it when
 * the flow's terminal state is written (EngineDeps.onTerminal runs after the state write and the callback
 * job's publish), so it never comes back. The server takes an ack for a delayed message by its stream
 * sequence; nats.js refuses a second answer to one message, so the ack goes out as a plain publish to the
 * message's ack subject. A timer this replica does not hold (a partition that moved, a restart) comes back
 * at its deadline and is handled as before; forgetting one only costs that.
 */
export class DeadlineTimers {
  /** Flow id → the ack subject of its control message last handed back with a delay, in the order remembered. */
  private readonly held = new Map<string, string>();

  constructor(private readonly nc: NatsConnection) {}

  /** Wraps a result-partition message before the engine handles it: a control it delays is remembered. */
  watch(m: JsMsg): JsMsg {
    if (m.headers?.get('Jetflow-Kind') !== 'control') return m;
    // The ack subject: nats.js's message has it (`reply`), its type does not; without it nothing is remembered.
    const reply = (m as unknown as { reply?: unknown }).reply;
    if (typeof reply !== 'string' || !reply.startsWith('$JS.ACK.')) return m;
    const flowId = m.subject.slice(m.subject.lastIndexOf('.') + 1);
    const nak = m.nak.bind(m);
    const ack = m.ack.bind(m);
    const term = m.term.bind(m);
    m.nak = (delay?: number) => {
      nak(delay);
      if (delay !== undefined && delay > 0) this.remember(flowId, reply);
    };
    // Settled for good: nothing to take out any more.
    m.ack = () => {
      this.held.delete(flowId);
      ack();
    };
    m.term = (reason?: string) => {
      this.held.delete(flowId);
      term(reason);
    };
    return m;
  }

  private remember(flowId: string, reply: string) {
    this.held.delete(flowId);
    this.held.set(flowId, reply);
    if (this.held.size > MAX_HELD) this.held.delete(this.held.keys().next().value!);
  }

  /** The flow's terminal state is stored: its delayed timer (if this replica holds it) is acked now. */
  ended(flowId: string): void {
    const reply = this.held.get(flowId);
    if (!reply) return;
    this.held.delete(flowId);
    try {
      this.nc.publish(reply, ACK);
    } catch {
      // Connection closing: the timer comes back at its deadline and finds the flow finished.
    }
  }

  /** A partition moved to another replica: its flows' timers are that replica's now. */
  release(owns: (flowId: string) => boolean): void {
    for (const id of [...this.held.keys()]) if (!owns(id)) this.held.delete(id);
  }

  get size(): number {
    return this.held.size;
  }
}
