/**
 * The configuration a chaos scenario runs: small enough that a run takes seconds (lenet5 on the
 * synthetic dataset, on wasm), SGD with momentum so that a replica that applied a step the
 * others did not would show in the final weights. Two scenarios of the same shape share one
 * reference run.
 */
export interface RunShape {
  workers: number;
  steps: number;
  /** Images per step over all workers (re-sharded over whoever is there). */
  globalBatch: number;
  checkpointEvery: number;
  /** --step-timeout in seconds: how long a silent worker is waited for. */
  stepTimeoutS: number;
  valSize: number;
  evalBatchSize: number;
}

export const SMALL_RUN: RunShape = {
  workers: 3,
  steps: 24,
  globalBatch: 48,
  checkpointEvery: 4,
  stepTimeoutS: 4,
  valSize: 60,
  evalBatchSize: 60,
};

/** The flags that define the training itself (what the reference must share). */
export function trainingFlags(shape: RunShape): string[] {
  return [
    '--model',
    'lenet5',
    '--dataset',
    'synthetic',
    '--steps',
    String(shape.steps),
    '--optimizer',
    'sgd',
    '--lr',
    '0.05',
    '--momentum',
    '0.9',
    '--seed',
    '7',
    '--val-size',
    String(shape.valSize),
    '--eval-batch-size',
    String(shape.evalBatchSize),
    '--backend',
    'wasm',
    '--http-port',
    '0',
  ];
}

/** `coordinator` flags of the shape (without --out and --port). */
export function distributedFlags(shape: RunShape): string[] {
  return [
    ...runFlags(shape),
    '--world-size',
    String(shape.workers),
    '--join-timeout',
    '60',
    '--bind-host',
    '127.0.0.1',
  ];
}

/** `train --workers N` flags of the shape (without --out). */
export function launcherFlags(shape: RunShape): string[] {
  return [...runFlags(shape), '--workers', String(shape.workers)];
}

/** The flags `coordinator` and `train --workers` share: training, batch, checkpoints, deadline. */
function runFlags(shape: RunShape): string[] {
  return [
    ...trainingFlags(shape),
    '--global-batch-size',
    String(shape.globalBatch),
    '--checkpoint-every',
    String(shape.checkpointEvery),
    '--step-timeout',
    String(shape.stepTimeoutS),
  ];
}

/** `train` flags of the undisturbed one-process reference run of the shape (without --out). */
export function referenceFlags(shape: RunShape): string[] {
  return [...trainingFlags(shape), '--batch-size', String(shape.globalBatch)];
}

/** A key that is equal for shapes whose undisturbed runs end with the same weights. */
export function referenceKey(shape: RunShape): string {
  return JSON.stringify(referenceFlags(shape));
}
