import * as tfl from '@tensorflow/tfjs-layers';
import { hashKeys } from '../keyed-random.js';
import { KeyedDropout } from './keyed-dropout.js';

type SymbolicTensor = tfl.SymbolicTensor;
type Activation = 'relu' | 'sigmoid';

/** How conv and dense kernels are initialised: Keras's default, or the VGG study's choice. */
export type KernelInitializer = 'glorot_uniform' | 'he_normal';

/**
 * A model's initialisation: seeded random kernels, or all-zero kernels for when only the
 * architecture matters (counting parameters), which builds the 39M-parameter vgg19e ~20× faster.
 */
export type WeightInit = { seed: number } | 'zeros';

interface ConvOptions {
  strides?: number;
  padding?: 'same' | 'valid';
  /** Default true; `false` for the convolutions that a BatchNormalization follows in ResNets. */
  bias?: boolean;
  activation?: Activation;
}

/** The input every zoo model takes: one CIFAR-10 image, NHWC. */
const INPUT_SHAPE = [32, 32, 3];

/**
 * Creates the layers of one model in order and wires them with the functional API. Every layer
 * gets a Keras-style name (conv2d, conv2d_1, …) that depends only on its position in this model,
 * and a creation index; the kernel initialiser of layer k is seeded with hashKeys(seed, k), so two
 * builds with the same seed hold identical weights whatever the process has built before.
 * The index also keys the dropout masks (see keyed-dropout.ts).
 */
export class LayerBuilder {
  private index = 0;
  private readonly nameCounts = new Map<string, number>();

  constructor(
    private readonly init: WeightInit,
    private readonly kernelInitializer: KernelInitializer,
  ) {}

  input(): SymbolicTensor {
    return tfl.input({ shape: INPUT_SHAPE, name: 'input' });
  }

  conv(x: SymbolicTensor, filters: number, kernelSize: number, opts: ConvOptions = {}) {
    const { name, index } = this.next('conv2d');
    return apply(
      tfl.layers.conv2d({
        name,
        filters,
        kernelSize,
        strides: opts.strides ?? 1,
        padding: opts.padding ?? 'same',
        useBias: opts.bias ?? true,
        activation: opts.activation,
        kernelInitializer: this.kernel(index),
      }),
      x,
    );
  }

  dense(x: SymbolicTensor, units: number, activation?: Activation) {
    const { name, index } = this.next('dense');
    return apply(
      tfl.layers.dense({ name, units, activation, kernelInitializer: this.kernel(index) }),
      x,
    );
  }

  batchNorm(x: SymbolicTensor) {
    return apply(tfl.layers.batchNormalization({ name: this.next('batch_normalization').name }), x);
  }

  activation(x: SymbolicTensor, activation: Activation) {
    return apply(tfl.layers.activation({ name: this.next('activation').name, activation }), x);
  }

  maxPool(
    x: SymbolicTensor,
    poolSize: number,
    strides: number,
    padding: 'same' | 'valid' = 'valid',
  ) {
    const name = this.next('max_pooling2d').name;
    return apply(tfl.layers.maxPooling2d({ name, poolSize, strides, padding }), x);
  }

  averagePool(x: SymbolicTensor, poolSize: number, strides: number) {
    const name = this.next('average_pooling2d').name;
    return apply(tfl.layers.averagePooling2d({ name, poolSize, strides }), x);
  }

  globalAveragePool(x: SymbolicTensor) {
    const name = this.next('global_average_pooling2d').name;
    return apply(tfl.layers.globalAveragePooling2d({ name }), x);
  }

  flatten(x: SymbolicTensor) {
    return apply(tfl.layers.flatten({ name: this.next('flatten').name }), x);
  }

  dropout(x: SymbolicTensor, rate: number) {
    const { name, index } = this.next('dropout');
    return apply(new KeyedDropout({ name, rate, key: index }), x);
  }

  add(a: SymbolicTensor, b: SymbolicTensor): SymbolicTensor {
    return tfl.layers.add({ name: this.next('add').name }).apply([a, b]) as SymbolicTensor;
  }

  /** conv → bn → relu, the unit the VGG-style models repeat. */
  convBnRelu(x: SymbolicTensor, filters: number, kernelSize = 3) {
    return this.activation(this.batchNorm(this.conv(x, filters, kernelSize)), 'relu');
  }

  /** Ends the model with the separate softmax layer 'probs' that logitsModel() cuts off. */
  finish(input: SymbolicTensor, logits: SymbolicTensor, modelName: string): tfl.LayersModel {
    const probs = apply(tfl.layers.activation({ name: 'probs', activation: 'softmax' }), logits);
    return tfl.model({ inputs: input, outputs: probs, name: modelName });
  }

  private next(prefix: string): { name: string; index: number } {
    const n = this.nameCounts.get(prefix) ?? 0;
    this.nameCounts.set(prefix, n + 1);
    return { name: n === 0 ? prefix : `${prefix}_${n}`, index: this.index++ };
  }

  private kernel(index: number) {
    if (this.init === 'zeros') return tfl.initializers.zeros();
    // tfjs's Gaussian generator treats a seed of 0 as "no seed" and draws from Math.random.
    const seed = hashKeys(this.init.seed, index) || 1;
    return this.kernelInitializer === 'he_normal'
      ? tfl.initializers.heNormal({ seed })
      : tfl.initializers.glorotUniform({ seed });
  }
}

function apply(layer: tfl.layers.Layer, x: SymbolicTensor): SymbolicTensor {
  return layer.apply(x) as SymbolicTensor;
}
