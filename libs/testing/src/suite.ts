/**
 * The usual setup of an end-to-end suite: a callback receiver and a Jetflow stack started before
 * the suite's tests and stopped after them. Call it inside describe():
 *
 *   let j: JetflowUnderTest;
 *   let cb: CallbackReceiver;
 *   jetflowPerSuite((s) => ({ j, cb } = s));
 *
 * `onStarted` gets both once they are up; the stack is stopped and the receiver closed after the
 * suite, including when the stack failed to start.
 */
import { after, before } from 'node:test';
import { startCallbackReceiver, type CallbackReceiver } from './callback-receiver.js';
import { startJetflow, type JetflowUnderTest, type StartOptions } from './harness.js';

export interface JetflowSuiteOptions {
  /** Options of the callback receiver (its secret, its port). */
  receiver?: Parameters<typeof startCallbackReceiver>[0];
  /** Options of the stack (environment, replicas). */
  jetflow?: StartOptions;
}

export function jetflowPerSuite(onStarted: (s: { j: JetflowUnderTest; cb: CallbackReceiver }) => void, opts: JetflowSuiteOptions = {}): void {
  let j: JetflowUnderTest | undefined;
  let cb: CallbackReceiver | undefined;
  before(async () => {
    cb = await startCallbackReceiver(opts.receiver);
    j = await startJetflow(opts.jetflow);
    onStarted({ j, cb });
  });
  after(async () => {
    await j?.stop();
    await cb?.close();
  });
}
