import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WORKERS_PER_CORE } from '../../src/coordinator/worker-capacity.js';
import { ensureBuilt, errorLines, ROOT, runCli } from './run-cli.js';

// Every failure a user meets is one clear line: no help dump, no raw library output, no stack.

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'error-lines-'));
  await ensureBuilt();
}, 180_000);
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** Lines of stderr that are not JSON log records (raw output of a library, a stack trace). */
function rawLines(stderr: string): string[] {
  return stderr.split('\n').filter((l) => l !== '' && !l.startsWith('{'));
}

/** Whether this process may mount a tmpfs (root, and mount(8) works here). */
function canMountTmpfs(dir: string): boolean {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir], { stdio: 'ignore' });
    execFileSync('umount', [dir]);
    return true;
  } catch {
    return false;
  }
}

const RUN = ['--model', 'lenet5', '--dataset', 'synthetic', '--backend', 'wasm'];

describe('one clear line', () => {
  it('`--version` prints the package version', async () => {
    const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
    const result = await runCli(['--version']);
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(`${version}\n`);
  });

  it('an unknown flag: the error and a pointer to --help, not the whole help', async () => {
    const result = await runCli(['train', '--epoch', '3']);
    expect(result.code).toBe(1);
    expect(result.stderr.trim().split('\n')).toEqual([
      "error: unknown option '--epoch'",
      '(Did you mean --epochs?)',
      '(add --help to see the options)',
    ]);
  });

  it('--workers beyond what the machine carries: refused in one line before anything starts', async () => {
    const started = Date.now();
    const result = await runCli(['train', ...RUN, '--steps', '1', '--workers', '1000']);
    expect(result.code).toBe(2);
    expect(rawLines(result.stderr)).toEqual([]);
    const cores = availableParallelism();
    expect(errorLines(result.stderr)).toEqual([
      `--workers 1000: this machine has ${cores} core${cores > 1 ? 's' : ''}, which carry at most ${cores * WORKERS_PER_CORE} workers (${WORKERS_PER_CORE} per core); use fewer, or add --allow-oversubscribe`,
    ]);
    // Refused before the backend, the data or any worker: nothing else was logged.
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('a port in use: one line naming host:port and the cause, no grpc-js output', async () => {
    const busy: Server = createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    const port = (busy.address() as { port: number }).port;
    try {
      const result = await runCli([
        'coordinator',
        ...RUN,
        '--steps',
        '1',
        '--world-size',
        '1',
        '--bind-host',
        '127.0.0.1',
        '--port',
        String(port),
      ]);
      expect(result.code).toBe(2);
      expect(rawLines(result.stderr)).toEqual([]);
      expect(errorLines(result.stderr)).toEqual([
        `cannot listen for gRPC on 127.0.0.1:${port}: address already in use (EADDRINUSE)`,
      ]);
    } finally {
      busy.close();
    }
  });

  it('a coordinator name that does not resolve: said while retrying, and in the final error', async () => {
    const result = await runCli([
      'worker',
      '--coordinator',
      'no-such-coordinator.invalid:7070',
      '--backend',
      'wasm',
      '--join-timeout',
      '11',
    ]);
    expect(result.code).toBe(3);
    expect(rawLines(result.stderr)).toEqual([]);
    const records = result.stderr
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { level: number; msg: string });
    const cause = 'the name no-such-coordinator.invalid does not resolve (ENOTFOUND)';
    const retries = records.filter((r) => r.level === 40).map((r) => r.msg);
    expect(retries).toHaveLength(1);
    expect(retries[0]).toContain(
      `cannot reach the coordinator at no-such-coordinator.invalid:7070 yet: ${cause}; retrying`,
    );
    expect(errorLines(result.stderr)).toEqual([
      `failed to reach the coordinator at no-such-coordinator.invalid:7070 within --join-timeout 11 s: ${cause}`,
    ]);
  });

  const full = join(tmpdir(), `error-lines-full-${process.pid}`);
  const mountable = (() => {
    execFileSync('mkdir', ['-p', full]);
    return canMountTmpfs(full);
  })();
  it.skipIf(!mountable)(
    'a full disk while checkpointing names the file and the cause (skipped where tmpfs cannot be mounted)',
    async () => {
      await mkdir(full, { recursive: true });
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', full]);
      try {
        const out = join(full, 'run');
        const result = await runCli(['train', ...RUN, '--steps', '2', '--out', out]);
        expect(result.code).toBe(1);
        expect(rawLines(result.stderr)).toEqual([]);
        expect(errorLines(result.stderr)).toEqual([
          `cannot write ${out}/checkpoint.ckpt: no space left on device (ENOSPC)`,
        ]);
      } finally {
        execFileSync('umount', [full]);
        await rm(full, { recursive: true, force: true });
      }
    },
  );
});
