import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeSyntheticCifar } from '../helpers/synthetic-cifar.js';
import { makeCifarTarball, startServer } from '../helpers/tarball-server.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const MAIN = join(ROOT, 'dist/src/cli/main.js');

/** Runs the built CLI as a real process (asynchronously, so this process can serve it HTTP). */
function cli(args: string[], env: Record<string, string> = {}) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, [MAIN, ...args], {
      env: { ...process.env, LOG_FORMAT: 'json', ...env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** The error lines a failed command logged (JSON lines at level ≥ 50). */
function errors(stderr: string): string[] {
  return stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { level: number; msg: string })
    .filter((r) => r.level >= 50)
    .map((r) => r.msg);
}

let work: string;
beforeAll(async () => {
  // dist/ is built once for the whole run by test/global-setup.ts.
  work = await mkdtemp(join(tmpdir(), 'data-cli-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('tfjs-ddp data info', () => {
  it('prints one JSON object with counts and class histograms', async () => {
    const dir = join(work, 'holdout');
    await writeSyntheticCifar(dir, { perBatch: 20 });
    const { code, stdout } = await cli([
      'data',
      'info',
      '--data',
      dir,
      '--val-size',
      '30',
      '--seed',
      '3',
      '--json',
    ]);
    expect(code).toBe(0);
    const info = JSON.parse(stdout);
    expect(info).toMatchObject({ dataset: 'cifar10', dataDir: dir, valSource: 'holdout', seed: 3 });
    expect(info.classNames[0]).toBe('airplane');
    expect([info.train.count, info.val.count]).toEqual([70, 30]);
    const total = info.train.classCounts.map((n: number, i: number) => n + info.val.classCounts[i]);
    expect(total).toEqual(new Array(10).fill(10));
  });

  it('prints a readable table', async () => {
    const dir = join(work, 'with-test');
    await writeSyntheticCifar(dir, { perBatch: 30, withTest: true, testCount: 20 });
    const { code, stdout } = await cli(['data', 'info', '--data', dir]);
    expect(code).toBe(0);
    expect(stdout).toContain(`cifar10 from ${dir}`);
    expect(stdout).toContain('validation: a separate test set');
    expect(stdout).toMatch(/^airplane\s+15\s+2$/m);
    expect(stdout).toMatch(/^total\s+150\s+20$/m);
  });

  it('describes the synthetic data set', async () => {
    const { code, stdout } = await cli(['data', 'info', '--dataset', 'synthetic']);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^total\s+2,000\s+500$/m);
  });

  it('fails with one clear line, no stack trace, for a truncated batch', async () => {
    const dir = join(work, 'truncated');
    await writeSyntheticCifar(dir, { perBatch: 3 });
    await truncate(join(dir, 'data_batch_4.bin'), 5000);
    const { code, stdout, stderr } = await cli(['data', 'info', '--data', dir]);
    expect(code).toBe(2);
    expect(stdout).toBe('');
    expect(errors(stderr)).toEqual([
      `${join(dir, 'data_batch_4.bin')}: 5000 bytes is not a multiple of 3073 (record = 1 label byte + ` +
        '3072 pixel bytes); the file is truncated or not CIFAR-10 binary',
    ]);
    expect(stderr).not.toMatch(/\n\s+at /);
  });

  it('rejects a missing folder, conflicting flags and a bad number', async () => {
    const missing = await cli(['data', 'info', '--data', join(work, 'nope')]);
    expect(missing.code).toBe(2);
    expect(errors(missing.stderr)[0]).toMatch(/nope does not exist/);
    const both = await cli(['data', 'info', '--data', work, '--dataset', 'synthetic']);
    expect(errors(both.stderr)).toEqual([
      '--data and --dataset synthetic: give one of them, not both',
    ]);
    const bad = await cli(['data', 'info', '--val-size', 'many']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/--val-size.*expected a whole number/);
  });
});

describe('tfjs-ddp data download', () => {
  it('installs from a URL, is a no-op the second time, and fails cleanly on a bad checksum', async () => {
    const tarball = await makeCifarTarball(join(work, 'archive'), { perBatch: 4, withTest: true });
    const server = await startServer({ '/c.tar.gz': (res) => res.end(tarball.bytes) });
    try {
      const dir = join(work, 'cache', 'cifar10');
      const args = ['data', 'download', '--dir', dir, '--url', server.url('/c.tar.gz')];
      const first = await cli(args, { TFJS_DDP_CIFAR10_MD5: tarball.md5 });
      expect(first.code).toBe(0);
      expect(first.stdout).toMatch(
        new RegExp(`^CIFAR-10 installed in ${dir} \\(0\\.\\d MiB archive, MD5 verified\\)`),
      );
      const again = await cli([...args, '--md5', tarball.md5]);
      expect(again.stdout).toMatch(/is already in .*; nothing to do/);
      expect(server.requests).toHaveLength(1);

      const other = join(work, 'other', 'cifar10');
      const wrong = await cli([
        'data',
        'download',
        '--dir',
        other,
        '--url',
        server.url('/c.tar.gz'),
      ]);
      expect(wrong.code).toBe(2);
      expect(errors(wrong.stderr)[0]).toMatch(
        /has MD5 [0-9a-f]{32}, expected c32a1d4ab5d03f1284b67883e8d87530/,
      );
      expect(await readdir(join(work, 'other'))).toEqual([]);
    } finally {
      await server.close();
    }
  });
});
