import * as tf from '@tensorflow/tfjs-core';

/**
 * A gradient for the FusedBatchNorm kernel (y = (x − mean)·rsqrt(variance + ε)·scale + offset)
 * with the same values as tfjs-core's and far fewer full-size passes. tfjs-core's multiplies dy
 * by a per-channel factor that it first tiles to the whole activation shape (a full-size Tile:
 * a third of a ResNet-18 step on wasm) and recomputes dy·scale and x − mean per input. Here the
 * per-channel factors broadcast, and the two channel sums every input needs (Σdy and
 * Σdy·(x − mean)) are computed once, in a tidy that keeps only the [C] results.
 */
export const batchNormGradConfig: tf.GradConfig = {
  kernelName: tf.FusedBatchNorm,
  inputsToSave: ['x', 'mean', 'variance', 'scale'],
  gradFunc: (dy, saved, attrs) => {
    const dyT = dy as tf.Tensor;
    const [x, mean, variance, scaleSaved] = saved;
    const { varianceEpsilon } = attrs as unknown as tf.FusedBatchNormAttrs;
    const axes = tf.backend_util.getReductionAxes(mean.shape, x.shape);
    const perChannel = (t: tf.Tensor) => (axes.length > 0 ? tf.sum(t, axes) : t);
    const scale = scaleSaved ?? tf.scalar(1);
    const rstd = tf.rsqrt(tf.add(variance, tf.scalar(varianceEpsilon)));
    // Σdy and Σdy·(x − mean) over the normalised axes; the full-size temporaries die here.
    const [sumDy, sumDyXm] = tf.tidy(() => [
      tf.reshape(perChannel(dyT), mean.shape),
      tf.reshape(perChannel(tf.mul(dyT, tf.sub(x, mean))), mean.shape),
    ]);
    return {
      x: () => tf.reshape(tf.mul(dyT, tf.mul(scale, rstd)), x.shape),
      mean: () => tf.neg(tf.mul(sumDy, tf.mul(scale, rstd))),
      variance: () =>
        tf.mul(sumDyXm, tf.mul(scale, tf.mul(tf.scalar(-0.5), tf.mul(tf.mul(rstd, rstd), rstd)))),
      scale: () => tf.mul(sumDyXm, rstd),
      // A copy (free on wasm, see wasm-training-kernels.ts): the tape may dispose an input's
      // gradient once it is consumed, and sumDy is shared with the mean's.
      offset: () => tf.clone(sumDy),
    };
  },
};
