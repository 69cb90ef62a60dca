import type * as tfl from '@tensorflow/tfjs-layers';
import { LayerBuilder, type WeightInit } from './layer-builder.js';

type SymbolicTensor = tfl.SymbolicTensor;

/** The CIFAR ResNet-18 of the Keras tutorial set: basic blocks, projection shortcuts on stride 2. */
export function buildResnet18(init: WeightInit): tfl.LayersModel {
  const b = new LayerBuilder(init, 'glorot_uniform');
  const input = b.input();
  let x = b.activation(b.batchNorm(b.conv(input, 64, 3, { bias: false })), 'relu');
  for (const [stage, filters] of [64, 128, 256, 512].entries()) {
    for (let block = 0; block < 2; block++) {
      const strides = stage > 0 && block === 0 ? 2 : 1;
      x = basicBlock(b, x, filters, strides);
    }
  }
  return b.finish(input, b.dense(b.globalAveragePool(x), 10), 'resnet18');
}

function basicBlock(b: LayerBuilder, x: SymbolicTensor, filters: number, strides: number) {
  let y = b.conv(x, filters, 3, { strides, bias: false });
  y = b.activation(b.batchNorm(y), 'relu');
  y = b.batchNorm(b.conv(y, filters, 3, { bias: false }));
  const shortcut = strides === 1 ? x : b.batchNorm(b.conv(x, filters, 1, { strides, bias: false }));
  return b.activation(b.add(y, shortcut), 'relu');
}

/** The Keras functional ResNet (MODELS.md, `resnet34k`): identity blocks, pooling between stages. */
export function buildResnet34k(init: WeightInit): tfl.LayersModel {
  const b = new LayerBuilder(init, 'glorot_uniform');
  const input = b.input();
  let x = b.maxPool(b.batchNorm(b.conv(input, 64, 3, { activation: 'relu' })), 2, 2);
  const stages: [number, number][] = [
    [64, 4],
    [128, 4],
    [256, 6],
    [512, 3],
  ];
  for (const [stage, [filters, blocks]] of stages.entries()) {
    for (let block = 0; block < blocks; block++) {
      let y = b.batchNorm(b.conv(x, filters, 3, { activation: 'relu' }));
      y = b.batchNorm(b.conv(y, filters, 3));
      x = b.activation(b.add(y, x), 'relu');
    }
    if (stage < stages.length - 1) {
      x = b.conv(b.maxPool(x, 3, 2, 'same'), 2 * filters, 1);
    } else {
      x = b.averagePool(x, 2, 2);
    }
  }
  return b.finish(input, b.dense(b.flatten(x), 10), 'resnet34k');
}
