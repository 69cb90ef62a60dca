import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { UserError } from '../errors.js';

/** The shard size of tfjs-converter and of tfjs's browser exports: 4 MiB. */
const SHARD_BYTES = 4 * 1024 * 1024;
const MODEL_JSON = 'model.json';

/**
 * Writes `model` in the standard TensorFlow.js layers format: `dir/model.json` (topology and
 * weights manifest) and weight shards `group1-shard{i}of{n}.bin` of 4 MiB, loadable by
 * `tf.loadLayersModel` (tfjs-node's file://, a browser over http://) and by loadModel().
 * All weights are written, BatchNorm moving statistics included; no optimiser state.
 * The shards are written before model.json, which is renamed into place last, so a reader never
 * sees a model.json whose shards are missing. Creates `dir` if needed; overwrites a model there.
 */
export async function saveModel(model: tfl.LayersModel, dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      const data = new Uint8Array(tf.io.CompositeArrayBuffer.join(artifacts.weightData ?? []));
      const count = Math.max(1, Math.ceil(data.byteLength / SHARD_BYTES));
      const paths: string[] = [];
      for (let i = 0; i < count; i++) {
        const name = `group1-shard${i + 1}of${count}.bin`;
        await writeFile(
          path.join(dir, name),
          data.subarray(i * SHARD_BYTES, (i + 1) * SHARD_BYTES),
        );
        paths.push(name);
      }
      const modelJson: tf.io.ModelJSON = {
        modelTopology: artifacts.modelTopology as object,
        format: artifacts.format,
        generatedBy: artifacts.generatedBy,
        convertedBy: artifacts.convertedBy,
        weightsManifest: [{ paths, weights: artifacts.weightSpecs ?? [] }],
      };
      const target = path.join(dir, MODEL_JSON);
      await writeFile(`${target}.tmp`, JSON.stringify(modelJson));
      await rename(`${target}.tmp`, target);
      return { modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(artifacts) };
    }),
  );
}

/**
 * Loads a model written by saveModel() (or any tfjs layers-format directory whose manifest
 * names files in that directory). Dropout layers come back as standard tfjs Dropout, identity at
 * inference. The caller owns and disposes the model. Throws UserError when model.json or a shard
 * is missing or unreadable, or the weights do not fit the topology.
 */
export async function loadModel(dir: string): Promise<tfl.LayersModel> {
  const jsonPath = path.join(dir, MODEL_JSON);
  const modelJson = parseModelJson(await readOrFail(jsonPath, 'model file'), jsonPath);
  const artifacts = await tf.io.getModelArtifactsForJSON(modelJson, async (manifest) => {
    const buffers: ArrayBuffer[] = [];
    for (const group of manifest) {
      for (const file of group.paths) {
        // A fresh copy: a Buffer may be a view into Node's shared pool.
        buffers.push(new Uint8Array(await readOrFail(path.join(dir, file), 'weight shard')).buffer);
      }
    }
    return [tf.io.getWeightSpecs(manifest), tf.io.CompositeArrayBuffer.join(buffers)];
  });
  try {
    return await tfl.loadLayersModel(tf.io.fromMemory(artifacts));
  } catch (err) {
    throw new UserError(`${jsonPath}: cannot load the model: ${(err as Error).message}`);
  }
}

async function readOrFail(file: string, what: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (err) {
    throw new UserError(`cannot read ${what} ${file}: ${(err as Error).message}`);
  }
}

function parseModelJson(bytes: Buffer, file: string): tf.io.ModelJSON {
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new UserError(`${file} is not valid JSON: ${(err as Error).message}`);
  }
  const m = json as Partial<tf.io.ModelJSON> | null;
  if (m === null || typeof m !== 'object' || m.modelTopology == null || !m.weightsManifest) {
    throw new UserError(`${file} is not a TensorFlow.js model (no modelTopology/weightsManifest)`);
  }
  return m as tf.io.ModelJSON;
}
