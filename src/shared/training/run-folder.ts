import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type * as tfl from '@tensorflow/tfjs-layers';
import { z } from 'zod';
import { dataConfigSchema, PREPROCESSINGS, type TrainConfig } from '../config/train-config.js';
import { UserError } from '../errors.js';
import {
  inputContract,
  inputContractSchema,
  outputContract,
  outputContractSchema,
} from '../models/input-contract.js';
import { saveModel } from '../models/model-files.js';
import { writeFileAtomic } from './atomic-file.js';
import { CHECKPOINT_FILE } from './checkpoint.js';

/**
 * A run folder holds: config.json (the TrainConfig), metrics.jsonl, checkpoint.ckpt (the
 * latest), and model/ (the exported model: model.json, weight shards, tfjs-ddp.json).
 */
export const RUNS_DIR = 'runs';
export const CONFIG_FILE = 'config.json';
export const METRICS_FILE = 'metrics.jsonl';
export const MODEL_DIR = 'model';
export const MODEL_METADATA_FILE = 'tfjs-ddp.json';

/** What `eval` needs besides the weights to evaluate a model as it was trained. */
export const modelMetadataSchema = z.object({
  format: z.literal('tfjs-ddp-model'),
  model: z.string(),
  preprocessing: z.enum(PREPROCESSINGS),
  classNames: z.array(z.string()),
  /** The data the model was trained on and how its validation split was cut. */
  data: dataConfigSchema,
  seed: z.number(),
  steps: z.number(),
  valAccuracy: z.number().nullable(),
  /** What the model takes and gives, for loading it elsewhere (absent in older exports). */
  input: inputContractSchema.optional(),
  output: outputContractSchema.optional(),
});
export type ModelMetadata = z.infer<typeof modelMetadataSchema>;

/** Creates `out`, or a new `runs/<model>-<timestamp>` folder; returns its absolute path. */
export async function createRunDir(model: string, out?: string): Promise<string> {
  if (out !== undefined) {
    const dir = resolve(out);
    await mkdir(dir, { recursive: true });
    if (existsSync(join(dir, CHECKPOINT_FILE))) {
      throw new UserError(
        `--out ${out} already holds a run (${CHECKPOINT_FILE}); continue it with --resume ${out}, or choose another folder`,
      );
    }
    return dir;
  }
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  for (let n = 0; ; n++) {
    const dir = resolve(RUNS_DIR, `${model}-${stamp}${n ? `-${n}` : ''}`);
    if (!existsSync(dir)) {
      await mkdir(dir, { recursive: true });
      return dir;
    }
  }
}

/** The most recently modified folder under runs/ that holds a checkpoint (for a bare --resume). */
export async function latestRunDir(): Promise<string> {
  const root = resolve(RUNS_DIR);
  const names = existsSync(root) ? await readdir(root) : [];
  let best: { dir: string; mtime: number } | undefined;
  for (const name of names) {
    const file = join(root, name, CHECKPOINT_FILE);
    if (!existsSync(file)) continue;
    const mtime = (await stat(file)).mtimeMs;
    if (!best || mtime > best.mtime) best = { dir: join(root, name), mtime };
  }
  if (!best) {
    throw new UserError(`--resume: no run with a checkpoint under ${root}; give the run folder`);
  }
  return best.dir;
}

export async function writeRunConfig(runDir: string, config: TrainConfig): Promise<void> {
  await writeJson(join(runDir, CONFIG_FILE), config);
}

/**
 * Writes the model in the TF.js layers format to `<runDir>/model/` (loadable by
 * tf.loadLayersModel) and its metadata next to it (tfjs-ddp.json, written last), with the
 * input contract of the model (see models/input-contract.ts). Returns the model folder.
 */
export async function exportModel(
  model: tfl.LayersModel,
  runDir: string,
  metadata: Omit<ModelMetadata, 'format' | 'input' | 'output'>,
): Promise<string> {
  const dir = join(runDir, MODEL_DIR);
  await saveModel(model, dir);
  await writeJson(join(dir, MODEL_METADATA_FILE), {
    format: 'tfjs-ddp-model',
    ...metadata,
    input: inputContract(metadata.preprocessing),
    output: outputContract(metadata.classNames.length),
  });
  return dir;
}

/** Reads `<modelDir>/tfjs-ddp.json`; throws UserError naming the file if absent or invalid. */
export async function readModelMetadata(modelDir: string): Promise<ModelMetadata> {
  const file = join(modelDir, MODEL_METADATA_FILE);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    throw new UserError(
      `${file} is missing: --model-dir must be a model exported by \`tfjs-ddp train\` (<run>/model)`,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new UserError(`${file} is not valid JSON`);
  }
  const parsed = modelMetadataSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new UserError(`${file}: ${issue.path.join('.') || 'file'}: ${issue.message}`);
  }
  return parsed.data;
}

async function writeJson(path: string, value: unknown): Promise<void> {
  await writeFileAtomic(path, [Buffer.from(`${JSON.stringify(value, null, 2)}\n`, 'utf8')]);
}
