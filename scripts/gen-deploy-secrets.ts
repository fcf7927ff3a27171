import { randomBytes, createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { parse } from 'yaml';
import { loadFlowRegistry, taskSubjects } from '@jetflow/flows';
import { checkPassword, hashPassword, natsSecurity, newPassword, secretEnv, verifyPassword, type NatsSecret } from '@jetflow/security';

/**
 * Renders the deployment's secrets from the one source of NATS identities (libs/security): the
 * nats-server auth configuration (bcrypt hashes only) and one env file per service for kustomize's
 * secretGenerator, plus what people hand out (tenants' API keys, callback secrets, NATS door logins, and the
 * operator API key of the `ops` tenant).
 * Existing values in --out are kept, so a re-run after adding a tenant or a flow rotates nothing;
 * --rotate names what to renew.
 *
 *   npm run deploy:secrets -- --out deploy/k8s/overlays/production/secrets --tenants acme,globex
 */

const USAGE = `Usage: npm run deploy:secrets -- --out DIR --tenants a,b [options]
  --out DIR              where to write (git-ignored: deploy/k8s/overlays/production/secrets)
  --tenants a,b          tenants: an API key, a callback secret and a NATS door login each
                         (besides them, tenant ops gets the operator API key; "ops" is reserved)
  --workers name=pattern[+pattern];...   outside workers built on the SDK (their task subject patterns)
  --flows FILE           flow definitions (default deploy/k8s/base/flows.json): their task subjects
  --partitions N         result partitions (default JETFLOW_PARTITIONS of deploy/k8s/base/config.yaml)
  --rotate what,...      renew: nats (every NATS password), api-keys, callback-secrets, or a NATS user name
  --bcrypt-cost N        cost of the stored hashes (default 11)
`;

export interface GenOptions {
  out: string;
  tenants: string[];
  workers?: Record<string, string[]>;
  flowsFile?: string;
  partitions?: number;
  rotate?: string[];
  bcryptCost?: number;
}

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** The admin of NATS's system account (not a Jetflow identity: libs/security has none for it). */
const SYS_USER = 'nats-admin';
/**
 * The tenant of the operator API key (the dashboard's Consumers page, `jetflow consumers` / `route`). A tenant
 * of its own, so the operator's key reads no customer's flows; it runs no flows (no NATS door, no callback
 * secret) and sees the dead letters no tenant owns (JETFLOW_OPERATOR_TENANTS).
 */
export const OPS_TENANT = 'ops';
const newKey = () => randomBytes(32).toString('base64url');
const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

function readEnv(file: string): Record<string, string> {
  if (!existsSync(file)) return {};
  const out: Record<string, string> = {};
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const m = /^([A-Za-z0-9_][A-Za-z0-9_.-]*)=(.*)$/.exec(line);
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}

const pairsOf = (v: string | undefined) =>
  Object.fromEntries(
    (v ?? '')
      .split(',')
      .filter(Boolean)
      .map((p) => [p.slice(0, p.indexOf(':')), p.slice(p.indexOf(':') + 1)]),
  );

function writeSecret(file: string, text: string) {
  writeFileSync(file, text, { mode: 0o600 });
  chmodSync(file, 0o600);
}

const envText = (header: string, vars: Record<string, string>) =>
  `# ${header}\n${Object.entries(vars)
    .map(([k, v]) => `${k}=${v}`)
    .join('\n')}\n`;

/** user -> bcrypt hash in an auth.conf this script wrote earlier. */
function deployedHashes(file: string): Map<string, string> {
  const out = new Map<string, string>();
  if (!existsSync(file)) return out;
  const text = readFileSync(file, 'utf8');
  try {
    const accounts = JSON.parse(text.slice(text.indexOf('accounts: ') + 'accounts: '.length)) as Record<string, { users?: Array<{ user: string; password: string }> }>;
    for (const a of Object.values(accounts)) for (const u of a.users ?? []) out.set(u.user, u.password);
  } catch {
    // Not ours or damaged: every hash is made anew.
  }
  return out;
}

export function defaultPartitions(): number {
  const doc = parse(readFileSync(join(ROOT, 'deploy/k8s/base/config.yaml'), 'utf8')) as { data: Record<string, string> };
  return Number(doc.data.JETFLOW_PARTITIONS);
}

/** Writes the secrets into o.out; returns the file names written. */
export function generateDeploySecrets(o: GenOptions): string[] {
  if (!o.tenants.length) throw new Error('--tenants: name at least one tenant');
  if (o.tenants.includes(OPS_TENANT)) throw new Error(`--tenants: "${OPS_TENANT}" is reserved for the operator API key, which is made anyway; name your tenants otherwise`);
  const rotate = new Set(o.rotate ?? []);
  const out = resolve(o.out);
  mkdirSync(join(out, 'handout'), { recursive: true, mode: 0o700 });
  const registry = loadFlowRegistry({ JETFLOW_FLOWS_FILE: o.flowsFile ?? join(ROOT, 'deploy/k8s/base/flows.json') });
  const services = ['ingest', 'orchestrator', 'dataset-generator', 'analyst'] as const;

  // What is already deployed: NATS passwords by user, API keys and callback secrets by tenant.
  const keep: Record<string, string> = {};
  const previous = [...services.map((s) => readEnv(join(out, `${s}.env`))), ...Object.keys(o.workers ?? {}).map((w) => readEnv(join(out, `worker-${w}.env`)))];
  const handout = readEnv(join(out, 'handout', 'nats-logins.env'));
  for (const env of previous) if (env.NATS_USER && env.NATS_PASSWORD) keep[env.NATS_USER] = env.NATS_PASSWORD;
  for (const [user, password] of Object.entries(handout)) keep[user] = password;
  for (const user of Object.keys(keep)) if (rotate.has('nats') || rotate.has(user)) delete keep[user];
  const apiKeys = rotate.has('api-keys') ? {} : readEnv(join(out, 'handout', 'api-keys.env'));
  const callbackSecrets = rotate.has('callback-secrets') ? {} : pairsOf(readEnv(join(out, 'orchestrator.env')).JETFLOW_CALLBACK_SECRETS);

  const sec = natsSecurity(
    { partitions: o.partitions ?? defaultPartitions(), taskSubjects: taskSubjects(registry.defs), tenants: o.tenants, ...(o.workers ? { workers: o.workers } : {}) },
    { keep, ...(o.bcryptCost ? { bcryptCost: o.bcryptCost } : {}) },
  );
  for (const t of o.tenants) {
    apiKeys[t] ??= newKey();
    callbackSecrets[t] ??= newKey();
  }
  apiKeys[OPS_TENANT] ??= newKey();
  const written: string[] = [];
  const put = (name: string, text: string) => {
    writeSecret(join(out, name), text);
    written.push(name);
  };
  const nats = (s: NatsSecret) => secretEnv(s);
  // The system account: server administration only (nats server report jetstream, raft peer-remove;
  // docs/DEPLOYMENT.md, "Recover from a lost node"). It sees no Jetflow subject.
  const sysPassword = rotate.has('nats') || rotate.has(SYS_USER) || !keep[SYS_USER] ? newPassword() : keep[SYS_USER];
  checkPassword(SYS_USER, sysPassword);
  const accounts = { ...sec.config.accounts, SYS: { users: [{ user: SYS_USER, password: hashPassword(sysPassword, o.bcryptCost) }] } };
  // bcrypt salts each hash: keep the deployed hash of an unchanged password, so a re-run does not change the Secret (and roll NATS).
  const plain = new Map([...sec.secrets.map((x) => [x.user, x.password] as const), [SYS_USER, sysPassword] as const]);
  const deployed = deployedHashes(join(out, 'nats-auth.conf'));
  for (const acc of Object.values(accounts) as Array<{ users: Array<{ user: string; password: string }> }>) {
    for (const u of acc.users) {
      const old = deployed.get(u.user);
      if (old && verifyPassword(plain.get(u.user)!, old)) u.password = old;
    }
  }
  put('nats-auth.conf', `# nats-server accounts, users and permissions (libs/security): bcrypt hashes only.\nsystem_account: SYS\naccounts: ${JSON.stringify(accounts, null, 2)}\n`);
  put(
    'ingest.env',
    envText('ingest: API key hashes (tenant keys, and the operator key of tenant ops) and its NATS identity', {
      JETFLOW_API_KEYS: [...o.tenants.map((t) => `${t}:sha256:${sha256(apiKeys[t]!)}`), `${OPS_TENANT}:operator:sha256:${sha256(apiKeys[OPS_TENANT])}`].join(','),
      JETFLOW_OPERATOR_TENANTS: OPS_TENANT,
      ...nats(sec.secretFor('ingest')),
    }),
  );
  put(
    'orchestrator.env',
    envText('orchestrator: callback signing secrets and its NATS identity', {
      JETFLOW_CALLBACK_SECRETS: o.tenants.map((t) => `${t}:${callbackSecrets[t]}`).join(','),
      ...nats(sec.secretFor('orchestrator')),
    }),
  );
  put('dataset-generator.env', envText('dataset-generator: its NATS identity', nats(sec.secretFor('dataset-generator'))));
  put('analyst.env', envText('analyst: its NATS identity', nats(sec.secretFor('analyst'))));
  for (const w of Object.keys(o.workers ?? {})) put(`worker-${w}.env`, envText(`outside worker ${w}: its NATS identity`, nats(sec.secretFor(`worker:${w}`))));
  // For people, never for a cluster object: the plaintext each tenant or operator is given.
  put(
    join('handout', 'api-keys.env'),
    envText(`API keys by tenant (Authorization: Bearer <key>); ingest holds only their sha256. ${OPS_TENANT}= is the operator key (system-wide views: consumers, routes)`, apiKeys),
  );
  put(join('handout', 'callback-secrets.env'), envText('callback signing secrets by tenant (verify Jetflow-Signature with it)', callbackSecrets));
  const people = sec.secrets.filter((x) => x.role === 'operator' || x.role.startsWith('tenant:'));
  put(
    join('handout', 'nats-logins.env'),
    envText(
      `NATS logins, user=password: the operator (CLI, admin tools), the system account's admin (${SYS_USER}, server administration only) and each tenant's NATS door (publishes to jetflow.ingest.<tenant>.>). Inbox prefixes: ${people.map((s) => `${s.user} ${s.inboxPrefix}`).join(', ')}`,
      { ...Object.fromEntries(people.map((s) => [s.user, s.password])), [SYS_USER]: sysPassword },
    ),
  );
  return written;
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(ROOT, 'scripts/gen-deploy-secrets.ts')) {
  const { values } = parseArgs({
    options: {
      out: { type: 'string' },
      tenants: { type: 'string' },
      workers: { type: 'string' },
      flows: { type: 'string' },
      partitions: { type: 'string' },
      rotate: { type: 'string' },
      'bcrypt-cost': { type: 'string' },
      help: { type: 'boolean' },
    },
    strict: true,
  });
  if (values.help || !values.out || !values.tenants) {
    process.stdout.write(USAGE);
    process.exit(values.help ? 0 : 2);
  }
  const workers: Record<string, string[]> = {};
  for (const w of (values.workers ?? '').split(';').filter(Boolean)) {
    const [name, patterns] = w.split('=');
    if (!name || !patterns) throw new Error(`--workers: expected name=pattern[+pattern], got "${w}"`);
    workers[name] = patterns.split('+');
  }
  const num = (v: string | undefined, name: string) => {
    if (v === undefined) return undefined;
    if (!/^\d+$/.test(v)) throw new Error(`--${name}: expected a whole number, got "${v}"`);
    return Number(v);
  };
  const out = values.out;
  const files = generateDeploySecrets({
    out,
    tenants: values.tenants
      .split(',')
      .map((t) => t.trim())
      .filter(Boolean),
    ...(Object.keys(workers).length ? { workers } : {}),
    ...(values.flows ? { flowsFile: values.flows } : {}),
    ...(values.partitions ? { partitions: num(values.partitions, 'partitions')! } : {}),
    ...(values.rotate ? { rotate: values.rotate.split(',') } : {}),
    ...(values['bcrypt-cost'] ? { bcryptCost: num(values['bcrypt-cost'], 'bcrypt-cost')! } : {}),
  });
  process.stdout.write(
    `wrote ${files.map((f) => join(out, f)).join(', ')}\nhandout/ holds plaintext for people: hand each tenant its lines and operators the ${OPS_TENANT}= API key (handout/api-keys.env); keep the directory out of git.\n`,
  );
}
