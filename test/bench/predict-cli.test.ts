// `tfjs-ddp bench predict` end to end on results files made from a known α and β: the
// fit recovers them, the predictions follow the model's equations, the check compares
// with the measured runs, and missing inputs are clear errors.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { allReduceMs } from '../../src/bench/cost-model.js';
import { ensureBuilt, errorLines, runCli } from '../cli/run-cli.js';

const fit = { alphaMs: 0.2, betaMsPerByte: 1 / 500_000 }; // 200 µs, 500 MB/s
const sizes = [1024, 65536, 1 << 20, 16 << 20];
let dir: string;

beforeAll(async () => {
  await ensureBuilt();
  dir = await mkdtemp(join(tmpdir(), 'bench-predict-'));
  for (const algo of ['ring', 'star'] as const) {
    const results = sizes.map((bytes) => ({ bytes, ms: allReduceMs(algo, fit, bytes, 2) }));
    await writeFile(
      join(dir, `allreduce-${algo}-none-n2.json`),
      JSON.stringify({ workers: 2, algo, compression: 'none', results }),
    );
  }
  const row = (workers: number, imagesPerSec: number, independentImagesPerSec: number) => ({
    workers,
    imagesPerSec,
    independentImagesPerSec,
    distributionEfficiency: imagesPerSec / independentImagesPerSec,
    allreduceMs: workers > 1 ? 3 : 0,
    stepMs: (workers * 32 * 1000) / imagesPerSec,
  });
  await writeFile(
    join(dir, 'scaling-lenet5-ring.json'),
    JSON.stringify({
      model: 'lenet5',
      allreduce: 'ring',
      batchSize: 32,
      results: [row(1, 320, 320), row(2, 500, 520)],
    }),
  );
});
afterAll(() => rm(dir, { recursive: true, force: true }));

it('fits α and β, predicts with the model, and checks against the measured runs', async () => {
  const r = await runCli([
    'bench',
    'predict',
    '--model',
    'lenet5',
    '--results',
    dir,
    '--max-workers',
    '8',
    '--accumulate',
    '1,2',
    '--speedup',
    '10',
    '--json',
  ]);
  expect(errorLines(r.stderr)).toEqual([]);
  expect(r.code).toBe(0);
  const { inputs, rows, checks } = JSON.parse(r.stdout);
  const models = JSON.parse((await runCli(['models', '--json'])).stdout);
  const lenet = models.find((m: { name: string }) => m.name === 'lenet5');
  expect(inputs.gradientBytes).toBe(4 * lenet.trainableParams);
  expect(inputs.computeMs).toBe(100); // the N = 1 step: 32 images at 320 images/s
  const ring = inputs.links.find(
    (l: { algo: string; compression: string }) => l.algo === 'ring' && l.compression === 'none',
  );
  expect(ring.alphaMs).toBeCloseTo(fit.alphaMs, 6);
  expect(ring.betaMsPerByte / fit.betaMsPerByte).toBeCloseTo(1, 6);
  const bf16 = inputs.links.find(
    (l: { algo: string; compression: string }) => l.algo === 'star' && l.compression === 'bf16',
  );
  expect(bf16.betaMsPerByte / fit.betaMsPerByte).toBeCloseTo(0.5, 6);
  expect(bf16.source).toMatch(/half the bytes/);

  // 2 scenarios of compute × (6 links + 2 ring links overlapped: not PowerSGD's) × 2
  // accumulations × N = 1, 2, 4, 8.
  expect(rows).toHaveLength(128);
  const S = inputs.gradientBytes;
  const t = 6 * fit.alphaMs + 1.5 * S * fit.betaMsPerByte; // ring, N = 4, one bucket
  const row = rows.find(
    (x: Record<string, unknown>) =>
      x.compute === 'faster' &&
      x.algo === 'ring' &&
      x.compression === 'none' &&
      !x.overlap &&
      x.accumulate === 2 &&
      x.workers === 4,
  );
  expect(row.computeMs).toBeCloseTo(10, 9);
  expect(row.allreduceMs).toBeCloseTo(t, 6);
  expect(row.imagesPerSec).toBeCloseTo((4 * 2 * 32 * 1000) / (20 + t), 4);
  expect(row.scalingEfficiency).toBeCloseTo(20 / (20 + t), 9);

  // PowerSGD (rank 4): its bytes and 2 operations per bucket on float32's link, plus its CPU time.
  const { rank, sentBytes, codecMs } = inputs.powerSgd;
  expect(rank).toBe(4);
  expect(sentBytes).toBeGreaterThan(0);
  expect(sentBytes).toBeLessThan(S / 2);
  expect(codecMs).toBeGreaterThan(0);
  const compressed = rows.find(
    (x: Record<string, unknown>) =>
      x.compute === 'faster' &&
      x.algo === 'ring' &&
      x.compression === 'powersgd' &&
      !x.overlap &&
      x.accumulate === 2 &&
      x.workers === 4,
  );
  const tp = 12 * fit.alphaMs + 1.5 * sentBytes * fit.betaMsPerByte;
  expect(compressed.allreduceMs).toBeCloseTo(tp, 6);
  expect(compressed.stepMs).toBeCloseTo(20 + codecMs + tp, 6);

  // No bench compute results: the overlap scenarios assume a profile and say so. lenet5 fits one
  // bucket, final only when the backward pass ends: overlap has nothing to hide.
  expect(inputs.overlap.source).toMatch(/^assumed \(no bench compute results .* of lenet5\)/);
  expect(inputs.overlap.forwardShare).toBeCloseTo(1 / 3, 12);
  expect(inputs.overlap.backwardShare).toBeCloseTo(2 / 3, 12);
  expect(inputs.overlap.buckets).toEqual([{ readyFraction: 1, bytes: S }]);
  const overlapped = rows.find(
    (x: Record<string, unknown>) =>
      x.compute === 'faster' &&
      x.algo === 'ring' &&
      x.compression === 'none' &&
      x.overlap &&
      x.accumulate === 2 &&
      x.workers === 4,
  );
  expect(overlapped.allreduceMs).toBeCloseTo(t, 9);
  expect(overlapped.stepMs).toBeCloseTo(row.stepMs, 9);
  expect(rows.some((x: Record<string, unknown>) => x.algo === 'star' && x.overlap)).toBe(false);

  // N = 2: the independent runs took 2 × 32 / 520 s per step; the model adds its all-reduce.
  expect(checks).toHaveLength(1);
  const contended = (2 * 32 * 1000) / 520;
  const t2 = 2 * fit.alphaMs + S * fit.betaMsPerByte;
  expect(checks[0].predictedAllreduceMs).toBeCloseTo(t2, 6);
  expect(checks[0].predictedImagesPerSec).toBeCloseTo((2 * 32 * 1000) / (contended + t2), 4);
  expect(checks[0].measuredImagesPerSec).toBe(500);
  const md = await readFile(join(dir, 'predict-lenet5.md'), 'utf8');
  expect(md).toContain('Check against the measured runs');
  expect(md).toContain(
    '| N | ring | ring+overlap | ring+bf16 | ring+bf16+overlap | ring+powersgd | star | star+bf16 |',
  );
  expect(await readFile(join(dir, 'predict-lenet5.svg'), 'utf8')).toMatch(/^<svg/);
});

it('overlaps the all-reduce with the backward pass as a bench compute profile says', async () => {
  // Forward 20 ms and backward 50 ms of a 100 ms step; lenet5's one bucket is final 40 ms into
  // the backward pass (its first layer's kernel), at 80%.
  const profile = join(dir, 'profile.json');
  const parameterReadyMs = [40, 39, 30, 28, 20, 18, 10, 8, 2, 1];
  await writeFile(
    profile,
    JSON.stringify([
      {
        model: 'lenet5',
        backend: 'wasm',
        batch: 32,
        stepMs: [100, 100, 100],
        forwardMs: [20, 21, 20],
        backwardMs: [50, 50, 49],
        parameterReadyMs,
      },
    ]),
  );
  // A run that overlapped: the check predicts the part of the all-reduce left after the backward
  // pass, which is what its timings report.
  const measured = join(dir, 'overlapped');
  await writeFile(
    measured,
    JSON.stringify({
      model: 'lenet5',
      allreduce: 'ring',
      overlap: true,
      batchSize: 32,
      results: [
        {
          workers: 1,
          imagesPerSec: 320,
          independentImagesPerSec: 320,
          allreduceMs: 0,
          stepMs: 100,
        },
        {
          workers: 2,
          imagesPerSec: 500,
          independentImagesPerSec: 520,
          distributionEfficiency: 500 / 520,
          allreduceMs: 1,
          stepMs: 128,
        },
      ],
    }),
  );
  const r = await runCli([
    ...['bench', 'predict', '--model', 'lenet5', '--results', dir, '--compute-results', profile],
    ...['--max-workers', '4', '--accumulate', '1', '--speedup', '10', '--scaling', measured],
    '--json',
  ]);
  expect(errorLines(r.stderr)).toEqual([]);
  expect(r.code).toBe(0);
  const { inputs, rows, checks } = JSON.parse(r.stdout);
  // The independent runs' step C = 2·32 images at 520/s; the bucket is final at 80% of the
  // backward pass (0.5·C): the transfer T2 shows only where it outlasts the remaining 0.1·C.
  const C = (2 * 32 * 1000) / 520;
  const T2 = 2 * fit.alphaMs + inputs.gradientBytes * fit.betaMsPerByte;
  expect(checks).toHaveLength(1);
  expect(checks[0].overlap).toBe(true);
  expect(checks[0].predictedAllreduceMs).toBeCloseTo(Math.max(0, T2 - 0.1 * C), 6);
  expect(checks[0].predictedStepMs).toBeCloseTo(C + Math.max(0, T2 - 0.1 * C), 6);
  expect(inputs.overlap.source).toMatch(
    /^profile\.json \(lenet5 at batch 32 on wasm: forward 20 ms, backward 50 ms of a 100 ms step\)/,
  );
  expect(inputs.overlap.forwardShare).toBeCloseTo(0.2, 12);
  expect(inputs.overlap.backwardShare).toBeCloseTo(0.5, 12);
  expect(inputs.overlap.buckets).toEqual([{ readyFraction: 0.8, bytes: inputs.gradientBytes }]);
  // Compute 10× faster: C = 10 ms, F = 2, B = 5, the rest 3. Ring, N = 4: the bucket's transfer
  // T starts 4 ms into the backward pass; step = F + max(B, 4 + T) + 3.
  const T = 6 * fit.alphaMs + 1.5 * inputs.gradientBytes * fit.betaMsPerByte;
  const pick = (overlap: boolean) =>
    rows.find(
      (x: Record<string, unknown>) =>
        x.compute === 'faster' &&
        x.algo === 'ring' &&
        x.compression === 'none' &&
        x.overlap === overlap &&
        x.workers === 4,
    );
  expect(pick(true).stepMs).toBeCloseTo(2 + Math.max(5, 4 + T) + 3, 9);
  expect(pick(false).stepMs).toBeCloseTo(10 + T, 9);
  expect(pick(true).scalingEfficiency).toBeCloseTo(10 / (5 + Math.max(5, 4 + T)), 9);

  const missing = await runCli([
    ...['bench', 'predict', '--model', 'vgg16', '--results', dir, '--compute-results', profile],
    ...['--compute-ms', '50', '--batch-size', '32'],
  ]);
  expect(missing.code).toBe(2);
  expect(errorLines(missing.stderr)[0]).toMatch(
    /no gradient readiness of vgg16: run tfjs-ddp bench compute --models vgg16/,
  );
});

it('says which benchmark to run when its results are missing', async () => {
  const empty = await mkdtemp(join(tmpdir(), 'bench-predict-empty-'));
  try {
    const noStep = await runCli(['bench', 'predict', '--model', 'vgg16', '--results', empty]);
    expect(noStep.code).toBe(2);
    expect(errorLines(noStep.stderr)[0]).toMatch(/run tfjs-ddp bench scaling --model vgg16/);
    const noLinks = await runCli([
      'bench',
      'predict',
      '--model',
      'vgg16',
      '--results',
      empty,
      '--compute-ms',
      '50',
      '--batch-size',
      '32',
    ]);
    expect(noLinks.code).toBe(2);
    expect(errorLines(noLinks.stderr)[0]).toMatch(/run tfjs-ddp bench allreduce --algo ring/);
  } finally {
    await rm(empty, { recursive: true, force: true });
  }
});

it('--link fits only that link and checks every compression measured on it', async () => {
  const linked = await mkdtemp(join(tmpdir(), 'bench-predict-link-'));
  try {
    // A slow link (50 ms, 6 MB/s) measured with the ring only, next to loopback results that
    // must not enter its fit.
    const slow = { alphaMs: 50, betaMsPerByte: 1 / 6000 };
    const write = (name: string, value: unknown) =>
      writeFile(join(linked, name), JSON.stringify(value));
    for (const [algo, f, link] of [
      ['ring', fit, undefined],
      ['star', fit, undefined],
      ['ring', slow, { rate: '50mbit' }],
    ] as const) {
      await write(`allreduce-${algo}-none-n2${link ? '-50mbit' : ''}.json`, {
        workers: 2,
        algo,
        compression: 'none',
        link,
        results: sizes.map((bytes) => ({ bytes, ms: allReduceMs(algo, f, bytes, 2) })),
      });
    }
    const report = (compression: string, stepMs: number) => ({
      model: 'lenet5',
      allreduce: 'ring',
      compression,
      link: '50mbit',
      batchSize: 32,
      results: [
        { workers: 1, imagesPerSec: 320, independentImagesPerSec: 320, stepMs: 100 },
        {
          workers: 2,
          imagesPerSec: 64_000 / stepMs,
          independentImagesPerSec: 500,
          distributionEfficiency: 64_000 / stepMs / 500,
          allreduceMs: stepMs - 128,
          stepMs,
        },
      ],
    });
    await write('scaling-lenet5-ring-50mbit.json', report('none', 300));
    await write('scaling-lenet5-ring-powersgd2-50mbit.json', report('powersgd:2', 250));
    // A loopback run of the same model: not checked against the slow link.
    await write('scaling-lenet5-ring.json', { ...report('none', 130), link: undefined });
    const r = await runCli([
      ...['bench', 'predict', '--model', 'lenet5', '--results', linked, '--link', '50mbit'],
      ...['--max-workers', '2', '--accumulate', '1', '--powersgd-rank', '4', '--json'],
    ]);
    expect(errorLines(r.stderr)).toEqual([]);
    expect(r.code).toBe(0);
    const { inputs, checks } = JSON.parse(r.stdout);
    expect(inputs.link).toBe('50mbit');
    // No star all-reduce measured on that link: its scenarios are left out, not made up.
    expect(inputs.links.map((l: { algo: string }) => l.algo)).toEqual(['ring', 'ring', 'ring']);
    const ring = inputs.links.find(
      (l: { algo: string; compression: string }) => l.algo === 'ring' && l.compression === 'none',
    );
    expect(ring.alphaMs).toBeCloseTo(slow.alphaMs, 3);
    expect(ring.betaMsPerByte / slow.betaMsPerByte).toBeCloseTo(1, 4);
    expect(inputs.powerSgdChecked.map((p: { rank: number }) => p.rank)).toEqual([4, 2]);

    expect(checks.map((c: { compression: string }) => c.compression)).toEqual([
      'none',
      'powersgd:2',
    ]);
    const [plain, compressed] = checks;
    const contended = (2 * 32 * 1000) / 500;
    const S = inputs.gradientBytes;
    // lenet5 fits one bucket: 2 latencies and S each way for a 2-rank ring.
    const t = 2 * ring.alphaMs + S * ring.betaMsPerByte;
    expect(plain.predictedAllreduceMs).toBeCloseTo(t, 6);
    expect(plain.predictedStepMs).toBeCloseTo(contended + t, 6);
    expect(plain.measuredStepMs).toBe(300);
    expect(plain.stepError).toBeCloseTo((contended + t) / 300 - 1, 9);
    // PowerSGD: its bytes in 2 operations, and its CPU time, on the float32 link.
    const p2 = inputs.powerSgdChecked[1];
    const tp = 4 * ring.alphaMs + p2.sentBytes * ring.betaMsPerByte + p2.codecMs;
    expect(compressed.predictedAllreduceMs).toBeCloseTo(tp, 6);
    expect(compressed.predictedStepMs).toBeCloseTo(contended + tp, 6);
    const md = await readFile(join(linked, 'predict-lenet5-50mbit.md'), 'utf8');
    expect(md).toContain('(links of 50mbit)');
    expect(md).toMatch(
      /\| powersgd:2 \| 2 \| 250 \/ \d+ \| [+-]\d+\.\d% \((within|OUTSIDE) 15%\) \|/,
    );

    // No results measured on that link: the error names the command that makes them.
    const other = await runCli([
      ...['bench', 'predict', '--model', 'lenet5', '--results', linked, '--link', '1gbit'],
      ...['--compute-ms', '50', '--batch-size', '32'],
    ]);
    expect(other.code).toBe(2);
    expect(errorLines(other.stderr)[0]).toMatch(
      /no all-reduce results for ring on 1gbit links .* --link 1gbit/,
    );
  } finally {
    await rm(linked, { recursive: true, force: true });
  }
});
