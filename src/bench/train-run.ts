import { spawn } from 'node:child_process';
import { openSync, readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { UserError } from '../shared/errors.js';
import { GRADIENT_PROCESS_NODE_FLAGS } from '../shared/transport/grpc-settings.js';
import { cliEntry, killWithParent } from './bench-child.js';

/**
 * Runs `tfjs-ddp train <args> --out <runDir> --json` as a child process (the CLI
 * of this build) and resolves when it exits 0; its log goes to <runDir>.log. Rejects
 * with the last lines of that log when it fails. `timeoutMs` bounds the whole run
 * (then the child is killed).
 */
export async function runTraining(args: string[], runDir: string, timeoutMs: number) {
  await mkdir(runDir, { recursive: true });
  const logPath = `${runDir}.log`;
  const logFd = openSync(logPath, 'w');
  // The flags a star-mode coordinator needs; the independent single-process runs get them too,
  // so that both sides of the distribution efficiency run the same node.
  const argv = [
    ...GRADIENT_PROCESS_NODE_FLAGS,
    cliEntry(),
    'train',
    ...args,
    '--out',
    runDir,
    '--json',
  ];
  const child = spawn(process.execPath, argv, {
    stdio: ['ignore', logFd, logFd],
    env: { ...process.env, LOG_FORMAT: 'json' },
  });
  killWithParent(child);
  const code = await new Promise<number | null>((resolve) => {
    const timer = setTimeout(() => child.kill('SIGTERM'), timeoutMs);
    child.once('exit', (c) => {
      clearTimeout(timer);
      resolve(c);
    });
  });
  if (code !== 0) {
    const tail = readFileSync(logPath, 'utf8').trim().split('\n').slice(-5).join('\n');
    throw new UserError(
      `tfjs-ddp train ${args.join(' ')} failed (exit ${code}); the end of ${logPath}:\n${tail}`,
    );
  }
}

/** Where the run of `workers` workers (instance `index` of several) goes under `out`. */
export function runFolder(out: string, workers: number, index?: number): string {
  return join(out, index === undefined ? `n${workers}` : `n${workers}-independent-${index}`);
}
