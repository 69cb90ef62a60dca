import { keyedRandom } from '../keyed-random.js';
import { IMAGE_BYTES, type LabeledImages } from './labeled-images.js';

const HUES = ['red', 'green', 'blue', 'yellow', 'magenta'];
const PALETTE = [
  [220, 40, 40],
  [40, 200, 60],
  [50, 70, 220],
  [230, 220, 50],
  [210, 50, 200],
];

/** Class k has hue k mod 5, striped in rows (k < 5) or in columns (k ≥ 5); the names say which. */
export const SYNTHETIC_CLASS_NAMES: readonly string[] = [
  ...HUES.map((h) => `${h}-rows`),
  ...HUES.map((h) => `${h}-columns`),
];
const SYNTHETIC_KEY = 0x53594e54; // 'SYNT'
const NOISE = 40;

/**
 * `count` generated 32×32 images in the CIFAR-10 layout. Image i of `stream` is a
 * function of (stream, i) only — not of the run's seed — so the data set is fixed, like
 * a real one; different streams (train 0, validation 1) give disjoint draws. Labels
 * cycle 0..9 (balanced classes). A class is a hue and a stripe direction, drawn with a
 * random period, phase and brightness plus per-pixel noise: colour alone tells only
 * half the classes apart, so a model must also learn the (spatial) stripe direction.
 */
export function syntheticImages(count: number, stream: number): LabeledImages {
  const labels = new Uint8Array(count);
  const pixels = new Uint8Array(count * IMAGE_BYTES);
  for (let i = 0; i < count; i++) {
    labels[i] = i % 10;
    drawImage(pixels, i * IMAGE_BYTES, labels[i], keyedRandom(SYNTHETIC_KEY, stream, i));
  }
  return { count, labels, pixels };
}

function drawImage(out: Uint8Array, offset: number, label: number, random: () => number): void {
  const colour = PALETTE[label % 5];
  const rows = label < 5;
  const period = 4 + random() * 4;
  const phase = random() * period;
  const brightness = (random() - 0.5) * 80;
  const stripe = Array.from(
    { length: 32 },
    (_, t) => 0.5 + 0.5 * Math.sin((2 * Math.PI * (t + phase)) / period),
  );
  for (let y = 0; y < 32; y++) {
    for (let x = 0; x < 32; x++) {
      const shade = 0.4 + 0.6 * stripe[rows ? y : x];
      const p = y * 32 + x;
      for (let c = 0; c < 3; c++) {
        const value = colour[c] * shade + brightness + (random() - 0.5) * 2 * NOISE;
        out[offset + c * 1024 + p] = Math.max(0, Math.min(255, Math.round(value)));
      }
    }
  }
}
