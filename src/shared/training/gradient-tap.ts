import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';

/**
 * Hears each trainable weight's gradient the moment the backward pass has finished it, so that
 * a bucket can leave while backward still runs for earlier layers (PyTorch DDP's autograd hooks).
 */
export interface GradientListener {
  /** The forward pass has returned the loss: the backward pass starts now. */
  backwardStarted?(): void;
  /**
   * The gradient of weight `parameter` (its index in the trainable order) is final. `grad` is the
   * very tensor tf.variableGrads returns for it. Called synchronously from inside the backward
   * pass, later layers first; `grad` belongs to the pass: read it (dataSync), do not dispose it.
   */
  gradientReady(parameter: number, grad: tf.Tensor): void;
}

/** A pass the tap cannot follow: it would deliver a gradient before it is final, or never. */
export class GradientTapError extends Error {
  override name = 'GradientTapError';
}

/**
 * tf.variableGrads(f) over `weights` (tfjs-layers' LayerVariables, in the trainable order), with
 * `listener` told as each weight's gradient becomes final.
 *
 * How: for the duration of the pass each weight's `read()` (which Dense, Conv2D,
 * BatchNormalization... call once per forward pass) is patched, on the instance, to return an
 * identity of the variable made with tf.customGrad. The tape runs its nodes in reverse order, so
 * the identity's gradient function runs after every consumer of its output has added its part:
 * its dy is the weight's whole gradient, and it returns dy itself as the gradient of the
 * variable, so what variableGrads returns is the same tensor, bit for bit, with no copy. The
 * identity's forward value is tf.clone, which shares the variable's data on the cpu backend and
 * on wasm (our Identity kernel, wasm-training-kernels.ts) and is disposed with the forward pass.
 *
 * A weight read twice in one pass would have two identities, and the first to run in the
 * backward pass would see only part of the gradient: the second read throws GradientTapError
 * (naming the weight) rather than fall back, because no zoo model does it and a silent fallback
 * would hide the lost overlap. So does a pass that produced a weight's gradient without reading
 * it through read() (the listener would wait for it forever). The reads are restored in every
 * case, and a failed pass leaves no tensor behind.
 */
export function tappedVariableGrads(
  weights: readonly tfl.LayerVariable[],
  f: () => tf.Scalar,
  listener: GradientListener,
): { value: tf.Scalar; grads: tf.NamedTensorMap } {
  const variables = weights.map((w) => w.read() as tf.Variable);
  const delivered = new Array<boolean>(weights.length).fill(false);
  const restores = weights.map((weight, parameter) =>
    patchRead(weight, tapOf(variables[parameter], parameter, listener, delivered)),
  );
  let result: { value: tf.Scalar; grads: tf.NamedTensorMap };
  try {
    result = tf.variableGrads(() => {
      const loss = f();
      listener.backwardStarted?.();
      return loss;
    }, variables);
  } catch (error) {
    discardTape();
    throw error;
  } finally {
    for (const restore of restores) restore();
  }
  const missed = variables.findIndex((v, p) => !delivered[p] && result.grads[v.name] !== undefined);
  if (missed >= 0) {
    result.value.dispose();
    tf.dispose(result.grads);
    throw new GradientTapError(
      `the gradient of weight ${weights[missed].name} (parameter ${missed}) was computed without ` +
        'going through its read(): the gradient tap cannot tell when it is final',
    );
  }
  return result;
}

/**
 * Frees what the tape of a pass that threw had saved for its backward pass, as gradients() does
 * after a backward pass: those tensors are kept (tf.keep), so no tidy frees them, and tfjs drops
 * the tape of a failed pass with them still allocated. Only when no outer pass is recording.
 */
function discardTape(): void {
  const state = tf.engine().state;
  if (state.gradientDepth > 0 || state.activeTape == null) return;
  for (const node of state.activeTape) for (const saved of node.saved ?? []) saved.dispose();
  state.activeTape = [];
}

/** A function that reads `variable` through an identity whose gradient tells the listener. */
function tapOf(
  variable: tf.Variable,
  parameter: number,
  listener: GradientListener,
  delivered: boolean[],
): () => tf.Tensor {
  const identity = tf.customGrad((x) => ({
    value: tf.clone(x as tf.Tensor),
    gradFunc: (dy: tf.Tensor) => {
      delivered[parameter] = true;
      listener.gradientReady(parameter, dy);
      return dy;
    },
  }));
  return () => identity(variable);
}

/**
 * Makes `weight.read()` return `tapped()` once; a second read throws. Returns what restores the
 * instance as it was (the class's read(), or an own read() that someone set before us).
 */
function patchRead(weight: tfl.LayerVariable, tapped: () => tf.Tensor): () => void {
  const own = Object.getOwnPropertyDescriptor(weight, 'read');
  let reads = 0;
  weight.read = () => {
    reads++;
    if (reads > 1) {
      throw new GradientTapError(
        `weight ${weight.name} is read ${reads} times in one forward pass: its gradient is ` +
          'final only after every read has been differentiated, so the gradient tap cannot ' +
          'deliver it early (tap each weight once, or compute the gradients without the tap)',
      );
    }
    return tapped();
  };
  return () => {
    if (own) Object.defineProperty(weight, 'read', own);
    else Reflect.deleteProperty(weight, 'read');
  };
}
