import { CONSUMERS, STREAMS } from '@jetflow/messaging';
import { stagesOf, subjectMatches, taskSubjects, type FlowRegistry } from './definitions.js';

export interface Route {
  subject: string;
  stream: string;
  consumer: string;
  /** The service whose default subscription (JETFLOW_TASK_SUBJECTS) serves it. */
  servedBy: string;
  /** Where flow definitions use it. */
  usedBy: Array<{ flow: string; version: number; stage: string; task: string }>;
}

const SERVICES: Array<[string, string]> = [
  ['jetflow.task.dataset.>', 'dataset-generator'],
  ['jetflow.task.analyst.>', 'analyst'],
  ['jetflow.task.test.>', 'analyst (JETFLOW_TEST_PLUGINS=1)'],
];

/**
 * Which consumer gets a task: routing is by subject hierarchy, one durable consumer per task subject.
 * `query` may be a concrete subject or a wildcard pattern (jetflow.task.analyst.>).
 */
export function routesFor(query: string, registry: FlowRegistry): Route[] {
  const subjects = taskSubjects(registry.defs).filter((s) => s === query || subjectMatches(query, s));
  return subjects.map((subject) => ({
    subject,
    stream: STREAMS.tasks,
    consumer: CONSUMERS.task(subject),
    servedBy: SERVICES.find(([p]) => subjectMatches(p, subject))?.[1] ?? 'none',
    usedBy: registry.defs.flatMap((d) =>
      stagesOf(d).flatMap((st) => st.tasks.filter((t) => t.subject === subject).map((t) => ({ flow: d.name, version: d.version, stage: st.name, task: t.name }))),
    ),
  }));
}
