import { FLOW_ID_RE } from './submission.js';

/**
 * What may become a subject token or a KV key. Every id that reaches one from outside (a subject token,
 * a message body) is checked here first: a space, `*`, `>` or an empty token in a subject the orchestrator
 * publishes to is a protocol error, and nats-server closes the connection for it.
 */
export const ID_RULES = {
  tenant: { re: /^[a-z0-9][a-z0-9_-]{0,62}$/, rule: 'lowercase letters, digits, - and _, starting with a letter or digit, at most 63 characters' },
  flow: { re: /^[a-z][a-z0-9_-]{0,40}$/, rule: 'lowercase letters, digits, - and _, starting with a letter, at most 41 characters' },
  task: { re: /^[a-z][a-z0-9_-]{0,40}$/, rule: 'lowercase letters, digits, - and _, starting with a letter, at most 41 characters' },
  flowId: { re: FLOW_ID_RE, rule: 'lowercase letters and digits, 2 to 64 characters' },
} as const;

export type IdKind = keyof typeof ID_RULES;

const LABEL: Record<IdKind, string> = { tenant: 'tenant', flow: 'flow name', task: 'task name', flowId: 'flow id' };

/** A short, printable rendering of a value that failed a rule (it may be 5,000 characters of anything). */
export function quoteId(v: unknown): string {
  const s = typeof v === 'string' ? v : String(v);
  return s.length > 40 ? `${JSON.stringify(s.slice(0, 40))}… (${s.length} characters)` : JSON.stringify(s);
}

/** Why `value` is not a valid id of this kind, or undefined when it is. */
export function idProblem(kind: IdKind, value: unknown): string | undefined {
  if (typeof value === 'string' && ID_RULES[kind].re.test(value)) return undefined;
  return `${LABEL[kind]} ${quoteId(value)} is not valid (${ID_RULES[kind].rule})`;
}

export const isValidId = (kind: IdKind, value: unknown): value is string => typeof value === 'string' && ID_RULES[kind].re.test(value);
