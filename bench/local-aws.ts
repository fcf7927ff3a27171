import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { repoRoot } from '@jetflow/stack';

export interface AwsProcess {
  env: Record<string, string>;
  pid: number;
  stop(): Promise<void>;
}

/**
 * Local S3 and DynamoDB (s3rver + dynalite) in their own process for real task mode: the workers keep
 * datasets in S3 and the orchestrator writes the history to DynamoDB. A separate process keeps their
 * CPU out of the driver's figures (and out of the system's: in production these are AWS's).
 */
export async function startAwsProcess(): Promise<AwsProcess> {
  const root = repoRoot();
  const js = join(root, 'libs', 'storage', 'dist', 'local-aws-main.js');
  const args = existsSync(js) ? [js] : ['--import', 'tsx', join(root, 'libs', 'storage', 'src', 'local-aws-main.ts')];
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const line = await new Promise<string>((resolve, reject) => {
    const rl = createInterface({ input: proc.stdout });
    rl.once('line', (l) => resolve(l));
    proc.once('exit', (code) => reject(new Error(`local AWS exited (${code}) before it started`)));
  });
  proc.stdout?.resume();
  const { env } = JSON.parse(line) as { env: Record<string, string> };
  return {
    env,
    pid: proc.pid ?? 0,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      await exited;
    },
  };
}
