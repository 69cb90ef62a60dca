import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { buildBatch, type Preprocessing } from '../data/batch.js';
import type { LabeledImages } from '../data/labeled-images.js';
import { logitsModel } from '../models/zoo.js';

/**
 * Evaluation results as sums, so that shards evaluated by different workers add up
 * (mergeEvalSums) to exactly what one process gets on the whole split.
 */
export interface EvalSums {
  /** Σ softmax cross-entropy over the samples. */
  lossSum: number;
  correct: number;
  count: number;
  /** classCount × classCount counts, row-major: confusion[t·classCount + p] = label t predicted p. */
  confusion: number[];
  classCount: number;
}

/** What `tfjs-ddp eval --json` prints and the run's evaluation lines are made from. */
export interface EvalSummary {
  accuracy: number;
  loss: number;
  count: number;
  perClass: { class: string; accuracy: number; count: number }[];
  /** Rows: true class; columns: predicted class. */
  confusion: number[][];
}

export interface EvalOptions {
  preprocessing: Preprocessing;
  batchSize: number;
  /** The samples to evaluate (a worker's shard); default: all of `images`. */
  indices?: ArrayLike<number>;
}

/**
 * Evaluates a zoo model (or one loaded from files) in inference mode: no dropout, BatchNorm on
 * its moving statistics, no augmentation. Holds a logits view of the model, which it does not
 * own: dispose the model, not the evaluator. Every tensor is freed before run() returns.
 */
export class Evaluator {
  private readonly logits: tfl.LayersModel;
  private readonly classCount: number;

  constructor(model: tfl.LayersModel) {
    this.logits = logitsModel(model);
    this.classCount = (model.outputs[0].shape as number[])[1];
  }

  run(images: LabeledImages, opts: EvalOptions): EvalSums {
    const k = this.classCount;
    const sums: EvalSums = {
      lossSum: 0,
      correct: 0,
      count: 0,
      confusion: new Array<number>(k * k).fill(0),
      classCount: k,
    };
    const all = opts.indices ?? Uint32Array.from({ length: images.count }, (_, i) => i);
    const spec = { preprocessing: opts.preprocessing, augment: false, seed: 0, epoch: 0 };
    for (let start = 0; start < all.length; start += opts.batchSize) {
      const indices = Array.prototype.slice.call(all, start, start + opts.batchSize) as number[];
      const batch = buildBatch(images, indices, spec);
      const [lossSum, predicted] = tf.tidy(() => {
        const xs = tf.tensor4d(batch.xs, [batch.count, 32, 32, 3]);
        const logits = this.logits.apply(xs, { training: false }) as tf.Tensor;
        const oneHot = tf.oneHot(tf.tensor1d(batch.labels, 'int32'), k);
        const loss = tf.losses.softmaxCrossEntropy(
          oneHot,
          logits,
          undefined,
          undefined,
          tf.Reduction.SUM,
        );
        return [loss.dataSync()[0], tf.argMax(logits, 1).dataSync()] as const;
      });
      sums.lossSum += lossSum;
      sums.count += batch.count;
      for (let i = 0; i < batch.count; i++) {
        const label = batch.labels[i];
        if (predicted[i] === label) sums.correct++;
        sums.confusion[label * k + predicted[i]]++;
      }
    }
    return sums;
  }
}

/** Adds two workers' sums (commutative and associative: any reduction order gives the same). */
export function mergeEvalSums(a: EvalSums, b: EvalSums): EvalSums {
  if (a.classCount !== b.classCount) {
    throw new Error(`cannot merge evaluations of ${a.classCount} and ${b.classCount} classes`);
  }
  return {
    lossSum: a.lossSum + b.lossSum,
    correct: a.correct + b.correct,
    count: a.count + b.count,
    confusion: a.confusion.map((c, i) => c + b.confusion[i]),
    classCount: a.classCount,
  };
}

/** Accuracy, mean loss, per-class accuracy and the confusion matrix, with class names. */
export function summarizeEval(sums: EvalSums, classNames: readonly string[]): EvalSummary {
  const k = sums.classCount;
  const confusion = Array.from({ length: k }, (_, t) => sums.confusion.slice(t * k, (t + 1) * k));
  const ratio = (a: number, b: number) => (b > 0 ? a / b : 0);
  return {
    accuracy: ratio(sums.correct, sums.count),
    loss: ratio(sums.lossSum, sums.count),
    count: sums.count,
    perClass: confusion.map((row, t) => {
      const count = row.reduce((a, b) => a + b, 0);
      return { class: classNames[t] ?? String(t), accuracy: ratio(row[t], count), count };
    }),
    confusion,
  };
}
