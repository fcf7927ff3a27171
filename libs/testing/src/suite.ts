/**
 * The usual setup of an end-to-end suite: a callback receiver and a Jetflow stack started before
 * the suite's tests and stopped after them. Call it inside describe():
 *
 *   let j: JetflowUnderTest;
 *   let cb: CallbackReceiver;
 *   jetflowPerSuite((s) => ({ j, cb } = s));
 *
 * `onStarted` gets both once they are up; the stack is stopped and the receiver closed after the
 * suite, including when the stack failed to start. With `cluster`, the services run against a NATS
 * cluster of that many nodes (with JETFLOW_REPLICAS set to its size), handed over as `cluster`.
 */
import { after, before } from 'node:test';
import { startCallbackReceiver, type CallbackReceiver } from './callback-receiver.js';
import { natsAuthFor, startJetflow, testAuthDefault, type JetflowUnderTest, type StartOptions } from './harness.js';
import { startNatsCluster, type NatsClusterHandle } from './nats-server.js';

export interface JetflowSuiteOptions {
  /** Options of the callback receiver (its secret, its port). */
  receiver?: Parameters<typeof startCallbackReceiver>[0];
  /** Options of the stack (environment, replicas). */
  jetflow?: StartOptions;
  /** Run on a NATS cluster of this many nodes instead of one nats-server. */
  cluster?: { size: number };
}

export function jetflowPerSuite(onStarted: (s: { j: JetflowUnderTest; cb: CallbackReceiver; cluster: NatsClusterHandle | undefined }) => void, opts: JetflowSuiteOptions = {}): void {
  let j: JetflowUnderTest | undefined;
  let cb: CallbackReceiver | undefined;
  let cluster: NatsClusterHandle | undefined;
  before(async () => {
    // With identities on a cluster, the cluster starts with the configuration the services will use.
    const clusterEnv = opts.cluster ? { JETFLOW_REPLICAS: String(opts.cluster.size), ...opts.jetflow?.env } : undefined;
    const wantAuth = opts.jetflow?.auth ?? testAuthDefault();
    const auth = opts.cluster && wantAuth ? (wantAuth === true ? natsAuthFor({ ...opts.jetflow, env: clusterEnv! }) : wantAuth) : undefined;
    if (opts.cluster) cluster = await startNatsCluster({ size: opts.cluster.size, ...(auth ? { config: auth.config, connect: auth.options('admin') } : {}) });
    cb = await startCallbackReceiver(opts.receiver);
    const jetflow: StartOptions = cluster ? { ...opts.jetflow, natsUrls: cluster.urls, env: clusterEnv!, ...(auth ? { auth } : { auth: false }) } : (opts.jetflow ?? {});
    j = await startJetflow(jetflow);
    onStarted({ j, cb, cluster });
  });
  after(async () => {
    await j?.stop();
    await cluster?.stop();
    await cb?.close();
  });
}
