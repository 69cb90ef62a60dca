// The worker's transport thread: its collectives move a shared gradient while the main thread is
// blocked (as a tfjs backward pass blocks it), and its failures arrive as the classes they were.
import { createServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { TransportError } from '../../src/shared/transport/errors.js';
import { TransportThread } from '../../src/worker/transport-thread/transport-thread.js';
import { expectedSum, expectSameValues, rankData, THREAD_ENTRY } from '../collectives/worlds.js';

const TUNING = { timeoutMs: 5000, chunkBytes: 256 * 1024 };
const threads: TransportThread[] = [];

afterEach(async () => {
  await Promise.all(threads.splice(0).map((t) => t.shutdown()));
});

async function ring(worldSize: number) {
  for (let r = 0; r < worldSize; r++) {
    threads.push(
      await TransportThread.start(
        { bindHost: '127.0.0.1', peerPort: 0, joinTimeoutMs: 5000, tls: undefined },
        THREAD_ENTRY,
      ),
    );
  }
  const peerAddresses = threads.map((t) => `127.0.0.1:${t.port}`);
  for (const t of threads) t.adopt('credential-of-generation-1');
  return Promise.all(
    threads.map((t, rank) =>
      t.createCollective('ring', {
        rank,
        worldSize,
        generation: 1,
        ...TUNING,
        peerAddresses,
        credential: 'credential-of-generation-1',
      }),
    ),
  );
}

/** Blocks this thread (no event loop turn) until `done()` or `limitMs`; returns the ms it took. */
function blockUntil(done: () => boolean, limitMs: number): number {
  const start = performance.now();
  while (!done() && performance.now() - start < limitMs) {
    // Spinning, as a synchronous tfjs kernel would.
  }
  return performance.now() - start;
}

describe('TransportThread', () => {
  it('all-reduces a gradient in shared memory while the main thread is blocked', async () => {
    const collectives = await ring(2);
    const length = 1_000_000;
    const expected = expectedSum(2, length);
    const grads = collectives.map((c) => {
      const shared = new Float32Array(new SharedArrayBuffer(length * 4));
      shared.set(rankData(c.rank, length));
      return shared;
    });
    const reduced = Promise.all(collectives.map((c, r) => c.allReduceSum(grads[r])));
    // The requests are posted; from here on this thread never yields until the sums are there.
    const last = length - 1;
    const blockedMs = blockUntil(
      () => grads.every((g) => g[0] === expected[0] && g[last] === expected[last]),
      20_000,
    );
    expect(blockedMs).toBeLessThan(20_000);
    await reduced;
    for (const g of grads) expectSameValues(g, expected);
  });

  it('copies arrays that are not shared, and rebuilds a peer’s loss as a TransportError', async () => {
    const collectives = await ring(3);
    const grads = collectives.map((c) => rankData(c.rank, 5000));
    await Promise.all(collectives.map((c, r) => c.allReduceSum(grads[r])));
    for (const g of grads) expectSameValues(g, expectedSum(3, 5000));
    expect(collectives[0].stats.bytesSent).toBeGreaterThan(0);

    await threads[2].terminate();
    const error = await collectives[0].allReduceSum(rankData(0, 5000)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TransportError);
    expect((error as Error).message).toMatch(/rank [12]/);
  });

  it('refuses a peer port in use with the server’s error, in one line', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as { port: number }).port;
    try {
      const error = await TransportThread.start(
        { bindHost: '127.0.0.1', peerPort: port, joinTimeoutMs: 1000, tls: undefined },
        THREAD_ENTRY,
      ).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(Error);
      expect((error as Error).message).toContain(String(port));
    } finally {
      taken.close();
    }
  });
});
