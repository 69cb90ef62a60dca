// `tfjs-ddp coordinator` and `tfjs-ddp worker` as separate processes configured through their
// TFJS_DDP_* environment variables (as Kubernetes does), with mutual TLS on every connection
// (coordinator, ring) and the join token read from a file.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../cli/run-cli.js';
import { ensureBuilt, errorLines, startCli } from './cli-runs.js';
import { listeningPort } from './fake-worker.js';

let work: string;
let openssl = true;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ddp-tls-'));
  await ensureBuilt();
  try {
    const run = (...args: string[]) => execFileSync('openssl', args, { cwd: work, stdio: 'pipe' });
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
    run(
      'req',
      '-x509',
      ...ec,
      '-keyout',
      'ca.key',
      '-out',
      'ca.crt',
      '-days',
      '1',
      '-subj',
      '/CN=tfjs-ddp test CA',
    );
    run('req', ...ec, '-keyout', 'tls.key', '-out', 'tls.csr', '-subj', '/CN=localhost');
    await writeFile(join(work, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
    run(
      'x509',
      '-req',
      '-in',
      'tls.csr',
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      'tls.crt',
      '-days',
      '1',
      '-extfile',
      'san.ext',
    );
  } catch {
    openssl = false;
  }
  await writeFile(join(work, 'token'), 'from-a-secret\n');
}, 300_000);

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('coordinator and workers as separate processes', () => {
  it.skipIf(!openssl)(
    'train over mutual TLS, configured by TFJS_DDP_* variables',
    async () => {
      const tls = {
        TFJS_DDP_TLS_CERT: join(work, 'tls.crt'),
        TFJS_DDP_TLS_KEY: join(work, 'tls.key'),
        TFJS_DDP_TLS_CA: join(work, 'ca.crt'),
        TFJS_DDP_TOKEN_FILE: join(work, 'token'),
        TFJS_DDP_BIND_HOST: '127.0.0.1',
        TFJS_DDP_BACKEND: 'wasm',
      };
      const out = join(work, 'run');
      const coordinator = startCli(['coordinator', '--json'], {
        env: {
          ...tls,
          TFJS_DDP_WORLD_SIZE: '2',
          TFJS_DDP_PORT: '0',
          TFJS_DDP_MODEL: 'lenet5',
          TFJS_DDP_DATASET: 'synthetic',
          TFJS_DDP_STEPS: '3',
          TFJS_DDP_BATCH_SIZE: '4',
          TFJS_DDP_OUT: out,
        },
      });
      let stdout = '';
      let stderr = '';
      coordinator.stdout.on('data', (d) => (stdout += d));
      coordinator.stderr.on('data', (d) => (stderr += d));
      const done = new Promise<number | null>((resolve) => coordinator.on('close', resolve));
      const port = await listeningPort(coordinator);
      const workers = [0, 1].map(() =>
        runCli(['worker'], {
          env: {
            ...tls,
            TFJS_DDP_COORDINATOR: `127.0.0.1:${port}`,
            TFJS_DDP_PEER_PORT: '0',
            TFJS_DDP_ADVERTISE_HOST: '127.0.0.1',
          },
        }),
      );
      const results = await Promise.all(workers);
      for (const r of results) expect(r.code, r.stderr.slice(-3000)).toBe(0);
      expect(await done, stderr.slice(-3000)).toBe(0);
      expect(JSON.parse(stdout)).toMatchObject({ workers: 2, steps: 3, runDir: out });
      expect(stderr).toContain('(TLS)');
      expect(existsSync(join(out, 'model', 'model.json'))).toBe(true);
      expect((await readFile(join(out, 'metrics.jsonl'), 'utf8')).trim().split('\n').length).toBe(
        4,
      );
    },
    60_000,
  );

  it('reads TFJS_DDP_GPU as true or false, and refuses anything else', async () => {
    const worker = (value: string) =>
      runCli(['worker', '--coordinator', '127.0.0.1:1', '--join-timeout', '1'], {
        env: { TFJS_DDP_GPU: value },
      });
    const [on, off, odd] = await Promise.all([worker('true'), worker('false'), worker('maybe')]);
    // No GPU package here: asked for a GPU, the worker refuses to start on a CPU.
    expect(on.code).toBe(2);
    expect(errorLines(on.stderr)[0]).toMatch(/^--gpu was given but @tensorflow\/tfjs-node-gpu/);
    // Not asked: it gets past the backend and fails only at the unreachable coordinator.
    expect(off.code).not.toBe(0);
    expect(off.stderr).not.toMatch(/--gpu was given/);
    expect(off.stderr).toMatch(/127\.0\.0\.1:1/);
    expect(odd.code).toBe(2);
    expect(errorLines(odd.stderr)).toEqual([
      'TFJS_DDP_GPU=maybe: use true or false (or 1/0, yes/no)',
    ]);
  }, 30_000);

  it('refuses TLS flags given in part, naming them', async () => {
    const result = await runCli(['worker', '--coordinator', '127.0.0.1:1', '--tls-cert', 'x.pem']);
    expect(result.code).toBe(2);
    expect(errorLines(result.stderr)).toEqual([
      '--tls-cert, --tls-key and --tls-ca: give all three, or none',
    ]);
  });
});
