import { createHash } from 'node:crypto';
import * as tfl from '@tensorflow/tfjs-layers';

export interface ParamCounts {
  totalParams: number;
  trainableParams: number;
  nonTrainableParams: number;
}

/**
 * A model sharing `model`'s layers and weights whose output is the input of its 'probs' softmax
 * layer: the logits, for a numerically stable softmax cross-entropy. Disposing it would dispose
 * the shared weights: dispose only the original model.
 */
export function logitsModel(model: tfl.LayersModel): tfl.LayersModel {
  const probs = model.getLayer('probs');
  return tfl.model({
    inputs: model.inputs,
    outputs: probs.input as tfl.SymbolicTensor,
    name: `${model.name}_logits`,
  });
}

/** Parameter counts as Keras reports them; non-trainable = BatchNorm moving mean and variance. */
export function countParams(model: tfl.LayersModel): ParamCounts {
  const size = (weights: tfl.LayerVariable[]) =>
    weights.reduce((sum, w) => sum + (w.shape as number[]).reduce((a, b) => a * b, 1), 0);
  const trainableParams = size(model.trainableWeights);
  const nonTrainableParams = size(model.nonTrainableWeights);
  return { totalParams: trainableParams + nonTrainableParams, trainableParams, nonTrainableParams };
}

// Config entries that name or initialise a layer rather than define what it computes.
const IGNORED_CONFIG = /^(name|trainable|seed|.*Initializer)$/;

/**
 * Hex sha256 over each layer's class name, its computation-defining config, its weight shapes and
 * the indices of the layers feeding it (the wiring, for models with skip connections). Equal for
 * two builds of a model whatever their seeds and weight values; different across the zoo.
 */
export function architectureFingerprint(model: tfl.LayersModel): string {
  const layers = model.layers;
  const description = layers.map((layer) => ({
    className: layer.getClassName(),
    config: Object.fromEntries(
      Object.entries(layer.getConfig())
        .filter(([key]) => !IGNORED_CONFIG.test(key))
        .sort(([a], [b]) => (a < b ? -1 : 1)),
    ),
    weights: layer.weights.map((w) => w.shape),
    inputs: layer.inboundNodes.flatMap((node) => node.inboundLayers.map((l) => layers.indexOf(l))),
  }));
  return createHash('sha256').update(JSON.stringify(description)).digest('hex');
}
