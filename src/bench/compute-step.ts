import * as tf from '@tensorflow/tfjs-core';
import { type BackendRequest, initBackend } from '../shared/backend/select-backend.js';
import { planBuckets } from '../shared/collectives/bucket-plan.js';
import { defaultRecipeFor } from '../shared/config/recipes.js';
import type { Batch } from '../shared/data/batch.js';
import { buildModel, countParams, isModelName } from '../shared/models/zoo.js';
import { TrainStep } from '../shared/training/train-step.js';
import { median } from './bandwidth.js';
import { ReadinessRecorder } from './gradient-readiness.js';

/**
 * One model's compute benchmark, run by `bench compute` in a process of its own (so that its
 * peak RSS is its own), as the hidden command
 * `tfjs-ddp bench compute-step <model> <backend> <batch> <warmup> <steps> [profile]`.
 * Times full training steps (forward, loss, gradients, flattening, optimiser apply) through the
 * same TrainStep a worker uses, on a synthetic batch, with the model's recipe optimiser, and
 * through the gradient tap: when each bucket of the reducer's default plan could have started its
 * all-reduce. Prints one JSON object (StepMeasurement) on stdout; with `profile`, also the
 * heaviest kernels of one step on stderr.
 */
export interface StepMeasurement {
  model: string;
  backend: string;
  device: string;
  batch: number;
  params: number;
  warmupSteps: number;
  /** Wall time of each timed step, and of its two halves. */
  stepMs: number[];
  /**
   * CPU time of each timed step (user + system, this process): what the step costs on an idle
   * machine (the wasm backend computes on one thread), where wall time also counts the time
   * other processes take the CPU.
   */
  cpuMs: number[];
  gradientsMs: number[];
  applyMs: number[];
  /**
   * Of gradientsMs: to the loss, and from there to the last gradient (the rest: flattening).
   * This and the next two are absent from results written before the gradient tap.
   */
  forwardMs?: number[];
  backwardMs?: number[];
  /**
   * Median over the timed steps of when each trainable weight's gradient was final, ms after the
   * backward pass started: `bench predict` places any bucket plan on it.
   */
  parameterReadyMs?: number[];
  /**
   * The reducer's default plan (a 1 MiB bucket of the last layers, then 25 MiB ones towards the
   * first) and, per timed step, when each bucket's last gradient was final (ms after the
   * backward pass started): when its all-reduce could start.
   */
  buckets?: BucketReadiness[];
  /** process.resourceUsage().maxRSS at the end, in MiB: includes the wasm heap, which never shrinks. */
  peakRssMiB: number;
  /** Tensors alive after the last step minus after the first: 0 unless something leaks. */
  tensorGrowth: number;
  kernels?: KernelCost[];
}

export interface BucketReadiness {
  index: number;
  firstParameter: number;
  endParameter: number;
  bytes: number;
  readyMs: number[];
}

export interface KernelCost {
  name: string;
  calls: number;
  ms: number;
}

export async function runComputeStep(argv: string[]): Promise<void> {
  const [model, backendName, batchText, warmupText, stepsText, profile] = argv;
  if (!isModelName(model)) throw new Error(`unknown model ${model}`);
  const info = await initBackend(backendName as BackendRequest);
  const batchSize = Number(batchText);
  const recipe = defaultRecipeFor(model);
  const net = buildModel(model, { seed: 1 });
  const step = new TrainStep({
    model: net,
    optimizer: recipe.optimizer,
    weightDecay: recipe.weightDecay,
    seed: 1,
  });
  const batch = syntheticBatch(batchSize);
  const indices = Array.from({ length: batchSize }, (_, i) => i);
  const grads = new Float32Array(step.trainableLayout.size);
  const plan = planBuckets(step.trainableLayout.sizes);
  const recorder = new ReadinessRecorder(step.trainableLayout.sizes.length);
  const runStep = (): [number, number, number] => {
    const c0 = process.cpuUsage();
    recorder.start();
    const t0 = performance.now();
    step.computeGradients(batch, indices, 0, grads, recorder);
    const t1 = performance.now();
    step.applyGradients(grads, recipe.optimizer.lr);
    const t2 = performance.now();
    const cpu = process.cpuUsage(c0);
    return [t1 - t0, t2 - t1, (cpu.user + cpu.system) / 1000];
  };

  const warmup = Number(warmupText);
  for (let i = 0; i < warmup; i++) runStep();
  const tensorsBefore = tf.memory().numTensors;
  const forwardMs: number[] = [];
  const backwardMs: number[] = [];
  const buckets: BucketReadiness[] = plan.map((b) => ({
    index: b.index,
    firstParameter: b.firstParameter,
    endParameter: b.endParameter,
    bytes: 4 * (b.end - b.start),
    readyMs: [],
  }));
  const result: StepMeasurement = {
    model,
    backend: info.name,
    device: info.device,
    batch: batchSize,
    params: countParams(net).totalParams,
    warmupSteps: warmup,
    stepMs: [],
    cpuMs: [],
    gradientsMs: [],
    applyMs: [],
    forwardMs,
    backwardMs,
    buckets,
    peakRssMiB: 0,
    tensorGrowth: 0,
  };
  const parameterReady: number[][] = [];
  for (let i = 0; i < Number(stepsText); i++) {
    const [g, a, cpu] = runStep();
    result.gradientsMs.push(round(g));
    result.applyMs.push(round(a));
    result.stepMs.push(round(g + a));
    result.cpuMs.push(round(cpu));
    const pass = recorder.result(plan);
    forwardMs.push(round(pass.forwardMs));
    backwardMs.push(round(pass.backwardMs));
    for (const [b, ms] of pass.bucketReadyMs.entries()) buckets[b].readyMs.push(round(ms));
    parameterReady.push(pass.parameterReadyMs);
  }
  result.parameterReadyMs = step.trainableLayout.sizes.map((_, p) =>
    round(median(parameterReady.map((ready) => ready[p]))),
  );
  result.tensorGrowth = tf.memory().numTensors - tensorsBefore;
  if (profile === 'profile') result.kernels = await profileStep(runStep);
  result.peakRssMiB = round(process.resourceUsage().maxRSS / 1024);
  step.dispose();
  net.dispose();
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

/** Kernel time of one step, summed by kernel name, heaviest first. */
async function profileStep(runStep: () => void): Promise<KernelCost[]> {
  const profile = await tf.profile(() => {
    runStep();
  });
  const byName = new Map<string, KernelCost>();
  for (const k of profile.kernels) {
    // customGrad ops (e.g. fusedConv2d__op) wrap kernels that are listed on their own.
    if (k.name.endsWith('__op')) continue;
    const cost = byName.get(k.name) ?? { name: k.name, calls: 0, ms: 0 };
    cost.calls++;
    const timing = await k.kernelTimeMs;
    cost.ms += typeof timing === 'number' ? timing : 0;
    byName.set(k.name, cost);
  }
  return [...byName.values()].map((c) => ({ ...c, ms: round(c.ms) })).sort((a, b) => b.ms - a.ms);
}

/** Pixels uniform in [0, 1) (the 'scale' preprocessing) and uniform labels, fixed by a seed. */
function syntheticBatch(count: number): Batch {
  let state = 12345;
  const next = () => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    return state / 2 ** 32;
  };
  const xs = new Float32Array(count * 32 * 32 * 3).map(next);
  const labels = new Int32Array(count).map(() => Math.floor(next() * 10));
  return { count, xs, labels };
}

function round(x: number): number {
  return Math.round(x * 10) / 10;
}
