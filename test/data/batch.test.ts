import { describe, expect, it } from 'vitest';
import {
  type BatchSpec,
  buildBatch,
  CIFAR10_MEAN_RGB,
  CIFAR10_STD_RGB,
  VGG_MEAN_RGB,
} from '../../src/shared/data/batch.js';
import { IMAGE_BYTES, type LabeledImages } from '../../src/shared/data/labeled-images.js';

/** Images whose every byte is random, so any misplaced pixel shows. */
function randomImages(count: number): LabeledImages {
  const pixels = new Uint8Array(count * IMAGE_BYTES);
  let s = 12345;
  for (let i = 0; i < pixels.length; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    pixels[i] = s >>> 24;
  }
  const labels = Uint8Array.from({ length: count }, (_, i) => (i * 7) % 10);
  return { count, labels, pixels };
}

const images = randomImages(40);
const plain: BatchSpec = { preprocessing: 'scale', augment: false, seed: 1, epoch: 0 };
const augmented: BatchSpec = { ...plain, augment: true };

/** The source byte behind NHWC output (y, x, c) of image i after crop offset (dy, dx) and flip. */
function expectedRaw(
  i: number,
  y: number,
  x: number,
  c: number,
  dy: number,
  dx: number,
  flip: boolean,
) {
  const sy = y + dy;
  const sx = (flip ? 31 - x : x) + dx;
  if (sy < 0 || sy > 31 || sx < 0 || sx > 31) return 0;
  return images.pixels[i * IMAGE_BYTES + c * 1024 + sy * 32 + sx];
}

/** Image k of the batch, compared with every crop and flip: which ones match exactly. */
function matchingTransforms(xs: Float32Array, k: number, i: number): string[] {
  const found: string[] = [];
  for (let dy = -4; dy <= 4; dy++) {
    for (let dx = -4; dx <= 4; dx++) {
      for (const flip of [false, true]) {
        let same = true;
        for (let p = 0; p < IMAGE_BYTES && same; p++) {
          const c = p % 3;
          const x = Math.floor(p / 3) % 32;
          const y = Math.floor(p / 96);
          same =
            xs[k * IMAGE_BYTES + p] === Math.fround(expectedRaw(i, y, x, c, dy, dx, flip) / 255);
        }
        if (same) found.push(`${dy},${dx},${flip}`);
      }
    }
  }
  return found;
}

function image(xs: Float32Array, k: number): Float32Array {
  return xs.subarray(k * IMAGE_BYTES, (k + 1) * IMAGE_BYTES);
}

describe('buildBatch', () => {
  it('turns CHW bytes into NHWC floats in batch order, with int32 labels', () => {
    const batch = buildBatch(images, [7, 2, 7], plain);
    expect(batch.count).toBe(3);
    expect(batch.xs.length).toBe(3 * IMAGE_BYTES);
    expect(Array.from(batch.labels)).toEqual([9, 4, 9]);
    expect(batch.labels).toBeInstanceOf(Int32Array);
    for (const [k, i] of [7, 2, 7].entries()) {
      for (const [y, x, c] of [
        [0, 0, 0],
        [0, 1, 2],
        [5, 31, 1],
        [31, 0, 2],
        [17, 9, 0],
      ]) {
        expect(batch.xs[k * IMAGE_BYTES + (y * 32 + x) * 3 + c]).toBe(
          Math.fround(images.pixels[i * IMAGE_BYTES + c * 1024 + y * 32 + x] / 255),
        );
      }
    }
  });

  it('applies each preprocessing per channel', () => {
    const raw = (k: number) => images.pixels[3 * IMAGE_BYTES + (k % 3) * 1024 + Math.floor(k / 3)];
    const spec = (preprocessing: BatchSpec['preprocessing']) => ({ ...plain, preprocessing });
    const scaled = buildBatch(images, [3], spec('scale')).xs;
    const centred = buildBatch(images, [3], spec('mean-subtract')).xs;
    const standard = buildBatch(images, [3], spec('standardize')).xs;
    let min = Infinity;
    let max = -Infinity;
    for (let k = 0; k < IMAGE_BYTES; k++) {
      const c = k % 3;
      expect(scaled[k]).toBeCloseTo(raw(k) / 255, 6);
      expect(centred[k]).toBeCloseTo(raw(k) - VGG_MEAN_RGB[c], 4);
      expect(standard[k]).toBeCloseTo((raw(k) - CIFAR10_MEAN_RGB[c]) / CIFAR10_STD_RGB[c], 5);
      min = Math.min(min, scaled[k]);
      max = Math.max(max, scaled[k]);
    }
    expect(min).toBeGreaterThanOrEqual(0);
    expect(max).toBeLessThanOrEqual(1);
    // The VGG recipe does not rescale: values stay on the 0–255 scale.
    expect(Math.max(...centred)).toBeGreaterThan(100);
  });

  it('augments each image by a crop of the 4-pixel zero-padded image, possibly flipped', () => {
    const batch = buildBatch(images, [0, 1, 2, 3, 4, 5], augmented);
    for (let k = 0; k < 6; k++) expect(matchingTransforms(batch.xs, k, k)).toHaveLength(1);
  });

  it('draws every crop offset and both flips, about evenly', () => {
    const indices = Array.from({ length: images.count }, (_, i) => i);
    const seen = new Map<string, number>();
    for (let epoch = 0; epoch < 60; epoch++) {
      const batch = buildBatch(images, indices, { ...augmented, epoch });
      for (const k of indices) {
        const [t] = matchingTransforms(batch.xs, k, k);
        seen.set(t, (seen.get(t) ?? 0) + 1);
      }
    }
    expect(seen.size).toBe(162);
    // 2,400 draws over 162 transforms: 14.8 each on average.
    for (const n of seen.values()) expect(n).toBeGreaterThan(2);
    for (const n of seen.values()) expect(n).toBeLessThan(40);
  });

  it('pads with black on the 0–255 scale, whatever the preprocessing', () => {
    const indices = Array.from({ length: images.count }, (_, i) => i);
    const spec: BatchSpec = { ...augmented, preprocessing: 'standardize' };
    const standard = buildBatch(images, indices, spec);
    const scaled = buildBatch(images, indices, { ...spec, preprocessing: 'scale' });
    let padded = 0;
    for (const k of indices) {
      const [dy] = matchingTransforms(scaled.xs, k, k)[0].split(',').map(Number);
      if (dy >= 0) continue;
      // The crop starts above the image, so its whole first row is padding.
      padded++;
      for (let p = 0; p < 96; p++) {
        const c = p % 3;
        expect(scaled.xs[k * IMAGE_BYTES + p]).toBe(0);
        expect(standard.xs[k * IMAGE_BYTES + p]).toBe(
          Math.fround(-CIFAR10_MEAN_RGB[c] / CIFAR10_STD_RGB[c]),
        );
      }
    }
    expect(padded).toBeGreaterThan(0);
  });

  it("keys each sample's augmentation by (seed, epoch, index) only, not by batch or position", () => {
    const a = buildBatch(images, [5, 3, 9, 12], augmented);
    const b = buildBatch(images, [12, 9], augmented);
    const c = buildBatch(images, [9], augmented);
    expect(image(b.xs, 1)).toEqual(image(a.xs, 2));
    expect(image(c.xs, 0)).toEqual(image(a.xs, 2));
    expect(image(b.xs, 0)).toEqual(image(a.xs, 3));
  });

  it('keys augmentation by sampleIds when the images are a subset (e.g. served for one batch)', () => {
    const whole = buildBatch(images, [30, 11], augmented);
    const subset: LabeledImages = {
      count: 2,
      labels: Uint8Array.from([images.labels[11], images.labels[30]]),
      pixels: Uint8Array.from([
        ...images.pixels.subarray(11 * IMAGE_BYTES, 12 * IMAGE_BYTES),
        ...images.pixels.subarray(30 * IMAGE_BYTES, 31 * IMAGE_BYTES),
      ]),
    };
    const served = buildBatch(subset, [1, 0], { ...augmented, sampleIds: [30, 11] });
    expect(served.xs).toEqual(whole.xs);
    expect(served.labels).toEqual(whole.labels);
    expect(buildBatch(subset, [1, 0], augmented).xs).not.toEqual(whole.xs);
    expect(() => buildBatch(subset, [1, 0], { ...augmented, sampleIds: [30] })).toThrow(RangeError);
  });

  it('draws new augmentations in another epoch or with another seed', () => {
    const indices = Array.from({ length: 20 }, (_, i) => i);
    const e0 = buildBatch(images, indices, augmented);
    const e1 = buildBatch(images, indices, { ...augmented, epoch: 1 });
    const s2 = buildBatch(images, indices, { ...augmented, seed: 2 });
    const differs = (x: Float32Array, y: Float32Array) =>
      indices.filter((k) => !image(x, k).every((v, p) => v === image(y, k)[p])).length;
    // 1 in 162 transforms repeat by chance, so nearly every image must change.
    expect(differs(e0.xs, e1.xs)).toBeGreaterThanOrEqual(17);
    expect(differs(e0.xs, s2.xs)).toBeGreaterThanOrEqual(17);
    expect(buildBatch(images, indices, augmented).xs).toEqual(e0.xs);
  });

  it('does not change images across epochs without augmentation', () => {
    expect(buildBatch(images, [1, 2], plain).xs).toEqual(
      buildBatch(images, [1, 2], { ...plain, epoch: 9, seed: 4 }).xs,
    );
  });

  it('handles an empty batch and rejects indices outside the set', () => {
    expect(buildBatch(images, [], plain).count).toBe(0);
    expect(() => buildBatch(images, [0, 40], plain)).toThrow(/batch index 40 at position 1/);
    expect(() => buildBatch(images, [-1], plain)).toThrow(RangeError);
    expect(() => buildBatch(images, [1.5], plain)).toThrow(RangeError);
  });
});
