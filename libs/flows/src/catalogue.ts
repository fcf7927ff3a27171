/**
 * The task subjects the built-in workers serve: their plugins, plus the chaos plugins when
 * JETFLOW_TEST_PLUGINS is on. A definition may name any other subject under jetflow.task: an outside
 * worker (@jetflow/worker) serves it; the built-in workers never pull it.
 * Adding an analyst: one plugin file under services/analyst/src/analyzers, one name here, one line in a definition.
 */
export const PLUGIN_SUBJECTS = [
  'jetflow.task.dataset.text',
  'jetflow.task.dataset.features',
  'jetflow.task.dataset.embeddings',
  'jetflow.task.analyst.sentiment',
  'jetflow.task.analyst.anomaly',
  'jetflow.task.analyst.keywords',
  // insights v2 (on map): the per-chunk steps.
  'jetflow.task.dataset.prepare',
  'jetflow.task.analyst.score',
] as const;

/** Fault-injection tasks served by the analyst service for the fault suite (never on by default). */
export const TEST_PLUGIN_SUBJECTS = [
  'jetflow.task.test.echo',
  'jetflow.task.test.fail',
  'jetflow.task.test.hang',
  'jetflow.task.test.slow',
  'jetflow.task.test.flaky',
  'jetflow.task.test.busy',
] as const;

export function knownSubjects(testPlugins: boolean): string[] {
  return [...PLUGIN_SUBJECTS, ...(testPlugins ? TEST_PLUGIN_SUBJECTS : [])];
}
