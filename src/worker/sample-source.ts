import { Split } from '../gen/tfjs_ddp/v1/coordinator.js';
import { buildBatch } from '../shared/data/batch.js';
import { IMAGE_BYTES, type LabeledImages } from '../shared/data/labeled-images.js';
import { loadDataset } from '../shared/data/load-dataset.js';
import { batchSpec, inMemorySamples, type SampleSource } from '../shared/data/sample-source.js';
import { MAX_FETCH_SAMPLES, type RunSettings } from '../shared/distributed/run-settings.js';
import { UserError } from '../shared/errors.js';

/**
 * Reads the data the run names (its dataset, validation size and seed) from `dataDir` (or the
 * cache, or generates it), and checks that its splits have the coordinator's sizes.
 */
export async function localSamples(
  settings: RunSettings,
  dataDir: string | undefined,
): Promise<SampleSource> {
  const { train } = settings;
  const data = await loadDataset({
    dataset: train.data.dataset,
    dataDir: train.data.dataset === 'cifar10' ? dataDir : undefined,
    valSize: train.data.valSize,
    seed: train.seed,
  });
  if (data.train.count !== settings.trainCount || data.val.count !== settings.valCount) {
    throw new UserError(
      `this worker's data${data.dataDir ? ` in ${data.dataDir}` : ''} has ${data.train.count} training and ` +
        `${data.val.count} validation images, the coordinator's ${settings.trainCount} and ${settings.valCount}: ` +
        'give every worker the same data with --data, or run with --data-from coordinator',
    );
  }
  return inMemorySamples(data, train);
}

/** Samples fetched from the coordinator with FetchSamples (`fetch`), batch by batch. */
export function fetchedSamples(
  settings: RunSettings,
  fetch: (split: Split, indices: readonly number[]) => Promise<LabeledImages>,
): SampleSource {
  const fetchAll = async (split: Split, indices: readonly number[]): Promise<LabeledImages> => {
    if (indices.length <= MAX_FETCH_SAMPLES) return fetch(split, indices);
    const parts: LabeledImages[] = [];
    for (let i = 0; i < indices.length; i += MAX_FETCH_SAMPLES) {
      parts.push(await fetch(split, indices.slice(i, i + MAX_FETCH_SAMPLES)));
    }
    return concat(parts);
  };
  return {
    async trainBatch(indices, epoch) {
      const images = await fetchAll(Split.SPLIT_TRAIN, indices);
      const local = Uint32Array.from({ length: images.count }, (_, k) => k);
      // sampleIds keep augmentation keyed by the global index, as with local data.
      return buildBatch(images, local, { ...batchSpec(settings.train, epoch), sampleIds: indices });
    },
    async evalImages(indices) {
      return { images: await fetchAll(Split.SPLIT_VAL, indices) };
    },
  };
}

function concat(parts: readonly LabeledImages[]): LabeledImages {
  const count = parts.reduce((n, p) => n + p.count, 0);
  const labels = new Uint8Array(count);
  const pixels = new Uint8Array(parts.reduce((n, p) => n + p.pixels.length, 0));
  let at = 0;
  for (const p of parts) {
    labels.set(p.labels, at);
    pixels.set(p.pixels, at * IMAGE_BYTES);
    at += p.count;
  }
  return { count, labels, pixels };
}
