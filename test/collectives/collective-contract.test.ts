// One contract suite for every Collective implementation: ring and star, over
// real gRPC on loopback and over in-memory transports.
import { afterEach, describe, expect, it } from 'vitest';
import { TransportError } from '../../src/shared/transport/errors.js';
import {
  expectedSum,
  expectSameValues,
  IMPLEMENTATIONS,
  rankData,
  timeRejection,
  type World,
} from './worlds.js';

const TUNING = { timeoutMs: 1000, chunkBytes: 64 * 1024 };
// Sizes around the chunk (16,384 floats) and segment boundaries, not divisible by
// N, empty, one element, and a few MB.
const SIZES = [0, 1, 7, 16_385, 750_001];

describe.each(IMPLEMENTATIONS)('$name', (impl) => {
  let world: World | undefined;
  afterEach(async () => {
    await world?.close();
    world = undefined;
  });

  it.each([1, 2, 3, 4])('sums exactly on every rank with %i rank(s)', async (n) => {
    world = await impl.create(n, TUNING);
    for (const size of SIZES) {
      const buffers = world.collectives.map((_, r) => rankData(r, size));
      await Promise.all(world.collectives.map((c, r) => c.allReduceSum(buffers[r])));
      const expected = expectedSum(n, size);
      for (const b of buffers) expectSameValues(b, expected);
    }
  });

  it('runs several operations in flight at once, matched by sequence', async () => {
    world = await impl.create(3, TUNING);
    const sizes = [50_000, 3, 0, 20_000];
    const buffers = world.collectives.map((_, r) => sizes.map((s) => rankData(r, s)));
    await Promise.all(
      world.collectives.flatMap((c, r) =>
        buffers[r].map((b, i) => c.allReduceSum(b, { bucket: i })),
      ),
    );
    for (const rankBuffers of buffers) {
      for (const [i, b] of rankBuffers.entries()) expectSameValues(b, expectedSum(3, sizes[i]));
    }
  });

  it('broadcasts the root buffer exactly, from every root', async () => {
    world = await impl.create(3, TUNING);
    const collectives = world.collectives;
    for (const root of [0, 1, 2]) {
      const buffers = collectives.map((_, r) =>
        Float32Array.from(rankData(r, 40_001), (v) => v / 3),
      );
      const source = buffers[root].slice();
      await Promise.all(collectives.map((c, r) => c.broadcast(buffers[r], root)));
      for (const b of buffers) expectSameValues(b, source);
    }
  });

  it('holds every rank in a barrier until the last one enters', async () => {
    world = await impl.create(3, TUNING);
    const [first, second, last] = world.collectives;
    let released = false;
    const early = Promise.all([first.barrier(), second.barrier()]).then(() => {
      released = true;
    });
    await new Promise((r) => setTimeout(r, 150));
    expect(released).toBe(false);
    await Promise.all([last.barrier(), early]);
    expect(released).toBe(true);
  });

  it.each([
    ['bf16', 8, 0],
    // fp16 keeps 11 significant bits down to 2^-14, then steps of 2^-24 (half of it per rounding).
    ['fp16', 11, 2 ** -25],
  ] as const)(
    'with %s compression stays within its tolerance and identical on all ranks',
    async (compression, bits, floor) => {
      const n = 4;
      world = await impl.create(n, TUNING);
      const size = 100_003;
      const buffers = world.collectives.map((_, r) =>
        Float32Array.from({ length: size }, (_, i) => Math.sin(i * 0.37 + r) * 10 ** ((i % 7) - 3)),
      );
      const exact = new Float64Array(size);
      const magnitude = new Float64Array(size);
      for (const b of buffers) {
        b.forEach((v, i) => {
          exact[i] += v;
          magnitude[i] += Math.abs(v);
        });
      }
      await Promise.all(
        world.collectives.map((c, r) => c.allReduceSum(buffers[r], { compression })),
      );
      // At most n roundings to `bits` significant bits (unit roundoff 2^-bits), each
      // of a partial sum no larger than the sum of magnitudes.
      let worst = 0;
      for (let i = 0; i < size; i++) {
        worst = Math.max(
          worst,
          Math.abs(buffers[0][i] - exact[i]) / (n * (2 ** -bits * magnitude[i] + floor)),
        );
      }
      expect(worst).toBeLessThanOrEqual(1);
      expect(worst).toBeGreaterThan(0);
      for (const b of buffers) expectSameValues(b, buffers[0]);
    },
  );

  it('counts the bytes it sends', async () => {
    const n = 4;
    world = await impl.create(n, TUNING);
    const size = 1_000_003;
    const collectives = world.collectives;
    for (const compression of ['none', 'bf16', 'fp16'] as const) {
      const before = collectives.map((c) => c.stats.bytesSent);
      await Promise.all(
        collectives.map((c, r) => c.allReduceSum(rankData(r, size), { compression })),
      );
      const width = compression === 'none' ? 4 : 2;
      collectives.forEach((c, r) => {
        const sent = c.stats.bytesSent - before[r];
        if (impl.algorithm === 'star') {
          expect(sent).toBe(size * width);
          return;
        }
        // Ring: 2(N-1) segments, all but the one this rank completes and the one it
        // receives last; each segment is S/N rounded down or up.
        const seg = (s: number) => Math.floor(((s + 1) * size) / n) - Math.floor((s * size) / n);
        const mod = (x: number) => ((x % n) + n) % n;
        let expected = 0;
        for (let t = 0; t < 2 * (n - 1); t++) expected += seg(mod(r - t)) * width;
        expect(sent).toBe(expected);
        expect(Math.abs(sent - ((2 * (n - 1)) / n) * size * width)).toBeLessThanOrEqual(
          2 * n * width,
        );
      });
    }
  });

  it('rejects within the deadline, naming the rank, when a peer stalls', async () => {
    world = await impl.create(3, TUNING);
    const live = world.collectives.slice(0, 2);
    // Rank 2 never enters the all-reduce.
    const results = await Promise.all(
      live.map((c) => timeRejection(c.allReduceSum(rankData(c.rank, 10_000)))),
    );
    for (const [ms, error] of results) {
      expect(error).toBeInstanceOf(TransportError);
      expect(error.message).toMatch(/rank 2\b/);
      expect(ms).toBeLessThan(TUNING.timeoutMs + 1500);
    }
    // The collective stays broken with that error.
    await expect(live[0].barrier()).rejects.toThrow(results[0][1].message);
  });

  it('rejects within the deadline, naming the rank, when a peer dies', async () => {
    world = await impl.create(3, TUNING);
    const collectives = world.collectives;
    await Promise.all(collectives.map((c) => c.allReduceSum(rankData(c.rank, 100))));
    await world.kill(1);
    const live = [collectives[0], collectives[2]];
    const results = await Promise.all(
      live.map((c) => timeRejection(c.allReduceSum(rankData(c.rank, 10_000)))),
    );
    for (const [ms, error] of results) {
      expect(error).toBeInstanceOf(TransportError);
      expect(error.message).toMatch(/rank 1\b/);
      expect(ms).toBeLessThan(TUNING.timeoutMs + 1500);
    }
  });

  it('fails at once, naming both sides, when ranks disagree on the length', async () => {
    world = await impl.create(2, TUNING);
    const [a, b] = world.collectives;
    const results = await Promise.all([
      timeRejection(a.allReduceSum(new Float32Array(100))),
      timeRejection(b.allReduceSum(new Float32Array(101))),
    ]);
    for (const [ms, error] of results) {
      expect(error).toBeInstanceOf(TransportError);
      expect(error.message).toMatch(/100 elements/);
      expect(error.message).toMatch(/101 elements/);
      expect(ms).toBeLessThan(TUNING.timeoutMs / 2);
    }
  });

  it('fails at once when ranks call different operations', async () => {
    world = await impl.create(2, TUNING);
    const [a, b] = world.collectives;
    const results = await Promise.all([
      timeRejection(a.allReduceSum(new Float32Array(10))),
      // The root of a broadcast does not wait for anyone, so rank 1 must not be it.
      timeRejection(b.broadcast(new Float32Array(10), 0)),
    ]);
    for (const [ms, error] of results) {
      expect(error.message).toMatch(/broadcast/);
      expect(ms).toBeLessThan(TUNING.timeoutMs / 2);
    }
  });
});
