import { execFile, spawn } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const MAIN = join(ROOT, 'dist/src/cli/main.js');

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Builds dist/ (`npm run build`) unless it is newer than every source file: `npm test` builds
 * first, a single test file run by hand may not have. tsc emits even when files elsewhere in
 * the shared tree fail to typecheck, so its exit code is not what counts.
 */
export async function ensureBuilt(): Promise<void> {
  const built = existsSync(MAIN) ? statSync(MAIN).mtimeMs : 0;
  if (newestSource(join(ROOT, 'src')) > built) {
    await promisify(execFile)('npm', ['run', 'build'], { cwd: ROOT }).catch(() => undefined);
  }
  if (!existsSync(MAIN)) throw new Error('npm run build produced no dist/src/cli/main.js');
}

function newestSource(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(path));
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

/** Starts the built CLI as a real process, logs as JSON lines. */
export function startCli(
  args: string[],
  opts: { cwd?: string; env?: Record<string, string> } = {},
) {
  return spawn(process.execPath, [MAIN, ...args], {
    cwd: opts.cwd ?? ROOT,
    env: { ...process.env, LOG_FORMAT: 'json', ...opts.env },
  });
}

/** Runs the built CLI to completion. */
export function runCli(
  args: string[],
  opts: { cwd?: string; env?: Record<string, string> } = {},
): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = startCli(args, opts);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

/** The messages of the error records (level ≥ 50) among the JSON log lines on stderr. */
export function errorLines(stderr: string): string[] {
  return messages(stderr, (level) => level >= 50);
}

/** The messages of the INFO records (level 30) among the JSON log lines on stderr. */
export function infoLines(stderr: string): string[] {
  return messages(stderr, (level) => level === 30);
}

function messages(stderr: string, keep: (level: number) => boolean): string[] {
  return stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { level: number; msg: string })
    .filter((r) => keep(r.level))
    .map((r) => r.msg);
}
