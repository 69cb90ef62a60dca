import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { keyedRandom } from '../keyed-random.js';

/** What keys the dropout masks of the next training forward pass. */
export interface DropoutKeys {
  seed: number;
  epoch: number;
  /** The global (dataset) index of each sample of the batch, in batch order. */
  sampleIndices: ArrayLike<number>;
}

let currentKeys: DropoutKeys | null = null;

/**
 * Sets the keys for every KeyedDropout layer in the process until the next call. Call it before
 * each training forward pass with that batch's sample indices; `null` turns dropout off (identity)
 * even in training mode. The keys object is read, not copied: do not mutate it while a forward
 * pass that uses it runs.
 */
export function setDropoutKeys(keys: DropoutKeys | null): void {
  currentKeys = keys;
}

export interface KeyedDropoutArgs {
  name: string;
  rate: number;
  /** The layer's index in its model: masks of different layers differ. */
  key: number;
}

/**
 * Inverted dropout whose mask for a sample depends only on (seed, epoch, global sample index,
 * layer key), never on the sample's position in the batch, on which worker runs it, or on call
 * order; this is what makes N workers drop the same units as one (DESIGN.md, "Worker-count
 * invariance"). Kept units are scaled by 1/(1 - rate). Identity unless called with
 * `training: true` and keys set by setDropoutKeys().
 *
 * It serialises as a standard Keras/tfjs `Dropout` layer (same class name and config), so an
 * exported model loads with plain `tf.loadLayersModel` in any process, as ordinary dropout, which
 * is the identity at inference. The class is deliberately not registered: registering it under
 * 'Dropout' would replace tfjs's own class. A model loaded from files therefore has plain dropout;
 * training code builds models with buildModel() and restores weights into them.
 */
export class KeyedDropout extends tfl.layers.Layer {
  static className = 'Dropout';
  readonly rate: number;
  readonly key: number;

  constructor(args: KeyedDropoutArgs) {
    super({ name: args.name });
    if (!(args.rate >= 0 && args.rate < 1)) {
      throw new Error(`dropout rate must be in [0, 1), got ${args.rate}`);
    }
    this.rate = args.rate;
    this.key = args.key;
  }

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Record<string, unknown>): tf.Tensor {
    const x = Array.isArray(inputs) ? inputs[0] : inputs;
    const keys = currentKeys;
    if (kwargs.training !== true || keys === null || this.rate === 0) return x;
    return tf.tidy(() => {
      const mask = dropoutMask(keys, this.key, this.rate, x.shape);
      return tf.mul(x, tf.tensor(mask, x.shape, 'float32'));
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { rate: this.rate, noiseShape: null, seed: null, ...super.getConfig() };
  }
}

/**
 * The inverted-dropout mask for a batch: 0 for dropped units, 1/(1 - rate) for kept ones, with
 * each sample's part drawn from its own keyed stream (seed, epoch, sample index, layer key).
 */
function dropoutMask(
  keys: DropoutKeys,
  layerKey: number,
  rate: number,
  shape: readonly number[],
): Float32Array {
  const batch = shape[0];
  if (keys.sampleIndices.length !== batch) {
    throw new Error(
      `dropout keys name ${keys.sampleIndices.length} samples but the batch has ${batch}: ` +
        'call setDropoutKeys() with this batch before the forward pass',
    );
  }
  const perSample = shape.slice(1).reduce((a, b) => a * b, 1);
  const scale = 1 / (1 - rate);
  const mask = new Float32Array(batch * perSample);
  for (let s = 0; s < batch; s++) {
    const random = keyedRandom(keys.seed, keys.epoch, keys.sampleIndices[s], layerKey);
    const end = (s + 1) * perSample;
    for (let i = s * perSample; i < end; i++) {
      if (random() >= rate) mask[i] = scale;
    }
  }
  return mask;
}
