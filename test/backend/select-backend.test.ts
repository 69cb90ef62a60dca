import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { initBackend } from '../../src/shared/backend/select-backend.js';
import { UserError } from '../../src/shared/errors.js';

// tfjs-node and tfjs-node-gpu cannot be installed on these machines (they download
// libtensorflow), so these tests cover the portable backends and the errors for the native one.
const nativeInstalled = await import('@tensorflow/tfjs-node' as string).then(
  () => true,
  () => false,
);

describe('initBackend', () => {
  it('runs wasm and cpu when asked, saying where', async () => {
    const wasm = await initBackend('wasm');
    expect(wasm.name).toBe('wasm');
    expect(tf.getBackend()).toBe('wasm');
    expect(wasm.device).toMatch(/WebAssembly SIMD, 1 thread/);
    const cpu = await initBackend('cpu');
    expect(cpu).toMatchObject({ name: 'cpu' });
    expect(tf.getBackend()).toBe('cpu');
  });

  it.skipIf(nativeInstalled)(
    'auto falls back to wasm when no native package is installed',
    async () => {
      expect(await initBackend('auto')).toMatchObject({ name: 'wasm' });
    },
  );

  it.skipIf(nativeInstalled)(
    'tensorflow without the package: a UserError naming the install command',
    async () => {
      const err = await initBackend('tensorflow').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UserError);
      expect((err as Error).message).toMatch(/npm install @tensorflow\/tfjs-node-gpu@4\.22\.0/);
      expect((err as Error).message).toMatch(/CUDA 11\.2/);
      expect((err as Error).message).toMatch(/@tensorflow\/tfjs-node@4\.22\.0/);
    },
  );

  it('a GPU request never runs on a CPU', async () => {
    for (const request of ['wasm', 'cpu'] as const) {
      await expect(initBackend(request, { gpu: true })).rejects.toThrow(UserError);
    }
    if (!nativeInstalled) {
      await expect(initBackend('auto', { gpu: true })).rejects.toThrow(
        /tfjs-node-gpu is not installed/,
      );
    }
  });

  it('rejects an unknown backend name', async () => {
    await expect(initBackend('webgl' as 'wasm')).rejects.toThrow(/unknown backend "webgl"/);
  });
});
