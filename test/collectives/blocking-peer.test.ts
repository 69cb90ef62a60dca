// Ranks whose event loops block between all-reduces (training steps on a CPU backend)
// must not hold each other back: an operation completes only once the rank's own
// chunks have left its process, else its last chunk waits in its buffers for the
// whole next step, and the peer waiting for it with it. Two ranks, this process and
// a child, all-reduce and block in turn; their all-reduces must stay short. Needs
// `npm run build` (the child runs the compiled code).
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterEach, expect, it } from 'vitest';
import { createCollective } from '../../src/shared/collectives/create-collective.js';
import { startGrpcServer } from '../../src/shared/transport/grpc-server.js';
import { PeerService } from '../../src/shared/transport/peer-service.js';
import { expectedSum, expectSameValues, rankData } from './worlds.js';

const CHILD = fileURLToPath(new URL('../fixtures/collective-rank.mjs', import.meta.url));
/**
 * The "training step" after each all-reduce. Long enough that a held-back all-reduce (about
 * BLOCK_MS) stands apart from one merely slowed by a busy machine (281 ms seen with load 10 on
 * 2 cores, when the step was 400 ms).
 */
const BLOCK_MS = 800;
const ROUNDS = 12;
/** baseline's gradient (0.79 MB): one 1 MiB chunk per ring step, as in training. */
const ELEMENTS = 200_000;
const CHUNK_BYTES = 1 << 20;

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

it('keeps all-reduces short between steps that block the event loop', async () => {
  const peerService = new PeerService(20_000);
  const server = await startGrpcServer({ host: '127.0.0.1', services: [peerService] });
  cleanup.push(() => server.shutdown(100));
  const child = spawn(process.execPath, [CHILD, 'ring', '1', '2', '20000'], {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: {
      ...process.env,
      ELEMENTS: String(ELEMENTS),
      BLOCK_MS: String(BLOCK_MS),
      ROUNDS: String(ROUNDS),
      CHUNK_BYTES: String(CHUNK_BYTES),
    },
  });
  cleanup.push(() => child.kill('SIGKILL'));
  const lines = createInterface({ input: child.stdout });
  const nextLine = () =>
    new Promise<Record<string, unknown>>((resolve) =>
      lines.once('line', (line) => resolve(JSON.parse(line))),
    );
  const { port } = (await nextLine()) as { port: number };
  const peerAddresses = [server.port, port].map((p) => `127.0.0.1:${p}`);
  child.stdin.write(`${JSON.stringify({ peerAddresses })}\n`);
  const collective = await createCollective('ring', {
    rank: 0,
    worldSize: 2,
    generation: 1,
    timeoutMs: 20_000,
    chunkBytes: CHUNK_BYTES,
    peerAddresses,
    peerService,
  });
  cleanup.push(() => collective.close());
  const reported = nextLine();

  const allReduceMs: number[] = [];
  let data: Float32Array = new Float32Array(0);
  for (let round = 0; round < ROUNDS; round++) {
    data = rankData(0, ELEMENTS);
    const start = performance.now();
    await collective.allReduceSum(data);
    allReduceMs.push(performance.now() - start);
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, BLOCK_MS);
  }
  const child1 = (await reported) as { reduced: number[]; allReduceMs: number[] };

  const expected = expectedSum(2, ELEMENTS);
  expectSameValues(data, expected);
  expect(child1.reduced).toEqual(Array.from(expected.subarray(0, 3)));
  // Held back, a rank waits a whole step for its peer's last chunk (the others take a few ms).
  const held = (times: number[]) => times.filter((ms) => ms > BLOCK_MS / 2).map(Math.round);
  expect({ 'rank 0': held(allReduceMs), 'rank 1': held(child1.allReduceMs) }).toEqual({
    'rank 0': [],
    'rank 1': [],
  });
}, 40_000);
