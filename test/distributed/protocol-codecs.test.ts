// The pure pieces of the protocol: replica state in parts, the run settings a worker gets,
// and the comparison of replicas' fingerprints.
import { describe, expect, it } from 'vitest';
import { fingerprintMismatch } from '../../src/coordinator/fingerprints.js';
import { StateKind } from '../../src/gen/tfjs_ddp/v1/coordinator.js';
import { parseTrainConfig } from '../../src/shared/config/train-config.js';
import {
  decodeRunSettings,
  encodeRunSettings,
  type RunSettings,
} from '../../src/shared/distributed/run-settings.js';
import { StateAssembler, toStateParts } from '../../src/shared/distributed/state-parts.js';

describe('state parts', () => {
  const weights = Float32Array.from({ length: 1001 }, (_, i) => i / 7);
  const optimizer = {
    kind: 'sgd' as const,
    iterations: 12,
    slots: { momentum: Float32Array.from({ length: 1001 }, (_, i) => -i) },
  };

  it('round-trips weights and optimiser state through small parts', () => {
    const parts = toStateParts({ weights, optimizer }, 3, 400);
    expect(parts.length).toBe(22);
    const assembler = new StateAssembler('rank 0', true);
    for (const part of parts) {
      expect(assembler.complete).toBe(false);
      assembler.add(part);
    }
    expect(assembler.complete).toBe(true);
    const state = assembler.result();
    expect(state.weights).toEqual(weights);
    expect(state.optimizer).toEqual(optimizer);
  });

  it('carries an optimiser without slots (plain SGD) and empty weights', () => {
    const plain = { kind: 'sgd' as const, iterations: 3, slots: {} };
    const assembler = new StateAssembler('rank 0', true);
    for (const part of toStateParts({ weights: new Float32Array(0), optimizer: plain }, 1)) {
      assembler.add(part);
    }
    expect(assembler.result()).toEqual({ weights: new Float32Array(0), optimizer: plain });
  });

  it('refuses parts out of order, past their total, or of an unexpected kind, naming the sender', () => {
    const parts = toStateParts({ weights, optimizer }, 3, 400);
    const skip = new StateAssembler('rank 0', true);
    expect(() => skip.add(parts[1])).toThrow(
      'rank 0 sent a malformed state part: offset 400 where 0 was due',
    );
    const over = new StateAssembler('rank 0', true);
    expect(() => over.add({ ...parts[0], totalBytes: 8 })).toThrow(/run past the total of 8/);
    const early = new StateAssembler('rank 0', true);
    expect(() => early.add(parts.find((p) => p.kind === StateKind.STATE_KIND_OPTIMIZER)!)).toThrow(
      /optimizer state before the weights were complete/,
    );
    const weightsOnly = new StateAssembler('rank 0', false);
    for (const p of parts.filter((p) => p.kind === StateKind.STATE_KIND_WEIGHTS))
      weightsOnly.add(p);
    expect(weightsOnly.complete).toBe(true);
    expect(() => weightsOnly.add(parts.at(-1)!)).toThrow(/optimizer state that was not asked for/);
  });
});

describe('run settings', () => {
  it('reach the worker as the coordinator meant them', () => {
    const parsed = parseTrainConfig({
      model: 'lenet5',
      recipe: 'none',
      steps: 9,
      batchSize: 25,
      optimizer: { kind: 'sgd', lr: 0.05, momentum: 0.9, nesterov: false },
      schedule: { kind: 'constant' },
      warmupSteps: 0,
      weightDecay: 0,
      preprocessing: 'scale',
      augment: true,
      data: { dataset: 'synthetic', valSize: 20 },
      seed: 3,
      evalBatchSize: 256,
    });
    if (!parsed.ok) throw new Error('bad test config');
    const settings: RunSettings = {
      train: parsed.config,
      architecture: 'abc',
      trainCount: 170,
      valCount: 20,
      totalSteps: 9,
      startStep: 4,
      resume: true,
      allReduce: 'star',
      compression: 'bf16',
      firstBucketBytes: 1024,
      bucketBytes: 4096,
      overlap: false,
      chunkBytes: 512,
      stepTimeoutMs: 30_000,
      heartbeatIntervalMs: 5000,
      fingerprintEvery: 3,
      maxMessageBytes: 1 << 20,
      dataFrom: 'coordinator',
    };
    expect(decodeRunSettings(encodeRunSettings(settings))).toEqual(settings);
  });

  it('refuses a configuration this worker cannot use', () => {
    expect(() => decodeRunSettings(undefined)).toThrow(/it is missing/);
  });
});

describe('fingerprintMismatch', () => {
  it('is silent when every replica (and the coordinator) agree', () => {
    expect(fingerprintMismatch(['a1', 'a1', 'a1'])).toBeUndefined();
    expect(fingerprintMismatch(['a1', 'a1'], 'a1')).toBeUndefined();
  });

  it('names the lone replica first, then the others', () => {
    expect(fingerprintMismatch(['aaaa', 'aaaa', 'bbbb'])).toBe(
      'rank 2 holds bbbb…, ranks 0, 1 hold aaaa…',
    );
    expect(fingerprintMismatch(['x', 'y'])).toBe('rank 0 holds x…, rank 1 holds y…');
  });

  it('names the replicas that differ from the coordinator\u2019s copy', () => {
    expect(fingerprintMismatch(['c', 'c'], 'e')).toBe(
      "ranks 0, 1 hold c…; the coordinator's copy is e… (matched by no rank)",
    );
  });
});
