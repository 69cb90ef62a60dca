import { spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { UserError } from '../shared/errors.js';
import { onBenchExit } from './exit-hooks.js';

/** PyTorch's gloo all-reduce: the peer `bench allreduce --gloo` is compared with. */
export interface GlooRun {
  /** The interpreter it ran under, and PyTorch's version there. */
  python: string;
  torch: string;
  /** timesMs[rank][size][iteration]. */
  timesMs: number[][][];
}

/**
 * The rank program: gloo on loopback, one thread (as our ranks compute on one), every size
 * timed after a barrier and checked: rank r fills r + 1, so every element must be the sum
 * 1 + ... + N afterwards (exact in float32). One JSON line per size on stdout.
 */
const PROGRAM = `
import json, os, sys, time
import torch
import torch.distributed as dist
torch.set_num_threads(1)
rank, world = int(os.environ['RANK']), int(os.environ['WORLD_SIZE'])
dist.init_process_group('gloo', rank=rank, world_size=world)
expected = world * (world + 1) / 2
for size in json.loads(sys.argv[1]):
    t = torch.empty(size['bytes'] // 4, dtype=torch.float32)
    times = []
    for i in range(size['warmup'] + size['iters']):
        t.fill_(rank + 1)
        dist.barrier()
        start = time.perf_counter()
        dist.all_reduce(t)
        end = time.perf_counter()
        if not bool(torch.all(t == expected)):
            sys.exit('gloo returned a wrong sum at %d bytes' % size['bytes'])
        if i >= size['warmup']:
            times.append((end - start) * 1000)
    print(json.dumps({'bytes': size['bytes'], 'ms': times}), flush=True)
dist.destroy_process_group()
`;

/**
 * Refuses an interpreter that cannot run gloo (absent, no PyTorch, PyTorch without gloo),
 * before anything is measured; returns PyTorch's version.
 */
export function checkGlooPython(python: string): string {
  const probe = spawnSync(
    python,
    [
      '-c',
      'import torch, torch.distributed as d; assert d.is_gloo_available(), "no gloo"; print(torch.__version__)',
    ],
    { encoding: 'utf8' },
  );
  if (probe.status === 0) return probe.stdout.trim();
  const why =
    probe.error?.message ?? probe.stderr.trim().split('\n').at(-1) ?? `exit ${probe.status}`;
  throw new UserError(
    `--gloo: ${python} cannot run PyTorch's gloo (${why}); install PyTorch there (Debian: apt-get install python3-torch) or name another interpreter`,
  );
}

/**
 * `workers` Python processes all-reduce every size with gloo on 127.0.0.1 (MASTER_PORT: a port
 * free now), `iters[i]` timed iterations after `warmup[i]`, each timed by every rank as `bench
 * allreduce` times its own.
 */
export async function measureGloo(
  python: string,
  torch: string,
  workers: number,
  sizes: readonly number[],
  iters: readonly number[],
  warmup: readonly number[],
): Promise<GlooRun> {
  const plan = JSON.stringify(
    sizes.map((bytes, i) => ({ bytes, iters: iters[i], warmup: warmup[i] })),
  );
  const port = await freePort();
  const lines = await Promise.all(
    Array.from({ length: workers }, (_, rank) => runRank(python, plan, rank, workers, port)),
  );
  return { python, torch, timesMs: lines.map((sizesOfRank) => sizesOfRank.map((s) => s.ms)) };
}

function runRank(
  python: string,
  plan: string,
  rank: number,
  workers: number,
  port: number,
): Promise<{ bytes: number; ms: number[] }[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(python, ['-c', PROGRAM, plan], {
      env: {
        ...process.env,
        MASTER_ADDR: '127.0.0.1',
        MASTER_PORT: String(port),
        RANK: String(rank),
        WORLD_SIZE: String(workers),
        // Loopback only: gloo would otherwise pick the interface of the host name.
        GLOO_SOCKET_IFNAME: 'lo',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    // A stopped benchmark (SIGINT, SIGTERM, a failed rank) leaves no Python rank behind.
    const forget = onBenchExit(() => child.kill('SIGKILL'));
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => {
      forget();
      if (code !== 0) {
        reject(
          new Error(
            `gloo rank ${rank} exited ${code}: ${err.trim().split('\n').slice(-3).join(' | ')}`,
          ),
        );
        return;
      }
      resolve(
        out
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l) as { bytes: number; ms: number[] }),
      );
    });
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}
