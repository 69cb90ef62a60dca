import type * as tfl from '@tensorflow/tfjs-layers';
import { LayerBuilder, type WeightInit } from './layer-builder.js';

/**
 * The convolution columns of the VGG paper as MODELS.md writes them: a number is a 3×3 conv with
 * that many filters, `N/1` a 1×1 conv (column C only), `M` a 2×2 max pool.
 */
const COLUMNS = {
  vgg11a: '64 M 128 M 256 256 M 512 512 M 512 512 M',
  vgg13b: '64 64 M 128 128 M 256 256 M 512 512 M 512 512 M',
  vgg16c: '64 64 M 128 128 M 256 256 256/1 M 512 512 512/1 M 512 512 512/1 M',
  vgg16d: '64 64 M 128 128 M 256 256 256 M 512 512 512 M 512 512 512 M',
  vgg19e: '64 64 M 128 128 M 256 256 256 256 M 512 512 512 512 M 512 512 512 512 M',
} as const;

export type VggStudyName = keyof typeof COLUMNS;

/**
 * A network of the VGG-on-CIFAR-10 study: every conv followed by bn and relu, he_normal kernels,
 * and the study's head (two dense(4096) bn relu dropout(0.5), then dense(10) bn). The study's L2
 * penalty is not in the layers: the training step applies it (MODEL_SPECS[name].l2Penalty).
 */
export function buildVggStudy(name: VggStudyName, init: WeightInit): tfl.LayersModel {
  const b = new LayerBuilder(init, 'he_normal');
  const input = b.input();
  let x = input;
  for (const item of COLUMNS[name].split(' ')) {
    if (item === 'M') {
      x = b.maxPool(x, 2, 2);
    } else {
      const [filters, kernelSize = '3'] = item.split('/');
      x = b.convBnRelu(x, Number(filters), Number(kernelSize));
    }
  }
  x = b.flatten(x);
  for (let i = 0; i < 2; i++) {
    x = b.dropout(b.activation(b.batchNorm(b.dense(x, 4096)), 'relu'), 0.5);
  }
  return b.finish(input, b.batchNorm(b.dense(x, 10)), name);
}
