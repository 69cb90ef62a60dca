import { appendFile, mkdtemp, open, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  CIFAR10_BATCH_RECORDS,
  CIFAR10_CLASS_NAMES,
  CIFAR10_TEST_FILE,
  CIFAR10_TRAIN_FILES,
  checkCifarFolder,
  readCifarFolder,
} from '../../src/shared/data/cifar-binary-reader.js';
import { RECORD_BYTES } from '../../src/shared/data/labeled-images.js';
import { UserError } from '../../src/shared/errors.js';
import { writeSyntheticCifar } from '../helpers/synthetic-cifar.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cifar-reader-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function expectUserError(promise: Promise<unknown>, message: RegExp): Promise<void> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(UserError);
  expect((err as Error).message).toMatch(message);
}

async function setByte(path: string, offset: number, value: number): Promise<void> {
  const handle = await open(path, 'r+');
  await handle.write(Buffer.from([value]), 0, 1, offset);
  await handle.close();
}

describe('the batch sizes', () => {
  const OFFICIAL = CIFAR10_BATCH_RECORDS * RECORD_BYTES;

  /** An official-size folder, sparse (label 0, black pixels: valid records). */
  async function officialFolder(): Promise<void> {
    for (const file of [...CIFAR10_TRAIN_FILES, CIFAR10_TEST_FILE]) {
      await writeFile(join(dir, file), '');
      await truncate(join(dir, file), OFFICIAL);
    }
  }

  it('refuse an official batch cut or padded at a record boundary, naming the expected size', async () => {
    await officialFolder();
    await checkCifarFolder(dir);
    await truncate(join(dir, 'data_batch_3.bin'), OFFICIAL - RECORD_BYTES);
    await expect(checkCifarFolder(dir)).rejects.toThrow(
      `${join(dir, 'data_batch_3.bin')}: 30726927 bytes (9999 records), expected 30730000 ` +
        '(10000 records, as every official CIFAR-10 batch): the file was cut short or padded',
    );
    await truncate(join(dir, 'data_batch_3.bin'), OFFICIAL);
    await truncate(join(dir, CIFAR10_TEST_FILE), OFFICIAL + RECORD_BYTES);
    await expect(checkCifarFolder(dir)).rejects.toThrow(
      `${join(dir, CIFAR10_TEST_FILE)}: 30733073 bytes (10001 records), expected 30730000`,
    );
    await truncate(join(dir, 'data_batch_1.bin'), OFFICIAL - 20 * RECORD_BYTES);
    await expect(readCifarFolder(dir)).rejects.toThrow(
      `${join(dir, 'data_batch_1.bin')}: 30668540 bytes (9980 records), expected 30730000`,
    );
  });

  it('refuse a batch of a smaller copy that differs from the other four', async () => {
    await writeSyntheticCifar(dir, { perBatch: 6, withTest: true, testCount: 4 });
    await truncate(join(dir, 'data_batch_5.bin'), 5 * RECORD_BYTES);
    await expect(readCifarFolder(dir)).rejects.toThrow(
      `${join(dir, 'data_batch_5.bin')}: 15365 bytes (5 records), expected 18438 ` +
        '(6 records, as the other training batches of this folder): the file was cut short or padded',
    );
  });
});

describe('readCifarFolder', () => {
  it('reads back exactly what was written: five batches in order, the test batch, the names', async () => {
    const written = await writeSyntheticCifar(dir, { perBatch: 13, withTest: true, testCount: 7 });
    const folder = await readCifarFolder(dir);
    expect(folder.train.count).toBe(65);
    expect(folder.train.labels).toEqual(written.train.labels);
    expect(Buffer.from(folder.train.pixels).equals(Buffer.from(written.train.pixels))).toBe(true);
    expect(folder.test?.count).toBe(7);
    expect(folder.test?.labels).toEqual(written.test?.labels);
    expect(Buffer.from(folder.test!.pixels).equals(Buffer.from(written.test!.pixels))).toBe(true);
    expect(folder.classNames).toEqual(CIFAR10_CLASS_NAMES);
  });

  it('has no test split when test_batch.bin is absent', async () => {
    await writeSyntheticCifar(dir, { perBatch: 3 });
    expect((await readCifarFolder(dir)).test).toBeUndefined();
  });

  it('reads the class names from batches.meta.txt, and falls back to the official ones', async () => {
    await writeSyntheticCifar(dir, { perBatch: 2 });
    const names = Array.from({ length: 10 }, (_, i) => `thing${i}`);
    await writeFile(join(dir, 'batches.meta.txt'), `${names.join('\r\n')}\r\n`);
    expect((await readCifarFolder(dir)).classNames).toEqual(names);
    await rm(join(dir, 'batches.meta.txt'));
    expect((await readCifarFolder(dir)).classNames).toEqual(CIFAR10_CLASS_NAMES);
  });

  it('rejects a missing folder', async () => {
    const missing = join(dir, 'nope');
    await expectUserError(readCifarFolder(missing), new RegExp(`${missing} does not exist`));
  });

  it('rejects a missing training batch, naming it', async () => {
    await writeSyntheticCifar(dir, { perBatch: 2 });
    await rm(join(dir, 'data_batch_3.bin'));
    await expectUserError(readCifarFolder(dir), /data_batch_3\.bin is missing/);
  });

  it('rejects a truncated batch with its size and the record size', async () => {
    await writeSyntheticCifar(dir, { perBatch: 4 });
    await truncate(join(dir, 'data_batch_3.bin'), 4 * RECORD_BYTES - 1);
    await expectUserError(
      readCifarFolder(dir),
      /data_batch_3\.bin: 12291 bytes is not a multiple of 3073 \(record = 1 label byte \+ 3072 pixel bytes\); the file is truncated or not CIFAR-10 binary/,
    );
  });

  it('rejects a batch with trailing bytes', async () => {
    await writeSyntheticCifar(dir, { perBatch: 2 });
    await appendFile(join(dir, 'data_batch_5.bin'), Buffer.alloc(100));
    await expectUserError(readCifarFolder(dir), /data_batch_5\.bin: 6246 bytes is not a multiple/);
  });

  it('rejects an empty batch', async () => {
    await writeSyntheticCifar(dir, { perBatch: 2 });
    await writeFile(join(dir, 'data_batch_1.bin'), '');
    await expectUserError(readCifarFolder(dir), /data_batch_1\.bin: the file is empty/);
  });

  it('checks the test batch too', async () => {
    await writeSyntheticCifar(dir, { perBatch: 2, withTest: true });
    await truncate(join(dir, 'test_batch.bin'), 5000);
    await expectUserError(readCifarFolder(dir), /test_batch\.bin: 5000 bytes is not a multiple/);
  });

  it('rejects a label outside 0–9, naming the file and the record', async () => {
    await writeSyntheticCifar(dir, { perBatch: 6, withTest: true });
    await setByte(join(dir, 'data_batch_2.bin'), 5 * RECORD_BYTES, 10);
    await expectUserError(
      readCifarFolder(dir),
      /data_batch_2\.bin: record 5 \(byte offset 15365\) has label 10; CIFAR-10 labels are 0–9/,
    );
  });

  it('rejects a bad label in the test batch', async () => {
    await writeSyntheticCifar(dir, { perBatch: 2, withTest: true });
    await setByte(join(dir, 'test_batch.bin'), RECORD_BYTES, 255);
    await expectUserError(readCifarFolder(dir), /test_batch\.bin: record 1 .* has label 255/);
  });

  it('rejects a meta file without ten names', async () => {
    await writeSyntheticCifar(dir, { perBatch: 2 });
    await writeFile(join(dir, 'batches.meta.txt'), 'cat\ndog\n');
    await expectUserError(
      readCifarFolder(dir),
      /batches\.meta\.txt: found 2 class names, expected 10/,
    );
  });
});
