import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, truncate, watch, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CHECKPOINT_FILE,
  type Checkpoint,
  readCheckpoint,
  writeCheckpoint,
} from '../../src/shared/training/checkpoint.js';
import { LOCK_FILE, RunFolderLock } from '../../src/shared/training/run-folder-lock.js';
import { ensureBuilt } from '../cli/run-cli.js';

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'checkpoint-'));
  await ensureBuilt();
}, 180_000);
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

function sample(step: number): Checkpoint {
  return {
    step,
    cursor: { epoch: 2, offset: 96 },
    seed: 42,
    config: { model: 'lenet5', batchSize: 32 },
    architecture: 'abc123',
    // An odd length: the sections after it start at offsets that are not multiples of 8.
    weights: Float32Array.from({ length: 1001 }, (_, i) => Math.sin(i) * step),
    optimizer: {
      kind: 'adam',
      iterations: step,
      slots: {
        m: Float32Array.from({ length: 1001 }, (_, i) => i / 7),
        v: Float32Array.from({ length: 1001 }, (_, i) => i * 1e-9),
      },
    },
  };
}

describe('checkpoints', () => {
  it('round-trip every field bit for bit and leave no temporary file behind', async () => {
    const dir = join(work, 'roundtrip');
    await mkdir(dir);
    await writeCheckpoint(dir, sample(3));
    await writeCheckpoint(dir, sample(7));
    expect(await readdir(dir)).toEqual([CHECKPOINT_FILE]);
    const back = await readCheckpoint(dir);
    expect(back).toEqual(sample(7));
  });

  it('refuse a missing, foreign, truncated or corrupted file with a message naming it', async () => {
    const dir = join(work, 'damaged');
    await mkdir(dir);
    const file = join(dir, CHECKPOINT_FILE);
    await expect(readCheckpoint(dir)).rejects.toThrow(`no checkpoint at ${file}`);
    await writeFile(file, 'hello, not a checkpoint');
    await expect(readCheckpoint(dir)).rejects.toThrow(`${file} is not a tfjs-ddp checkpoint`);
    const damaged = `checkpoint ${file} is damaged (its checksum does not match: the file was edited or cut short): it cannot be resumed`;
    await writeCheckpoint(dir, sample(1));
    const bytes = readFileSync(file);
    bytes[bytes.length - 40] ^= 0xff;
    await writeFile(file, bytes);
    await expect(readCheckpoint(dir)).rejects.toThrow(damaged);
    await writeCheckpoint(dir, sample(1));
    await truncate(file, bytes.length - 4);
    await expect(readCheckpoint(dir)).rejects.toThrow(damaged);
  });

  it('refuse a header edited in place (the step), with the same length', async () => {
    const dir = join(work, 'edited');
    await mkdir(dir);
    await writeCheckpoint(dir, sample(245));
    const file = join(dir, CHECKPOINT_FILE);
    const text = readFileSync(file).toString('latin1');
    expect(text).toContain('"step":245');
    await writeFile(file, Buffer.from(text.replace('"step":245', '"step":999'), 'latin1'));
    await expect(readCheckpoint(dir)).rejects.toThrow(
      `checkpoint ${file} is damaged (its checksum does not match`,
    );
  });

  it('refuse a checkpoint of the first format (header outside the checksum) as older', async () => {
    const dir = join(work, 'v1');
    await mkdir(dir);
    await writeCheckpoint(dir, sample(2));
    const file = join(dir, CHECKPOINT_FILE);
    const bytes = readFileSync(file);
    bytes.write('TFDDPCK1', 0, 'latin1');
    await writeFile(file, bytes);
    await expect(readCheckpoint(dir)).rejects.toThrow(
      `checkpoint ${file} was written by an older version of tfjs-ddp (format 1)`,
    );
  });

  it('survive a writer killed at any moment: the file is always a complete checkpoint', async () => {
    const dir = join(work, 'killed');
    await mkdir(dir);
    const floats = 4_000_000; // 16 MB of weights + 16 MB of momentum per checkpoint
    for (const delayMs of [0, 37, 113]) {
      const child = spawn(process.execPath, [
        join(import.meta.dirname, 'fixtures/checkpoint-writer.mjs'),
        dir,
        String(floats),
      ]);
      let written = 0;
      await new Promise<void>((resolve, reject) => {
        child.on('error', reject);
        child.stderr.on('data', (d) => reject(new Error(String(d))));
        child.stdout.on('data', (d: Buffer) => {
          written = Math.max(written, ...String(d).trim().split('\n').map(Number));
          if (written === 2) setTimeout(resolve, delayMs);
        });
      });
      child.kill('SIGKILL');
      await new Promise((resolve) => child.on('close', resolve));
      const ckpt = await readCheckpoint(dir);
      expect(ckpt.step).toBeGreaterThanOrEqual(written);
      expect(ckpt.weights.length).toBe(floats);
      expect(ckpt.weights.every((w) => w === ckpt.step)).toBe(true);
      expect(ckpt.optimizer.slots.momentum.every((w) => w === ckpt.step)).toBe(true);
    }
  });

  it('leave, when SIGKILLed mid-write, a temporary file that the next owner of the folder removes', async () => {
    const dir = join(work, 'killed-mid-write');
    await mkdir(dir);
    const floats = 16_000_000; // 64 MB of weights + 64 MB of momentum: a write takes a while
    const child = spawn(process.execPath, [
      join(import.meta.dirname, 'fixtures/checkpoint-writer.mjs'),
      dir,
      String(floats),
    ]);
    const closed = new Promise((resolve) => child.on('close', resolve));
    // Kill as soon as the second checkpoint's temporary file is created (inotify), long before
    // its 128 MB are written and renamed into place.
    const watcher = watch(dir);
    let written = 0;
    child.stdout.on('data', (d) => (written = Number(String(d).trim().split('\n').pop())));
    for await (const event of watcher) {
      if (written >= 1 && event.filename?.startsWith(`.${CHECKPOINT_FILE}.tmp-`)) {
        child.kill('SIGKILL');
        break;
      }
    }
    await closed;
    const temps = (await readdir(dir)).filter((name) => name !== CHECKPOINT_FILE);
    expect(temps).toHaveLength(1);
    expect((await readCheckpoint(dir)).step).toBe(1);
    const lock = await RunFolderLock.acquire(dir);
    expect((await readdir(dir)).sort()).toEqual([CHECKPOINT_FILE, LOCK_FILE]);
    await lock.release();
  }, 60_000);
});
