import { createRequire } from 'node:module';
import os from 'node:os';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import * as tf from '@tensorflow/tfjs-core';
// The Node build of tfjs-core registers no gradients; the Node build of tfjs-layers carries
// them all and registers them on import (in the registry every copy of tfjs-core shares).
import '@tensorflow/tfjs-layers';
import { UserError } from '../errors.js';
import { log } from '../logging/logger.js';
import { registerWasmTrainingKernels } from './wasm-training-kernels.js';

export type BackendRequest = 'auto' | 'tensorflow' | 'wasm' | 'cpu';
export const BACKEND_REQUESTS: readonly BackendRequest[] = ['auto', 'tensorflow', 'wasm', 'cpu'];

export interface BackendInfo {
  name: 'tensorflow' | 'wasm' | 'cpu';
  /** Where the kernels run, in words for the log and the status output (e.g. "GPU (CUDA)"). */
  device: string;
}

export interface BackendOptions {
  /** Require a CUDA GPU: fail rather than run on a CPU. */
  gpu?: boolean;
}

const GPU_PACKAGE = '@tensorflow/tfjs-node-gpu';
const CPU_PACKAGE = '@tensorflow/tfjs-node';
const INSTALL_HINT =
  `install it next to tfjs-ddp: \`npm install ${GPU_PACKAGE}@4.22.0\` (Linux x86-64 with an ` +
  `NVIDIA driver > 450, CUDA 11.2 and cuDNN 8.1) or \`npm install ${CPU_PACKAGE}@4.22.0\` ` +
  '(native CPU); both download libtensorflow while installing';

/** What tfjs-node's backend exposes about itself beyond KernelBackend. */
interface NodeKernelBackend {
  isGPUPackage?: boolean;
  isUsingGpuDevice?: boolean;
}

/**
 * Selects and initialises the tfjs compute backend, best first for `auto`:
 * tfjs-node-gpu, tfjs-node (each only if installed), wasm, cpu. Registers the wasm training
 * kernels when wasm is chosen. Logs the backend and the device it runs on.
 *
 * Throws UserError when the requested backend is not installed (saying how to install it), or
 * when `opts.gpu` is true and no GPU is usable: tfjs-node-gpu silently runs on the CPU when the
 * CUDA 11 libraries are missing, so the device actually in use is checked after start-up.
 * May be called again to switch backends; tensors made before belong to the previous backend.
 */
export async function initBackend(
  request: BackendRequest,
  opts: BackendOptions = {},
): Promise<BackendInfo> {
  if (!BACKEND_REQUESTS.includes(request)) {
    throw new UserError(
      `unknown backend "${request}": expected one of ${BACKEND_REQUESTS.join(', ')}`,
    );
  }
  if (opts.gpu && (request === 'wasm' || request === 'cpu')) {
    throw new UserError(
      `--gpu needs the tensorflow backend (${GPU_PACKAGE}), but backend "${request}" was asked for`,
    );
  }
  const info =
    request === 'wasm' || request === 'cpu'
      ? await initPortable(request)
      : ((await initNative(request, opts.gpu === true)) ?? (await initPortable('wasm')));
  log().info(
    { backend: info.name, device: info.device },
    `compute backend: ${info.name} on ${info.device}`,
  );
  return info;
}

async function initPortable(name: 'wasm' | 'cpu'): Promise<BackendInfo> {
  // tfjs prints its warnings with console.warn unless PROD is set, among them a banner asking
  // every user of a portable backend to install tfjs-node: the backend line below says which
  // backend runs, and how to get a faster one is the README's business. PROD only silences
  // tfjs' console output.
  tf.env().set('PROD', true);
  await setBackend(name);
  // After initialisation, so that the built-in kernels kept as fallbacks have been set up.
  if (name === 'wasm') await registerWasmTrainingKernels();
  const cpu = os.cpus()[0]?.model.trim() ?? 'unknown CPU';
  const device =
    name === 'wasm'
      ? `CPU (WebAssembly${tf.env().getBool('WASM_HAS_SIMD_SUPPORT') ? ' SIMD' : ''}, 1 thread, ${cpu})`
      : `CPU (plain JavaScript, ${cpu})`;
  return { name, device };
}

/**
 * Loads tfjs-node-gpu, else tfjs-node. Returns undefined for `auto` when neither is installed;
 * throws UserError when `tensorflow` or a GPU was asked for and cannot be had.
 */
async function initNative(
  request: 'auto' | 'tensorflow',
  gpu: boolean,
): Promise<BackendInfo | undefined> {
  // Without this TensorFlow reserves all GPU memory at start-up, starving anything beside it.
  process.env.TF_FORCE_GPU_ALLOW_GROWTH ??= 'true';
  const loaded = (await tryImport(GPU_PACKAGE)) || (!gpu && (await tryImport(CPU_PACKAGE)));
  if (!loaded) {
    if (gpu) {
      throw new UserError(`--gpu was given but ${GPU_PACKAGE} is not installed: ${INSTALL_HINT}`);
    }
    if (request === 'tensorflow') {
      throw new UserError(
        `backend "tensorflow" was asked for but it is not installed: ${INSTALL_HINT}`,
      );
    }
    return undefined;
  }
  if (tf.findBackendFactory('tensorflow') == null) {
    throw new UserError(
      `${loaded} loaded but registered no "tensorflow" backend with this copy of ` +
        `@tensorflow/tfjs-core: install version ${tf.version_core} of ${loaded} so that npm shares one tfjs-core`,
    );
  }
  await setBackend('tensorflow');
  const backend = tf.backend() as unknown as NodeKernelBackend;
  const onGpu = backend.isGPUPackage === true && backend.isUsingGpuDevice === true;
  if (gpu && !onGpu) {
    throw new UserError(
      `--gpu was given but TensorFlow sees no usable GPU (${loaded} fell back to the CPU): it needs ` +
        'an NVIDIA driver > 450 and the CUDA 11.2 + cuDNN 8.1 runtime (libcudart.so.11.0, ' +
        'libcudnn.so.8) on the library path, and a visible device (check nvidia-smi and ' +
        'CUDA_VISIBLE_DEVICES)',
    );
  }
  if (loaded === GPU_PACKAGE && !onGpu) {
    log().warn(
      `${GPU_PACKAGE} is installed but runs on the CPU: no GPU is visible or the CUDA 11.2 / ` +
        'cuDNN 8.1 libraries are missing (pass --gpu to make this an error)',
    );
  }
  return { name: 'tensorflow', device: onGpu ? 'GPU (CUDA)' : 'CPU (native TensorFlow)' };
}

/** Imports an optional package; resolves to its name, or false when it is not installed. */
async function tryImport(name: string): Promise<string | false> {
  try {
    createRequire(import.meta.url).resolve(name);
  } catch {
    return false;
  }
  try {
    await import(name);
    return name;
  } catch (err) {
    // Installed but broken (typically the native binding failed to load): say so, do not fall back.
    throw new UserError(`${name} is installed but failed to load: ${(err as Error).message}`);
  }
}

async function setBackend(name: string): Promise<void> {
  const ok = await tf.setBackend(name);
  if (!ok || tf.getBackend() !== name) {
    throw new UserError(`the ${name} backend failed to initialise (see the log above)`);
  }
}
