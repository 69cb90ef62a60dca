// A peer in a real child process that is killed (SIGKILL) or stopped (SIGSTOP)
// while the others, in this process, all-reduce over gRPC: they must reject
// within the deadline with an error naming it. Needs `npm run build` (the child
// runs the compiled code).
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Collective } from '../../src/shared/collectives/collective.js';
import { createCollective } from '../../src/shared/collectives/create-collective.js';
import { StarReductionService } from '../../src/shared/collectives/star-reduction-service.js';
import { TransportError } from '../../src/shared/transport/errors.js';
import { type RunningGrpcServer, startGrpcServer } from '../../src/shared/transport/grpc-server.js';
import { PeerService } from '../../src/shared/transport/peer-service.js';
import { expectedSum, expectSameValues, rankData, timeRejection } from './worlds.js';

const CHILD = fileURLToPath(new URL('../fixtures/collective-rank.mjs', import.meta.url));
const TIMEOUT_MS = 1500;
const CHILD_RANK = 1;
const WORLD = 3;

let child: ChildProcess | undefined;
let servers: RunningGrpcServer[] = [];
let collectives: Collective[] = [];

beforeAll(() => {
  const compiled = fileURLToPath(
    new URL('../../dist/src/shared/collectives/create-collective.js', import.meta.url),
  );
  if (!existsSync(compiled))
    throw new Error(`${compiled} is missing: run \`npm run build\` before these tests`);
});

afterEach(async () => {
  if (child?.pid && child.exitCode === null && child.signalCode !== 'SIGKILL') {
    child.kill('SIGCONT');
    child.kill('SIGKILL');
  }
  await Promise.all(collectives.map((c) => c.close()));
  await Promise.all(servers.map((s) => s.shutdown(100)));
  [child, servers, collectives] = [undefined, [], []];
});

/** Messages the child prints, one JSON object per line. */
function childLines(proc: ChildProcess): () => Promise<Record<string, unknown>> {
  const lines = createInterface({ input: proc.stdout! });
  const queue: string[] = [];
  const waiting: ((line: string) => void)[] = [];
  lines.on('line', (line) => (waiting.shift() ?? ((l: string) => queue.push(l)))(line));
  return () =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error('the child printed nothing in 20 s')),
        20_000,
      );
      const take = (line: string) => {
        clearTimeout(timer);
        resolve(JSON.parse(line));
      };
      const line = queue.shift();
      if (line !== undefined) take(line);
      else waiting.push(take);
    });
}

/** Ranks 0 and 2 here, rank 1 in a child process; all have all-reduced once. */
async function startWorld(algorithm: 'ring' | 'star'): Promise<Collective[]> {
  const ranks = [0, 2];
  const setup = (rank: number) => ({
    rank,
    worldSize: WORLD,
    generation: 1,
    timeoutMs: TIMEOUT_MS,
    chunkBytes: 64 * 1024,
  });
  if (algorithm === 'ring') {
    const services = ranks.map(() => new PeerService(TIMEOUT_MS));
    servers = await Promise.all(
      services.map((s) => startGrpcServer({ host: '127.0.0.1', services: [s] })),
    );
    child = spawn(process.execPath, [CHILD, 'ring', String(CHILD_RANK), String(WORLD), '20000'], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const next = childLines(child);
    const { port } = (await next()) as { port: number };
    const peerAddresses = [servers[0].port, port, servers[1].port].map((p) => `127.0.0.1:${p}`);
    child.stdin!.write(`${JSON.stringify({ peerAddresses })}\n`);
    collectives = await Promise.all(
      ranks.map((rank, i) =>
        createCollective('ring', {
          ...setup(rank),
          connectTimeoutMs: 20_000,
          peerAddresses,
          peerService: services[i],
        }),
      ),
    );
    await checkFirstReduce(next);
  } else {
    const reduction = new StarReductionService({
      timeoutMs: TIMEOUT_MS / 2,
      connectTimeoutMs: 20_000,
    });
    servers = [await startGrpcServer({ host: '127.0.0.1', services: [reduction] })];
    reduction.startGeneration(1, WORLD);
    const reductionAddress = `127.0.0.1:${servers[0].port}`;
    child = spawn(
      process.execPath,
      [CHILD, 'star', String(CHILD_RANK), String(WORLD), '20000', reductionAddress],
      { stdio: ['pipe', 'pipe', 'inherit'] },
    );
    const next = childLines(child);
    collectives = await Promise.all(
      ranks.map((rank) =>
        createCollective('star', { ...setup(rank), connectTimeoutMs: 20_000, reductionAddress }),
      ),
    );
    await checkFirstReduce(next);
  }
  return collectives;
}

async function checkFirstReduce(next: () => Promise<Record<string, unknown>>) {
  const buffers = collectives.map((c) => rankData(c.rank, 1000));
  const [reported] = await Promise.all([
    next(),
    ...collectives.map((c, i) => c.allReduceSum(buffers[i])),
  ]);
  const expected = expectedSum(WORLD, 1000);
  for (const b of buffers) expectSameValues(b, expected);
  expect(reported.reduced).toEqual(Array.from(expected.subarray(0, 3)));
}

describe.each(['ring', 'star'] as const)('%s all-reduce with a peer process', (algorithm) => {
  it.each(['SIGKILL', 'SIGSTOP'] as const)(
    'rejects within the deadline, naming the rank, after %s',
    async (signal) => {
      await startWorld(algorithm);
      const survivors = collectives;
      child!.kill(signal);
      const results = await Promise.all(
        survivors.map((c) => timeRejection(c.allReduceSum(rankData(c.rank, 100_000)))),
      );
      for (const [ms, error] of results) {
        expect(error).toBeInstanceOf(TransportError);
        expect(error.message).toMatch(new RegExp(`rank ${CHILD_RANK}\\b`));
        expect(ms).toBeLessThan(TIMEOUT_MS + 1500);
      }
    },
  );
});
