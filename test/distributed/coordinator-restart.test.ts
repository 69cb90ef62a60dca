// The coordinator killed mid-run and restarted (issue 10): workers that lost it keep their
// replicas and rejoin the coordinator restarted with `--resume auto` on the same run folder;
// it goes on from their state (or, when they restarted too, from its checkpoint), and the
// final weights equal an undisturbed run's. A worker whose coordinator never comes back
// exits after --coordinator-grace. Real processes on loopback, real gRPC, real files.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { writeSyntheticCifar } from '../helpers/synthetic-cifar.js';
import {
  ensureBuilt,
  errorLines,
  finalWeights,
  lenet5RunFlags,
  relativeError,
  train,
  waitUntil,
} from './cli-runs.js';
import { ElasticRun } from './elastic-run.js';

let work: string;
let data: string;
let reference: Float32Array;
let single: string;
const runs: ElasticRun[] = [];

const STEPS = 60;
const GLOBAL_BATCH = 24;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ddp-restart-'));
  data = join(work, 'cifar');
  await writeSyntheticCifar(data, { perBatch: 80 });
  await ensureBuilt();
  single = join(work, 'single');
  await train([
    ...lenet5RunFlags(data, STEPS),
    '--batch-size',
    String(GLOBAL_BATCH),
    '--out',
    single,
  ]);
  reference = await finalWeights(single);
}, 300_000);

afterEach(() => {
  for (const run of runs.splice(0)) run.killAll();
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** The tensors of a run's exported model (<run>/model), by name. */
async function exportedTensors(runDir: string): Promise<Map<string, Float32Array>> {
  const dir = join(runDir, 'model');
  const manifest = JSON.parse(await readFile(join(dir, 'model.json'), 'utf8')) as {
    weightsManifest: { paths: string[]; weights: { name: string; shape: number[] }[] }[];
  };
  const tensors = new Map<string, Float32Array>();
  for (const group of manifest.weightsManifest) {
    const bytes = Buffer.concat(await Promise.all(group.paths.map((p) => readFile(join(dir, p)))));
    const floats = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
    let offset = 0;
    for (const { name, shape } of group.weights) {
      const size = shape.reduce((a, b) => a * b, 1);
      tensors.set(name, floats.slice(offset, offset + size));
      offset += size;
    }
  }
  return tensors;
}

/** The final weights equal the undisturbed run's: relative error below 1e-5 in every tensor. */
async function expectReferenceWeights(runDir: string): Promise<void> {
  expect(relativeError(await finalWeights(runDir), reference)).toBeLessThan(1e-5);
  const expected = await exportedTensors(single);
  const actual = await exportedTensors(runDir);
  expect([...actual.keys()]).toEqual([...expected.keys()]);
  for (const [name, tensor] of expected) {
    expect(relativeError(actual.get(name) as Float32Array, tensor), name).toBeLessThan(1e-5);
  }
}

/** A port free now: a restarted coordinator must listen where the workers dial. */
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

/**
 * A TCP link to the coordinator at `port` that can stop delivering what the coordinator
 * sends on the connections open now, while still carrying what the worker sends; when the
 * coordinator's side closes, so does the worker's. Later connections are carried both ways.
 */
async function oneWayLink(port: number) {
  const held = new Set<Socket>();
  const open = new Set<Socket>();
  const server: Server = createServer((worker) => {
    const coordinator = connect(port, '127.0.0.1');
    open.add(worker);
    worker.on('data', (d) => coordinator.write(d));
    coordinator.on('data', (d) => {
      if (!held.has(worker)) worker.write(d);
    });
    const end = () => {
      open.delete(worker);
      worker.destroy();
      coordinator.destroy();
    };
    for (const socket of [worker, coordinator]) {
      socket.on('close', end);
      socket.on('error', end);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    server,
    port: (server.address() as { port: number }).port,
    stopDelivering: () => {
      for (const s of open) held.add(s);
    },
  };
}

/** The coordinator's flags: the same for the first start and the restart. */
function coordinatorFlags(port: number, checkpointEvery: number): string[] {
  return [
    ...lenet5RunFlags(data, STEPS),
    '--world-size',
    '2',
    '--global-batch-size',
    String(GLOBAL_BATCH),
    '--checkpoint-every',
    String(checkpointEvery),
    '--step-timeout',
    '10',
    '--port',
    String(port),
  ];
}

/** A 2-worker run on a fixed port, `steps` steps done when it returns. */
async function runUntil(
  name: string,
  steps: number,
  workerFlags: string[] = [],
  checkpointEvery = 10,
  coordinatorExtra: string[] = [],
) {
  const port = await freePort();
  const out = join(work, name);
  // --resume auto from the start, as the coordinator's Job has it.
  const run = await ElasticRun.start(out, data, [
    ...coordinatorFlags(port, checkpointEvery),
    '--resume',
    'auto',
    ...coordinatorExtra,
  ]);
  runs.push(run);
  const workers = [run.addWorker(workerFlags), run.addWorker(workerFlags)];
  expect(await run.untilSteps(steps), run.coordinator.stderr().slice(-3000)).toBe(true);
  return { run, port, out, workers };
}

/** Restarts the coordinator on `out` as Kubernetes would: same flags, `--resume auto`. */
async function restart(out: string, port: number, checkpointEvery = 10) {
  const startedAt = Date.now();
  const run = await ElasticRun.start(out, data, [
    ...coordinatorFlags(port, checkpointEvery),
    '--resume',
    'auto',
  ]);
  runs.push(run);
  return { run, startedAt, listeningAt: Date.now() };
}

describe('a coordinator killed mid-run and restarted', () => {
  it.each([
    ['ring', []],
    ['star', ['--allreduce', 'star']],
  ])(
    '%s: re-admits the workers at the step they hold, and the weights equal an undisturbed run’s',
    async (name, flags) => {
      const first = await runUntil(`held-${name}`, 25, [], 10, flags);
      first.run.coordinator.child.kill('SIGKILL');
      await first.run.coordinator.exited;
      const { run, startedAt, listeningAt } = await restart(first.out, first.port);
      const code = await run.coordinator.exited;
      const log = run.coordinator.stderr();
      expect(code, log.slice(-4000)).toBe(0);
      expect(errorLines(log)).toEqual([]);
      const records = run.metrics();
      const changes = run.membershipChanges();
      expect(changes).toHaveLength(1);
      const [change] = changes;
      expect(change.cause, JSON.stringify(change)).toMatch(/kept the same state after step \d+/);
      expect(change.step).toBeGreaterThanOrEqual(25);
      expect(change).toMatchObject({ workers: 2, ranks: [0, 1], generation: 1 });
      // Every step once: the steps the kept state holds are not trained again.
      const steps = records.flatMap((r) => (r.type === 'step' ? [r.step] : []));
      expect(steps).toEqual(Array.from({ length: STEPS }, (_, i) => i + 1));
      const after = records.slice(records.findIndex((r) => r.type === 'membership'));
      const firstNew = after.find((r) => r.type === 'step');
      expect(firstNew).toMatchObject({ step: change.step + 1 });
      const firstNewAt = Date.parse((firstNew as { time: string }).time);
      console.log(
        `held: restarted at step ${change.step}; the first new step ${firstNewAt - startedAt} ms after the coordinator's restart, ${firstNewAt - listeningAt} ms after it listened`,
      );
      await expectReferenceWeights(first.out);
      for (const w of first.workers) expect(await w.exited, w.stderr().slice(-2000)).toBe(0);
    },
    120_000,
  );

  it('has a worker that missed the last commit apply it, when the coordinator died while sending it', async () => {
    // One worker reaches the coordinator through a link that stops delivering (a partition in
    // one direction): its step's results still arrive, the coordinator commits the step to
    // both, and only the other worker hears it and goes on; then the coordinator dies.
    const port = await freePort();
    const out = join(work, 'missed-commit');
    const run = await ElasticRun.start(out, data, [
      ...coordinatorFlags(port, 10),
      '--resume',
      'auto',
    ]);
    runs.push(run);
    const link = await oneWayLink(port);
    try {
      const workers = [run.addWorker(), run.addWorker(['--coordinator', `127.0.0.1:${link.port}`])];
      // Between checkpoints (every 10 steps): the partitioned worker has its next plan.
      expect(await run.untilSteps(23), run.coordinator.stderr().slice(-3000)).toBe(true);
      link.stopDelivering();
      // The run stalls within a step or two: the other worker waits for it in its all-reduce.
      let seen = -1;
      const stalled = () => {
        const before = seen;
        seen = run.stepsDone();
        return seen === before;
      };
      expect(await waitUntil(stalled, 10_000, 1000)).toBe(true);
      expect(seen).toBeLessThan(30);
      run.coordinator.child.kill('SIGKILL');
      await run.coordinator.exited;
      const missed = /with step \d+ reduced, its commit not received/;
      expect(
        await waitUntil(() => missed.test(workers[1].stderr()), 10_000),
        workers[1].stderr().slice(-3000),
      ).toBe(true);

      const { run: restarted } = await restart(out, port);
      const code = await restarted.coordinator.exited;
      expect(code, restarted.coordinator.stderr().slice(-4000)).toBe(0);
      const [change, ...more] = restarted.membershipChanges();
      expect(more).toEqual([]);
      expect(change.cause).toMatch(
        /kept the same state after step \d+ \(checkpoint: step 20\) and go on from it; rank \d applies step \d+, whose commit the previous coordinator sent to the others only/,
      );
      const steps = restarted.metrics().flatMap((r) => (r.type === 'step' ? [r.step] : []));
      expect(steps).toEqual(Array.from({ length: STEPS }, (_, i) => i + 1));
      await expectReferenceWeights(out);
      for (const w of workers) expect(await w.exited, w.stderr().slice(-2000)).toBe(0);
    } finally {
      link.server.close();
    }
  }, 120_000);

  it('goes on from the workers’ state when it restarted before the first checkpoint', async () => {
    // No checkpoint before the end of the run: the restarted coordinator starts in a folder
    // with none (--resume auto), and finds its workers holding the run's state.
    const first = await runUntil('no-checkpoint', 5, [], STEPS);
    first.run.coordinator.child.kill('SIGKILL');
    await first.run.coordinator.exited;
    const { run } = await restart(first.out, first.port, STEPS);
    const code = await run.coordinator.exited;
    expect(code, run.coordinator.stderr().slice(-4000)).toBe(0);
    const [change, ...more] = run.membershipChanges();
    expect(more).toEqual([]);
    expect(change.cause).toMatch(/kept the same state after step \d+ \(no checkpoint yet\)/);
    // The first coordinator's records are kept up to there, and every step is logged once.
    const steps = run.metrics().flatMap((r) => (r.type === 'step' ? [r.step] : []));
    expect(steps).toEqual(Array.from({ length: STEPS }, (_, i) => i + 1));
    await expectReferenceWeights(first.out);
    for (const w of first.workers) expect(await w.exited, w.stderr().slice(-2000)).toBe(0);
  }, 120_000);

  it('loads its checkpoint into workers that restarted too', async () => {
    const first = await runUntil('restarted', 25);
    for (const p of [first.run.coordinator, ...first.workers]) p.child.kill('SIGKILL');
    await Promise.all([first.run.coordinator, ...first.workers].map((p) => p.exited));
    const { run } = await restart(first.out, first.port);
    const workers = [run.addWorker(), run.addWorker()];
    const code = await run.coordinator.exited;
    expect(code, run.coordinator.stderr().slice(-4000)).toBe(0);
    expect(run.membershipChanges()).toEqual([]);
    expect(run.coordinator.stderr()).toMatch(/resuming lenet5/);
    await expectReferenceWeights(first.out);
    for (const w of workers) expect(await w.exited, w.stderr().slice(-2000)).toBe(0);
  }, 120_000);

  it('a worker whose coordinator never comes back exits after --coordinator-grace', async () => {
    const first = await runUntil('gone', 5, ['--coordinator-grace', '2']);
    first.run.coordinator.child.kill('SIGKILL');
    const killedAt = Date.now();
    for (const w of first.workers) {
      const code = await w.exited;
      const seconds = (Date.now() - killedAt) / 1000;
      expect(code, w.stderr().slice(-2000)).not.toBe(0);
      expect(errorLines(w.stderr()).join('\n')).toMatch(
        /the coordinator at 127\.0\.0\.1:\d+ was gone for [23] s \(--coordinator-grace 2 s\)/,
      );
      expect(seconds).toBeGreaterThanOrEqual(2);
      expect(seconds).toBeLessThan(10);
    }
  }, 120_000);
});
