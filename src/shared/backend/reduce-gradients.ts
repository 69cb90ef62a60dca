import * as tf from '@tensorflow/tfjs-core';

/**
 * Gradients of Sum and Mean that broadcast dy back over the reduced axes with Tile, where
 * tfjs-core's multiply it by a tensor of ones of the input's shape made in JavaScript (a
 * Float32Array filled and copied to the backend on every call: a third of a second per
 * ResNet-18 step, for the two means of every BatchNorm). The same values on every backend.
 */
function broadcastGrad(kernelName: string, mean: boolean): tf.GradConfig {
  return {
    kernelName,
    inputsToSave: ['x'],
    gradFunc: (dy, saved, attrs) => {
      const [x] = saved;
      const axes = tf.util.parseAxisParam((attrs as unknown as tf.SumAttrs).axis, x.shape);
      const kept = x.shape.map((d, i) => (axes.includes(i) ? 1 : d));
      const reps = x.shape.map((d, i) => (axes.includes(i) ? d : 1));
      const count = axes.reduce((n, a) => n * x.shape[a], 1);
      return {
        x: () => {
          const small = tf.reshape(dy as tf.Tensor, kept);
          const scaled = mean ? tf.div(small, tf.scalar(count)) : small;
          return tf.cast(tf.tile(scaled, reps), 'float32');
        },
      };
    },
  };
}

export const sumGradConfig = broadcastGrad(tf.Sum, false);
export const meanGradConfig = broadcastGrad(tf.Mean, true);
