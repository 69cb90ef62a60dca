import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { nowMs } from '../coordinator/observe/run-events.js';
import { RunObservers } from '../coordinator/observe/run-observers.js';
import type { StepMetrics } from '../gen/tfjs_ddp/v1/coordinator.js';

/**
 * What seeing a run costs the coordinator per step, measured directly (CPU time, so that a
 * loaded machine does not hide it in the noise of whole steps):
 * `node dist/src/bench/observe-overhead.js [steps] [ranks]`. Feeds RunObservers with the HTTP
 * server on (dashboard state, Prometheus registry) and the trace on, as the loop does per
 * step: one step event with `ranks` ranks' metrics and the plan and collect spans; then
 * times a scrape of /metrics plus one dashboard state (what a scrape and an open page cost,
 * at most once a second). Prints µs per step and ms per scrape.
 */
const steps = Number(process.argv[2] ?? 20_000);
const ranks = Number(process.argv[3] ?? 2);
const dir = mkdtempSync(join(tmpdir(), 'tfjs-ddp-observe-bench-'));
const observers = await RunObservers.start({
  httpPort: 7199,
  httpHost: '127.0.0.1',
  trace: { first: 1, last: Number.POSITIVE_INFINITY },
});
observers.openTrace(dir);
observers.events.emit({
  type: 'run-started',
  time: nowMs(),
  runDir: dir,
  config: { model: 'bench' },
  worldSize: ranks,
  totalSteps: steps,
  stepsPerEpoch: 1000,
  globalBatch: 64,
  startStep: 0,
  gradientBytes: 250_000,
  allReduce: 'ring',
});
const metrics = (step: number): StepMetrics[] =>
  Array.from({ length: ranks }, () => ({
    generation: 1,
    step,
    epoch: 0,
    loss: 1,
    correct: 10,
    count: 32,
    skipped: false,
    skipReason: '',
    timings: {
      computeMs: 100,
      allReduceMs: 10,
      waitMs: 5,
      dataMs: 1,
      applyMs: 2,
      startUnixMs: nowMs() - 120,
      barrierMs: 2,
      sentUnixMs: nowMs(),
      buckets: [{ index: 0, startMs: 0, endMs: 10, bytes: 250_000 }],
    },
  }));
const server = `http://127.0.0.1:7199`;
let renderMs = 0;
const cpu = process.cpuUsage();
const start = performance.now();
for (let step = 0; step < steps; step++) {
  const t = nowMs();
  observers.span('plan', step, t);
  observers.stepCollected(
    {
      step: step + 1,
      epoch: 0,
      loss: 1,
      accuracy: 0.5,
      images: 64,
      imagesPerSec: 500,
      lr: 0.01,
      allReduceBytesPerRank: 250_000,
      skipped: false,
    },
    metrics(step),
    nowMs(),
  );
  observers.span('collect', step + 1, t);
}
const used = process.cpuUsage(cpu);
const wallMs = performance.now() - start;
// Then what one scrape of /metrics and one dashboard update cost, with the run's full state.
const SCRAPES = 20;
for (let i = 0; i < SCRAPES; i++) {
  const r = performance.now();
  await (await fetch(`${server}/metrics`)).text();
  await (await fetch(`${server}/api/state`)).text();
  renderMs += performance.now() - r;
}
await observers.close();
rmSync(dir, { recursive: true, force: true });
console.log(
  JSON.stringify({
    steps,
    ranks,
    wallUsPerStep: Number(((1000 * wallMs) / steps).toFixed(1)),
    cpuUsPerStep: Number(((used.user + used.system) / steps).toFixed(1)),
    scrapeAndStateMsEach: Number((renderMs / SCRAPES).toFixed(2)),
  }),
);
