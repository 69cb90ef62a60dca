import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { UserError } from '../errors.js';
import { writeFileAtomic } from './atomic-file.js';
import type { OptimizerState } from './optimizer.js';
import type { DataCursor } from './sampler.js';

/** Everything a run needs to continue exactly where it stopped. */
export interface Checkpoint {
  /** Updates applied so far: the next step is number `step`. */
  step: number;
  /** Where the next global batch starts. */
  cursor: DataCursor;
  seed: number;
  /** The run's TrainConfig as JSON (validate it with parseTrainConfig when reading). */
  config: unknown;
  /** architectureFingerprint of the model the weights belong to. */
  architecture: string;
  /** All weights in TrainStep.weightsLayout. */
  weights: Float32Array;
  optimizer: OptimizerState;
}

/** The file a run folder keeps its latest checkpoint in. */
export const CHECKPOINT_FILE = 'checkpoint.ckpt';

const MAGIC = Buffer.from('TFDDPCK2', 'latin1');
/** The magic of the first format, whose header was outside the checksum. */
const MAGIC_V1 = Buffer.from('TFDDPCK1', 'latin1');
const FORMAT_VERSION = 2;
/** The file ends with the sha256 of every byte before it. */
const CHECKSUM_BYTES = 32;
const SLOT_PREFIX = 'optimizer/';

interface Header {
  version: number;
  step: number;
  cursor: DataCursor;
  seed: number;
  config: unknown;
  architecture: string;
  optimizer: { kind: OptimizerState['kind']; iterations: number };
  /** The float32 arrays after the header, in order. */
  sections: { name: string; length: number }[];
}

/**
 * Writes `<dir>/checkpoint.ckpt` atomically (see writeFileAtomic), replacing the previous one
 * only once the new one is complete and on disk. Layout: 8 magic bytes, a u32 (LE) header
 * length, the JSON header, zero padding to a multiple of 4, the float32 sections (weights,
 * then each optimiser slot), and the sha256 of all of that: an edit anywhere (the step in the
 * header as much as a weight) or a cut is detected. Returns the file's path.
 */
export async function writeCheckpoint(dir: string, ckpt: Checkpoint): Promise<string> {
  const arrays: [string, Float32Array][] = [
    ['weights', ckpt.weights],
    ...Object.entries(ckpt.optimizer.slots).map(
      ([name, data]) => [SLOT_PREFIX + name, data] as [string, Float32Array],
    ),
  ];
  const payload = arrays.map(([, a]) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
  const header: Header = {
    version: FORMAT_VERSION,
    step: ckpt.step,
    cursor: ckpt.cursor,
    seed: ckpt.seed,
    config: ckpt.config,
    architecture: ckpt.architecture,
    optimizer: { kind: ckpt.optimizer.kind, iterations: ckpt.optimizer.iterations },
    sections: arrays.map(([name, a]) => ({ name, length: a.length })),
  };
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const length = Buffer.alloc(4);
  length.writeUInt32LE(json.length);
  const padding = Buffer.alloc((4 - ((MAGIC.length + 4 + json.length) % 4)) % 4);
  const chunks = [MAGIC, length, json, padding, ...payload];
  const hash = createHash('sha256');
  for (const chunk of chunks) hash.update(chunk);
  const path = join(dir, CHECKPOINT_FILE);
  await writeFileAtomic(path, [...chunks, hash.digest()]);
  return path;
}

/**
 * Reads the checkpoint of a run folder (or a checkpoint file given directly). Throws UserError
 * naming the file when it is missing, not a checkpoint, of the older format, or edited or
 * truncated (the checksum over the whole file, checked before anything in it is believed).
 */
export async function readCheckpoint(dirOrFile: string): Promise<Checkpoint> {
  const path = dirOrFile.endsWith('.ckpt') ? dirOrFile : join(dirOrFile, CHECKPOINT_FILE);
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UserError(
      code === 'ENOENT'
        ? `no checkpoint at ${path}: the run wrote none yet, or this is not a run folder`
        : `cannot read checkpoint ${path}: ${(err as Error).message}`,
    );
  }
  const damaged = (what: string) =>
    new UserError(`checkpoint ${path} is damaged (${what}): it cannot be resumed`);
  const magic = bytes.subarray(0, MAGIC.length);
  if (magic.equals(MAGIC_V1)) {
    throw new UserError(
      `checkpoint ${path} was written by an older version of tfjs-ddp (format 1); ` +
        'continue that run with the version that wrote it, or start a new run',
    );
  }
  if (bytes.length < MAGIC.length || !magic.equals(MAGIC)) {
    throw new UserError(`${path} is not a tfjs-ddp checkpoint`);
  }
  const body = bytes.subarray(0, Math.max(0, bytes.length - CHECKSUM_BYTES));
  const sum = bytes.subarray(body.length);
  if (body.length < MAGIC.length + 4 || !createHash('sha256').update(body).digest().equals(sum)) {
    throw damaged('its checksum does not match: the file was edited or cut short');
  }
  // From here on the bytes are the ones writeCheckpoint wrote.
  const headerLength = body.readUInt32LE(MAGIC.length);
  const headerStart = MAGIC.length + 4;
  const header = JSON.parse(
    body.subarray(headerStart, headerStart + headerLength).toString('utf8'),
  ) as Header;
  const payload = body.subarray(Math.ceil((headerStart + headerLength) / 4) * 4);
  const sections = new Map<string, Float32Array>();
  let offset = 0;
  for (const { name, length } of header.sections) {
    // Copy into a fresh, aligned buffer: the file's Buffer may start at any byte offset.
    const copy = new Uint8Array(payload.subarray(offset, offset + length * 4));
    sections.set(name, new Float32Array(copy.buffer));
    offset += length * 4;
  }
  const weights = sections.get('weights');
  if (!weights) throw damaged('it holds no weights');
  const slots: Record<string, Float32Array> = {};
  for (const [name, data] of sections) {
    if (name.startsWith(SLOT_PREFIX)) slots[name.slice(SLOT_PREFIX.length)] = data;
  }
  return {
    step: header.step,
    cursor: header.cursor,
    seed: header.seed,
    config: header.config,
    architecture: header.architecture,
    weights,
    optimizer: { kind: header.optimizer.kind, iterations: header.optimizer.iterations, slots },
  };
}
