import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { OPS_TENANT, generateDeploySecrets } from './gen-deploy-secrets.js';

/**
 * The compose stack's secrets, made on its first start and kept after (docker-compose.yml has none of
 * its own): NATS identities and the nats-server auth config (libs/security), API keys and callback
 * secrets for JETFLOW_TENANTS (default "default"), the operator API key (tenant ops: the dashboard's Consumers
 * page, `jetflow consumers`), and Grafana's admin password, in .jetflow/compose/
 * (git-ignored, files mode 0600). Re-running keeps every existing value.
 *
 *   npm run compose:secrets && docker compose up --build
 */
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const COMPOSE_SECRETS_DIR = join(ROOT, '.jetflow', 'compose');

export function composeSecrets(out = COMPOSE_SECRETS_DIR, tenants = ['default']): { apiKeys: Record<string, string>; grafanaPassword: string } {
  generateDeploySecrets({ out, tenants });
  const grafanaFile = join(out, 'grafana.env');
  const previous = existsSync(grafanaFile) ? /^GF_SECURITY_ADMIN_PASSWORD=(.+)$/m.exec(readFileSync(grafanaFile, 'utf8'))?.[1] : undefined;
  const grafanaPassword = previous ?? randomBytes(18).toString('base64url');
  writeFileSync(grafanaFile, `# Grafana's admin login (user admin)\nGF_SECURITY_ADMIN_USER=admin\nGF_SECURITY_ADMIN_PASSWORD=${grafanaPassword}\n`, { mode: 0o600 });
  const apiKeys = Object.fromEntries(
    readFileSync(join(out, 'handout', 'api-keys.env'), 'utf8')
      .split('\n')
      .flatMap((l) => (/^[^#=]+=/.test(l) ? [[l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]] : [])),
  ) as Record<string, string>;
  return { apiKeys, grafanaPassword };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const tenants = (process.env.JETFLOW_TENANTS ?? 'default')
    .split(',')
    .map((t) => t.trim())
    .filter(Boolean);
  const { apiKeys, grafanaPassword } = composeSecrets(COMPOSE_SECRETS_DIR, tenants);
  process.stdout.write(
    `compose secrets in ${COMPOSE_SECRETS_DIR} (kept on re-runs)\n` +
      Object.entries(apiKeys)
        .map(([t, k]) => (t === OPS_TENANT ? `  operator API key (tenant ${t}: Consumers page, jetflow consumers / route): ${k}\n` : `  API key of tenant ${t}: ${k}\n`))
        .join('') +
      `  Grafana (http://127.0.0.1:3000): admin / ${grafanaPassword}\n` +
      `  callback secrets: ${join(COMPOSE_SECRETS_DIR, 'handout', 'callback-secrets.env')}\n`,
  );
}
