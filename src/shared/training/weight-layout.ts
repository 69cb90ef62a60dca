import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';

/**
 * Where each tensor of a list lives in one flat Float32Array: tensor i occupies
 * `[offsets[i], offsets[i] + sizes[i])`. The order is the model's weight order, which is the
 * same in every process that builds the same architecture; names are for people (tfjs makes
 * them unique per process, so they may differ between processes and must not be matched on).
 */
export interface WeightLayout {
  readonly names: readonly string[];
  readonly shapes: readonly (readonly number[])[];
  readonly offsets: readonly number[];
  readonly sizes: readonly number[];
  /** Total number of floats. */
  readonly size: number;
}

export function layoutOf(
  tensors: readonly { name: string; shape: readonly number[] }[],
): WeightLayout {
  const offsets: number[] = [];
  const sizes: number[] = [];
  let size = 0;
  for (const t of tensors) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    offsets.push(size);
    sizes.push(n);
    size += n;
  }
  return {
    names: tensors.map((t) => t.name),
    shapes: tensors.map((t) => [...t.shape]),
    offsets,
    sizes,
    size,
  };
}

/**
 * Every weight of `model` in the order that broadcasts, fingerprints and checkpoints use:
 * trainable first, then the non-trainable ones (BatchNorm moving statistics).
 */
export function modelWeights(model: tfl.LayersModel): {
  variables: tf.Variable[];
  layout: WeightLayout;
} {
  const weights = [...model.trainableWeights, ...model.nonTrainableWeights];
  return {
    variables: weights.map((w) => w.read() as tf.Variable),
    layout: layoutOf(weights.map((w) => ({ name: w.originalName, shape: w.shape as number[] }))),
  };
}

/** All weights of `model`, flat (modelWeights' layout), copied out. */
export function readModelWeights(model: tfl.LayersModel): Float32Array {
  const { variables, layout } = modelWeights(model);
  return readFlat(variables, layout);
}

/** Sets all weights of `model` from `flat` (modelWeights' layout); throws on a length mismatch. */
export function writeModelWeights(model: tfl.LayersModel, flat: Float32Array): void {
  const { variables, layout } = modelWeights(model);
  writeFlat(variables, layout, flat);
}

/** Copies the tensors' values into one flat array (`out` if given, else a new one). */
export function readFlat(
  tensors: readonly tf.Tensor[],
  layout: WeightLayout,
  out: Float32Array = new Float32Array(layout.size),
): Float32Array {
  if (out.length !== layout.size) {
    throw new Error(`flat buffer holds ${out.length} floats, layout needs ${layout.size}`);
  }
  tensors.forEach((t, i) => {
    out.set(t.dataSync() as Float32Array, layout.offsets[i]);
  });
  return out;
}

/**
 * Assigns slices of `flat` to the variables. Throws if `flat` has the wrong length. The values
 * are copied (the cpu backend would otherwise keep a view of `flat`), so `flat` may be reused.
 */
export function writeFlat(
  variables: readonly tf.Variable[],
  layout: WeightLayout,
  flat: Float32Array,
): void {
  if (flat.length !== layout.size) {
    throw new Error(`flat buffer holds ${flat.length} floats, layout needs ${layout.size}`);
  }
  tf.tidy(() => {
    variables.forEach((v, i) => {
      const start = layout.offsets[i];
      v.assign(tf.tensor(flat.slice(start, start + layout.sizes[i]), v.shape, 'float32'));
    });
  });
}

/** The layout's slices of `flat` as new tensors (copies), which the caller must dispose. */
export function unflatten(flat: Float32Array, layout: WeightLayout): tf.Tensor[] {
  return layout.shapes.map((shape, i) => {
    const start = layout.offsets[i];
    return tf.tensor(flat.slice(start, start + layout.sizes[i]), shape as number[], 'float32');
  });
}
