import type * as tfl from '@tensorflow/tfjs-layers';
import { LayerBuilder, type WeightInit } from './layer-builder.js';

// The sequential networks of the Keras tutorial set (MODELS.md); Keras's default initialisers.

export function buildBaseline(init: WeightInit): tfl.LayersModel {
  const b = new LayerBuilder(init, 'glorot_uniform');
  const input = b.input();
  let x = b.activation(b.batchNorm(b.conv(input, 6, 5)), 'relu');
  x = b.dropout(b.maxPool(x, 2, 2), 0.2);
  x = b.dropout(b.dense(b.flatten(x), 128, 'relu'), 0.2);
  return b.finish(input, b.dense(x, 10), 'baseline');
}

export function buildLenet5(init: WeightInit): tfl.LayersModel {
  const b = new LayerBuilder(init, 'glorot_uniform');
  const input = b.input();
  let x = b.maxPool(b.conv(input, 6, 5, { padding: 'valid', activation: 'sigmoid' }), 2, 2);
  x = b.maxPool(b.conv(x, 16, 5, { padding: 'valid', activation: 'sigmoid' }), 2, 2);
  x = b.dense(b.dense(b.flatten(x), 120, 'sigmoid'), 84, 'sigmoid');
  return b.finish(input, b.dense(x, 10), 'lenet5');
}

export function buildAlexnet8(init: WeightInit): tfl.LayersModel {
  const b = new LayerBuilder(init, 'glorot_uniform');
  const input = b.input();
  let x = input;
  for (const filters of [96, 256]) {
    x = b.conv(x, filters, 3, { padding: 'valid' });
    x = b.maxPool(b.activation(b.batchNorm(x), 'relu'), 3, 2);
  }
  for (const filters of [384, 384, 256]) x = b.conv(x, filters, 3, { activation: 'relu' });
  x = b.flatten(b.maxPool(x, 3, 2));
  x = b.dropout(b.dense(x, 2048, 'relu'), 0.5);
  x = b.dropout(b.dense(x, 2048, 'relu'), 0.5);
  return b.finish(input, b.dense(x, 10), 'alexnet8');
}

export function buildVgg16(init: WeightInit): tfl.LayersModel {
  const b = new LayerBuilder(init, 'glorot_uniform');
  const input = b.input();
  let x = input;
  const blocks: [number, number][] = [
    [64, 2],
    [128, 2],
    [256, 3],
    [512, 3],
    [512, 3],
  ];
  for (const [filters, convs] of blocks) {
    for (let i = 0; i < convs; i++) x = b.convBnRelu(x, filters);
    x = b.dropout(b.maxPool(x, 2, 2), 0.2);
  }
  x = b.flatten(x);
  x = b.dropout(b.dense(x, 512, 'relu'), 0.2);
  x = b.dropout(b.dense(x, 512, 'relu'), 0.2);
  return b.finish(input, b.dense(x, 10), 'vgg16');
}
