// Workers prove at join that they read the coordinator's data: same-size files that differ by
// one byte are refused in one line naming the file, by a real coordinator process.
import { cp, mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dataMismatch, fingerprintCifarFolder } from '../../src/shared/data/data-fingerprint.js';
import { RECORD_BYTES } from '../../src/shared/data/labeled-images.js';
import { runCli } from '../cli/run-cli.js';
import { writeSyntheticCifar } from '../helpers/synthetic-cifar.js';
import { ensureBuilt, errorLines, startCli } from './cli-runs.js';
import { listeningPort } from './fake-worker.js';

let work: string;
let same: string;
let copy: string;
let changed: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'data-fingerprint-'));
  same = join(work, 'coordinator-data');
  copy = join(work, 'worker-copy');
  changed = join(work, 'worker-changed');
  await writeSyntheticCifar(same, { perBatch: 20, withTest: true });
  await cp(same, copy, { recursive: true });
  await cp(same, changed, { recursive: true });
  // One pixel byte of one record: the size, the labels and the record count stay the same.
  const file = await open(join(changed, 'data_batch_3.bin'), 'r+');
  await file.write(Buffer.from([0x5a]), 0, 1, 7 * RECORD_BYTES + 100);
  await file.close();
  await ensureBuilt();
}, 120_000);
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('the data fingerprint', () => {
  it('tells identical folders apart from one differing by a byte, naming the file', async () => {
    const coordinator = await fingerprintCifarFolder(same);
    expect(coordinator.files.map((f) => f.name)).toEqual([
      'data_batch_1.bin',
      'data_batch_2.bin',
      'data_batch_3.bin',
      'data_batch_4.bin',
      'data_batch_5.bin',
      'test_batch.bin',
      'batches.meta.txt',
    ]);
    expect(dataMismatch(await fingerprintCifarFolder(copy), coordinator)).toBeUndefined();
    expect(dataMismatch(await fingerprintCifarFolder(changed), coordinator)).toMatch(
      new RegExp(
        `^the worker's data in ${changed} differs from the coordinator's in ${same}: ` +
          'data_batch_3\\.bin has other bytes \\(same size; sha256 [0-9a-f]{12}… vs [0-9a-f]{12}…\\): ' +
          'give every worker the same files, or run with --data-from coordinator$',
      ),
    );
    expect(dataMismatch(undefined, coordinator)).toMatch(/^the worker has no CIFAR-10 folder/);
  });

  it('is checked at join: a worker with other data is refused, one with the same joins', async () => {
    const coordinator = startCli([
      'coordinator',
      ...['--world-size', '1', '--port', '0', '--bind-host', '127.0.0.1'],
      ...['--model', 'lenet5', '--data', same, '--steps', '2', '--batch-size', '8'],
      ...['--backend', 'wasm', '--out', join(work, 'run'), '--http-port', '0'],
    ]);
    const exited = new Promise<number | null>((resolve) => coordinator.on('close', resolve));
    try {
      const port = await listeningPort(coordinator);
      const worker = (data: string) =>
        runCli([
          'worker',
          ...['--coordinator', `127.0.0.1:${port}`, '--peer-port', '0', '--data', data],
          ...['--backend', 'wasm', '--join-timeout', '30'],
        ]);
      const refused = await worker(changed);
      expect(refused.code).not.toBe(0);
      const lines = errorLines(refused.stderr);
      expect(lines).toHaveLength(1);
      expect(lines[0]).toContain(
        `the worker's data in ${changed} differs from the coordinator's in ${same}: data_batch_3.bin has other bytes`,
      );
      // The coordinator goes on: a worker with the same files (another copy) trains the run.
      const joined = await worker(copy);
      expect(joined.code, joined.stderr.slice(-2000)).toBe(0);
      expect(await exited).toBe(0);
    } finally {
      coordinator.kill('SIGKILL');
    }
  }, 120_000);
});
