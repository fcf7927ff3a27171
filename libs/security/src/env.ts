import { pairs, type Env } from '@jetflow/config';
import { loadFlowRegistry, taskSubjects } from '@jetflow/flows';
import { DEFAULT_PARTITIONS } from '@jetflow/messaging';
import type { SecurityInput } from './roles.js';

type WorkerService = 'dataset-generator' | 'analyst';

/**
 * The identities' input for a stack run with this environment (and per-service environment), read as the
 * services read it: JETFLOW_PARTITIONS, the task subjects of the flow definitions (JETFLOW_FLOWS_FILE),
 * the tenants of JETFLOW_API_KEYS, and each worker service's JETFLOW_TASK_SUBJECTS. The local stack and
 * the test harness both derive their nats-server configuration from it.
 */
export function securityInputFromEnv(env: Env, serviceEnv: Partial<Record<string, Env>> = {}, extra: Pick<SecurityInput, 'workers'> & { tenants?: readonly string[] } = {}): SecurityInput {
  const partitions = Number(env.JETFLOW_PARTITIONS || DEFAULT_PARTITIONS);
  const serving = (s: WorkerService) => {
    const v = serviceEnv[s]?.JETFLOW_TASK_SUBJECTS ?? env.JETFLOW_TASK_SUBJECTS;
    return v
      ? {
          [s]: v
            .split(',')
            .map((x) => x.trim())
            .filter(Boolean),
        }
      : {};
  };
  const tenants = [...new Set([...pairs(env, 'JETFLOW_API_KEYS').map(([t]) => t), ...(extra.tenants ?? [])])];
  return {
    partitions,
    taskSubjects: taskSubjects(loadFlowRegistry(env).defs),
    tenants,
    serves: { ...serving('dataset-generator'), ...serving('analyst') },
    ...(extra.workers ? { workers: extra.workers } : {}),
  };
}
