import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CHECKPOINT_FILE, readCheckpoint } from '../../shared/training/checkpoint.js';

/** What a run folder holds after a chaos run: its checkpoint, read as a resume would. */
export type CheckpointState =
  | { kind: 'ok'; step: number }
  | { kind: 'none' }
  | { kind: 'damaged'; message: string };

/** Reads the run folder's checkpoint with the project's own reader (checksum included). */
export async function checkpointState(runDir: string): Promise<CheckpointState> {
  if (!existsSync(join(runDir, CHECKPOINT_FILE))) return { kind: 'none' };
  try {
    const checkpoint = await readCheckpoint(runDir);
    return { kind: 'ok', step: checkpoint.step };
  } catch (err) {
    return { kind: 'damaged', message: (err as Error).message };
  }
}

/** Temporary checkpoint files left in the run folder (a kill during writing must leave none). */
export async function leftoverTemporaryFiles(runDir: string): Promise<string[]> {
  if (!existsSync(runDir)) return [];
  return (await readdir(runDir)).filter((name) => name.includes('.tmp'));
}

interface WeightsManifest {
  weightsManifest: {
    paths: string[];
    weights: { name: string; shape: number[]; dtype?: string }[];
  }[];
}

/**
 * The exported model's tensors by name (`<runDir>/model`, the TensorFlow.js layers format the
 * run writes when it completes); undefined when the run exported no model.
 */
export async function exportedTensors(
  runDir: string,
): Promise<Map<string, Float32Array> | undefined> {
  const dir = join(runDir, 'model');
  if (!existsSync(join(dir, 'model.json'))) return undefined;
  const model = JSON.parse(await readFile(join(dir, 'model.json'), 'utf8')) as WeightsManifest;
  const tensors = new Map<string, Float32Array>();
  for (const group of model.weightsManifest) {
    const bytes = Buffer.concat(await Promise.all(group.paths.map((p) => readFile(join(dir, p)))));
    let offset = 0;
    for (const weight of group.weights) {
      if ((weight.dtype ?? 'float32') !== 'float32')
        throw new Error(`${weight.name}: only float32 weights are compared`);
      const length = weight.shape.reduce((a, b) => a * b, 1);
      const copy = new Float32Array(length);
      copy.set(
        new Float32Array(
          bytes.buffer.slice(bytes.byteOffset + offset, bytes.byteOffset + offset + length * 4),
        ),
      );
      tensors.set(weight.name, copy);
      offset += length * 4;
    }
  }
  return tensors;
}

/**
 * The largest relative error ‖a − b‖₂ / ‖b‖₂ over the tensors of `reference` (a tensor missing
 * from `weights`, or of another size, counts as infinitely far).
 */
export function maxRelativeError(
  weights: ReadonlyMap<string, Float32Array>,
  reference: ReadonlyMap<string, Float32Array>,
): number {
  let worst = 0;
  for (const [name, b] of reference) {
    const a = weights.get(name);
    if (!a || a.length !== b.length) return Number.POSITIVE_INFINITY;
    let diff = 0;
    let norm = 0;
    for (let i = 0; i < b.length; i++) {
      diff += (a[i] - b[i]) ** 2;
      norm += b[i] ** 2;
    }
    worst = Math.max(worst, norm === 0 ? Math.sqrt(diff) : Math.sqrt(diff / norm));
  }
  return worst;
}
