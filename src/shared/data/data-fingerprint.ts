import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { cifar10CacheDir } from './cache-dir.js';
import {
  CIFAR10_META_FILE,
  CIFAR10_TEST_FILE,
  CIFAR10_TRAIN_FILES,
  checkCifarFolder,
} from './cifar-binary-reader.js';

/** The files of a CIFAR-10 folder, by name, size and sha256 (JoinRequest.data). */
export interface DataFingerprint {
  /** Where the folder is, on the process that fingerprinted it (for messages). */
  dir: string;
  files: { name: string; size: number; sha256: string }[];
}

const FILES = [...CIFAR10_TRAIN_FILES, CIFAR10_TEST_FILE, CIFAR10_META_FILE];

/** Digests already computed by this process, by path, size, mtime and inode. */
const digests = new Map<string, string>();

/**
 * The fingerprint of the CIFAR-10 folder `dir`: every batch file and batches.meta.txt present,
 * each hashed as a stream (150 MB: about 0.1 s of sha256 on one core, plus the read) and
 * remembered for the process while its size, mtime and inode stay the same. Throws UserError
 * (checkCifarFolder) when `dir` is not a usable CIFAR-10 folder.
 */
export async function fingerprintCifarFolder(dir: string): Promise<DataFingerprint> {
  await checkCifarFolder(dir);
  const files: DataFingerprint['files'] = [];
  for (const name of FILES) {
    const path = join(dir, name);
    const info = await stat(path).catch(() => undefined);
    if (info === undefined) continue;
    const key = `${path}:${info.size}:${info.mtimeMs}:${info.ino}`;
    let sha256 = digests.get(key);
    if (sha256 === undefined) {
      const hash = createHash('sha256');
      await pipeline(createReadStream(path), hash);
      sha256 = hash.digest('hex');
      digests.set(key, sha256);
    }
    files.push({ name, size: info.size, sha256 });
  }
  return { dir, files };
}

/**
 * The fingerprint of the data a worker would read: its --data folder (errors in it are the
 * user's to fix: UserError), or else the cache folder if it holds CIFAR-10; undefined when there
 * is none (it would download, or the run fetches the images from the coordinator).
 */
export async function localDataFingerprint(
  dataDir: string | undefined,
): Promise<DataFingerprint | undefined> {
  if (dataDir !== undefined) return fingerprintCifarFolder(resolve(dataDir));
  return fingerprintCifarFolder(cifar10CacheDir()).catch(() => undefined);
}

/**
 * Why a worker's data (`worker`, absent when it has no folder) is not the coordinator's, in one
 * line naming each file that differs; undefined when every file is the same.
 */
export function dataMismatch(
  worker: DataFingerprint | undefined,
  coordinator: DataFingerprint,
): string | undefined {
  const remedy = 'give every worker the same files, or run with --data-from coordinator';
  if (worker === undefined || worker.files.length === 0) {
    return `the worker has no CIFAR-10 folder to prove it reads the coordinator's data (${coordinator.dir}): ${remedy}`;
  }
  const theirs = new Map(worker.files.map((f) => [f.name, f]));
  const ours = new Map(coordinator.files.map((f) => [f.name, f]));
  const differences: string[] = [];
  for (const name of FILES) {
    const w = theirs.get(name);
    const c = ours.get(name);
    if (w === undefined && c === undefined) continue;
    if (w === undefined) differences.push(`${name} is missing`);
    else if (c === undefined) differences.push(`${name} is not in the coordinator's`);
    else if (w.size !== c.size) differences.push(`${name} has ${w.size} bytes, not ${c.size}`);
    else if (w.sha256 !== c.sha256) {
      differences.push(
        `${name} has other bytes (same size; sha256 ${w.sha256.slice(0, 12)}… vs ${c.sha256.slice(0, 12)}…)`,
      );
    }
  }
  if (differences.length === 0) return undefined;
  return (
    `the worker's data in ${worker.dir} differs from the coordinator's in ${coordinator.dir}: ` +
    `${differences.join('; ')}: ${remedy}`
  );
}
