import type { KV, KvWatchInclude } from 'nats';
import { DEF_PAUSE_PREFIX } from '../../../libs/flows/src/index.js';
import type { Logger } from '../../../libs/logging/src/index.js';

/**
 * The paused flow definitions (`def.<name>` in KV jetflow_pauses, set by POST
 * /v1/flow-definitions/{name}/pause), followed by one KV watch so a flow's start costs no request: a
 * flow of a paused definition starts paused.
 */
export class PausedDefinitions {
  private readonly names = new Set<string>();
  private stopWatch?: () => void;
  readonly ready: Promise<void>;

  constructor(kv: Pick<KV, 'watch'>, log?: Logger) {
    let initialized!: () => void;
    this.ready = new Promise<void>((r) => (initialized = r));
    void (async () => {
      const w = await kv.watch({ key: `${DEF_PAUSE_PREFIX}>`, include: 'last_value' as KvWatchInclude, initializedFn: () => initialized() });
      this.stopWatch = () => w.stop();
      for await (const e of w) {
        const name = e.key.slice(DEF_PAUSE_PREFIX.length);
        if (e.operation === 'PUT') this.names.add(name);
        else this.names.delete(name);
      }
    })().catch((err: Error) => {
      log?.warn({ err: err.message }, 'paused definitions watch ended');
      initialized();
    });
  }

  has(name: string): boolean {
    return this.names.has(name);
  }

  stop(): void {
    this.stopWatch?.();
  }
}
