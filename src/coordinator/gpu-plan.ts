import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { UserError } from '../shared/errors.js';

const GPU_PACKAGE = '@tensorflow/tfjs-node-gpu';

/** How many workers a local run starts, and the GPU (CUDA device id) of each, if any. */
export interface GpuPlan {
  workers: number;
  /** devices[i] is worker i's CUDA_VISIBLE_DEVICES; undefined: CPU workers. */
  devices?: string[];
}

export interface GpuRequest {
  /** --workers */
  workers?: number;
  /** --gpus LIST, or true for `--gpus` alone (every visible GPU). */
  gpus?: string | true;
  backend: string;
}

/** What the machine offers (a seam for the tests of the rules below). */
export interface GpuEnvironment {
  gpuPackageInstalled: boolean;
  /** CUDA ids of the visible GPUs. */
  visible: string[];
}

/**
 * Decides the workers' GPUs, like torchrun with one process per GPU:
 * - `--gpus 0,2`: one worker per listed GPU; `--gpus` alone: one per visible GPU;
 * - `--workers N` alone: GPUs 0..N-1 when tfjs-node-gpu is installed, GPUs are visible and the
 *   backend may be tensorflow; otherwise N CPU workers.
 * Asking for GPUs where tfjs-node-gpu or a GPU is missing is a UserError, never a silent CPU
 * run (each GPU worker also runs with --gpu, so a CUDA runtime that fails to load stops it).
 */
export function planGpus(req: GpuRequest, env: GpuEnvironment = detectGpus()): GpuPlan {
  const gpuBackend = req.backend === 'auto' || req.backend === 'tensorflow';
  if (req.gpus === undefined) {
    const workers = req.workers ?? 1;
    if (!env.gpuPackageInstalled || !gpuBackend || env.visible.length === 0) return { workers };
    if (workers > env.visible.length) {
      throw new UserError(
        `--workers ${workers}: only ${env.visible.length} GPU${env.visible.length > 1 ? 's are' : ' is'} visible; ` +
          'choose them with --gpus, or run CPU workers with --backend wasm',
      );
    }
    return { workers, devices: env.visible.slice(0, workers) };
  }
  if (!gpuBackend) {
    throw new UserError(
      `--gpus needs the tensorflow backend (${GPU_PACKAGE}), not --backend ${req.backend}`,
    );
  }
  if (!env.gpuPackageInstalled) {
    throw new UserError(
      `--gpus: ${GPU_PACKAGE} is not installed: install it next to tfjs-ddp with \`npm install ${GPU_PACKAGE}@4.22.0\` ` +
        '(Linux x86-64, NVIDIA driver > 450, CUDA 11.2 and cuDNN 8.1)',
    );
  }
  if (env.visible.length === 0) {
    throw new UserError(
      '--gpus: no GPU is visible (nvidia-smi lists none, or CUDA_VISIBLE_DEVICES hides them all)',
    );
  }
  const devices = req.gpus === true ? env.visible : req.gpus.split(',').map((d) => d.trim());
  const unknown = devices.filter((d) => !env.visible.includes(d));
  if (unknown.length > 0 || devices.length === 0) {
    throw new UserError(
      `--gpus ${String(req.gpus)}: GPU ${unknown.join(', ')} is not visible; visible: ${env.visible.join(', ')}`,
    );
  }
  if (new Set(devices).size !== devices.length) {
    throw new UserError(`--gpus ${String(req.gpus)}: a GPU is listed twice (one worker per GPU)`);
  }
  if (req.workers !== undefined && req.workers !== devices.length) {
    throw new UserError(
      `--workers ${req.workers} and --gpus ${String(req.gpus)}: one worker per GPU, so give ${devices.length} workers or omit --workers`,
    );
  }
  return { workers: devices.length, devices };
}

/** Whether tfjs-node-gpu can be imported, and the GPUs nvidia-smi lists (filtered by CUDA_VISIBLE_DEVICES). */
export function detectGpus(): GpuEnvironment {
  let gpuPackageInstalled = true;
  try {
    createRequire(import.meta.url).resolve(GPU_PACKAGE);
  } catch {
    gpuPackageInstalled = false;
  }
  let listed: string[] = [];
  try {
    listed = execFileSync('nvidia-smi', ['--query-gpu=index', '--format=csv,noheader'], {
      encoding: 'utf8',
      timeout: 10_000,
      stdio: ['ignore', 'pipe', 'ignore'],
    })
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '');
  } catch {
    // No driver, no GPU.
  }
  const mask = process.env.CUDA_VISIBLE_DEVICES;
  const visible =
    mask === undefined
      ? listed
      : mask
          .split(',')
          .map((d) => d.trim())
          .filter((d) => listed.includes(d));
  return { gpuPackageInstalled, visible };
}
