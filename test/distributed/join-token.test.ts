// `train --workers N` protects its run with a join token of its own: random, handed to the worker
// processes in their environment (not on their command lines, which `ps` shows anyone), and
// written nowhere: not in a log line, not in the run folder. A `coordinator` that anyone on the
// network could join (no token, no TLS, not on loopback) says so once.
import { readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { childPids, ensureBuilt, startCli, waitUntil } from './cli-runs.js';
import { listeningPort } from './fake-worker.js';

const out = join(tmpdir(), `ddp-launcher-token-${process.pid}`);
let child: ReturnType<typeof startCli> | undefined;

beforeAll(async () => {
  await ensureBuilt();
  await rm(out, { recursive: true, force: true });
}, 300_000);

afterAll(async () => {
  if (child?.exitCode === null) child.kill('SIGKILL');
  await rm(out, { recursive: true, force: true });
});

describe('train --workers 2', () => {
  it('gives its workers a random join token in their environment, and writes it nowhere', async () => {
    child = startCli(
      [
        ...['train', '--workers', '2', '--model', 'lenet5', '--dataset', 'synthetic'],
        ...['--steps', '20', '--batch-size', '4', '--backend', 'wasm', '--trace', '--out', out],
      ],
      { env: { TFJS_DDP_TOKEN: '' } },
    );
    let logs = '';
    child.stdout.on('data', (d) => (logs += d));
    child.stderr.on('data', (d) => (logs += d));
    const exited = new Promise<number | null>((resolve) => child?.on('close', resolve));
    const pid = child.pid as number;
    expect(await waitUntil(() => childPids(pid).length === 2, 60_000)).toBe(true);
    const workers = await Promise.all(
      childPids(pid).map(async (p) => ({
        environ: (await readFile(`/proc/${p}/environ`, 'latin1')).split('\0'),
        cmdline: await readFile(`/proc/${p}/cmdline`, 'latin1'),
      })),
    );
    const tokens = workers.map(
      (w) => w.environ.find((e) => e.startsWith('TFJS_DDP_TOKEN='))?.slice(15) ?? '',
    );
    expect(tokens[0]).toMatch(/^[0-9a-f]{32}$/);
    expect(tokens[1]).toBe(tokens[0]);
    const token = tokens[0];
    for (const w of workers) {
      expect(w.cmdline).toContain('worker');
      expect(w.cmdline).not.toContain(token);
      expect(w.cmdline).not.toContain('--token');
    }
    expect(await exited, logs.slice(-3000)).toBe(0);
    expect(logs).not.toContain(token);
    const files = (await readdir(out, { recursive: true, withFileTypes: true })).filter((f) =>
      f.isFile(),
    );
    expect(files.map((f) => f.name)).toEqual(
      expect.arrayContaining(['run-flags.json', 'metrics.jsonl', 'trace.json']),
    );
    for (const f of files) {
      const content = await readFile(join(f.parentPath, f.name));
      expect(content.includes(token), f.name).toBe(false);
    }
  }, 120_000);
});

describe('coordinator without a join token', () => {
  /** The coordinator's log up to the line that says it listens (then it is stopped). */
  async function startUp(host: string, env: Record<string, string> = {}): Promise<string> {
    const coordinator = startCli(
      [
        ...['coordinator', '--world-size', '2', '--port', '0', '--bind-host', host],
        ...['--model', 'lenet5', '--dataset', 'synthetic', '--backend', 'cpu', '--http-port', '0'],
      ],
      { env: { TFJS_DDP_TOKEN: '', TFJS_DDP_TOKEN_FILE: '', ...env } },
    );
    let log = '';
    coordinator.stderr.on('data', (d) => (log += d));
    try {
      await listeningPort(coordinator);
    } finally {
      coordinator.kill('SIGKILL');
    }
    return log;
  }

  it('warns once when it listens beyond loopback, and not on loopback or with a token', async () => {
    const warning = /no join token: anyone who reaches 0\.0\.0\.0:\d+ can join this run/g;
    expect((await startUp('0.0.0.0')).match(warning)).toHaveLength(1);
    expect(await startUp('127.0.0.1')).not.toMatch(/no join token/);
    expect(await startUp('0.0.0.0', { TFJS_DDP_TOKEN: 'a-token' })).not.toMatch(/no join token/);
  }, 60_000);
});
