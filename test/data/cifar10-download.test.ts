import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { readCifarFolder } from '../../src/shared/data/cifar-binary-reader.js';
import { downloadCifar10 } from '../../src/shared/data/cifar10-download.js';
import type { DownloadProgress } from '../../src/shared/data/download-progress.js';
import { loadDataset } from '../../src/shared/data/load-dataset.js';
import { UserError } from '../../src/shared/errors.js';
import { makeCifarTarball, startServer } from '../helpers/tarball-server.js';

let work: string;
let tarball: { bytes: Buffer; md5: string };
let foreign: { bytes: Buffer; md5: string };
let server: Awaited<ReturnType<typeof startServer>>;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'cifar-download-'));
  tarball = await makeCifarTarball(join(work, 'src'), { perBatch: 8, withTest: true });
  foreign = await makeCifarTarball(join(work, 'foreign'), { perBatch: 2, folder: 'other-folder' });
  server = await startServer({
    '/cifar.tar.gz': (res) =>
      res.writeHead(200, { 'content-length': tarball.bytes.length }).end(tarball.bytes),
    '/foreign.tar.gz': (res) => res.end(foreign.bytes),
    '/broken': (res) => res.writeHead(500, 'Internal Server Error').end('oops'),
    '/cut-short': (res) => {
      res.writeHead(200, { 'content-length': tarball.bytes.length });
      res.write(tarball.bytes.subarray(0, 1000), () => res.destroy());
    },
    '/stalls': (res) => {
      res.writeHead(200, { 'content-length': tarball.bytes.length });
      res.write(tarball.bytes.subarray(0, 1000));
    },
  });
});
afterAll(async () => {
  await server.close();
  await rm(work, { recursive: true, force: true });
});

let cache: string;
let target: string;
beforeEach(async () => {
  cache = await mkdtemp(join(work, 'cache-'));
  target = join(cache, 'cifar10');
});

const silent: DownloadProgress = { update() {}, stop() {} };

async function failure(promise: Promise<unknown>): Promise<Error> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(UserError);
  return err as Error;
}

/** After a failure the cache holds nothing: no target, no temp file, no temp folder. */
async function expectNothingWritten(): Promise<void> {
  expect(await readdir(cache)).toEqual([]);
}

describe('downloadCifar10', () => {
  it('downloads, verifies and installs the batches, reporting progress', async () => {
    const seen: number[] = [];
    const progress: DownloadProgress = { update: (received) => seen.push(received), stop() {} };
    const result = await downloadCifar10({
      dir: target,
      url: server.url('/cifar.tar.gz'),
      md5: tarball.md5,
      progress,
    });
    expect(result).toEqual({ dir: target, downloaded: true, bytes: tarball.bytes.length });
    expect(await readdir(cache)).toEqual(['cifar10']);
    const folder = await readCifarFolder(target);
    expect([folder.train.count, folder.test?.count]).toEqual([40, 8]);
    expect(seen.at(-1)).toBe(tarball.bytes.length);
    expect(seen.every((v, i) => i === 0 || v > seen[i - 1])).toBe(true);
  });

  it('does nothing when the folder is already complete, and downloads again with force', async () => {
    const opts = {
      dir: target,
      url: server.url('/cifar.tar.gz'),
      md5: tarball.md5,
      progress: silent,
    };
    await downloadCifar10(opts);
    const before = server.requests.length;
    expect(await downloadCifar10(opts)).toEqual({ dir: target, downloaded: false, bytes: 0 });
    expect(server.requests.length).toBe(before);
    await writeFile(join(target, 'marker'), 'old');
    expect((await downloadCifar10({ ...opts, force: true })).downloaded).toBe(true);
    expect(server.requests.length).toBe(before + 1);
    expect(await readdir(target)).not.toContain('marker');
    expect(await readdir(cache)).toEqual(['cifar10']);
  });

  it('rejects a wrong checksum and leaves nothing behind', async () => {
    const err = await failure(
      downloadCifar10({
        dir: target,
        url: server.url('/cifar.tar.gz'),
        md5: '0'.repeat(32),
        progress: silent,
      }),
    );
    expect(err.message).toMatch(
      new RegExp(
        `has MD5 ${tarball.md5}, expected 00000000000000000000000000000000; it was discarded`,
      ),
    );
    await expectNothingWritten();
  });

  it('leaves a complete folder untouched when a forced download fails its checksum', async () => {
    const opts = {
      dir: target,
      url: server.url('/cifar.tar.gz'),
      md5: tarball.md5,
      progress: silent,
    };
    await downloadCifar10(opts);
    await failure(downloadCifar10({ ...opts, md5: 'f'.repeat(32), force: true }));
    expect(await readdir(cache)).toEqual(['cifar10']);
    expect((await readCifarFolder(target)).train.count).toBe(40);
  });

  it('reports an HTTP error status clearly', async () => {
    const err = await failure(
      downloadCifar10({ dir: target, url: server.url('/broken'), progress: silent }),
    );
    expect(err.message).toBe(
      `downloading ${server.url('/broken')} failed: the server answered HTTP 500 Internal Server Error`,
    );
    await expectNothingWritten();
  });

  it('reports a refused connection', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const { port } = closed.address() as { port: number };
    await new Promise((resolve) => closed.close(resolve));
    const err = await failure(
      downloadCifar10({ dir: target, url: `http://127.0.0.1:${port}/x`, progress: silent }),
    );
    expect(err.message).toMatch(/failed: connect ECONNREFUSED 127\.0\.0\.1/);
    await expectNothingWritten();
  });

  it('reports a connection closed before the end', async () => {
    const err = await failure(
      downloadCifar10({ dir: target, url: server.url('/cut-short'), progress: silent }),
    );
    expect(err.message).toMatch(/cut-short failed/);
    await expectNothingWritten();
  });

  it('gives up on a server that stops sending', async () => {
    const err = await failure(
      downloadCifar10({
        dir: target,
        url: server.url('/stalls'),
        progress: silent,
        idleTimeoutMs: 300,
      }),
    );
    expect(err.message).toMatch(/stalls failed after 1000 bytes: no data for 0\.3 s/);
    await expectNothingWritten();
  });

  it('rejects an archive without cifar-10-batches-bin/', async () => {
    const err = await failure(
      downloadCifar10({
        dir: target,
        url: server.url('/foreign.tar.gz'),
        md5: foreign.md5,
        progress: silent,
      }),
    );
    expect(err.message).toMatch(/foreign\.tar\.gz has no cifar-10-batches-bin\/ folder/);
    await expectNothingWritten();
  });

  it('refuses to overwrite an incomplete folder without force', async () => {
    await mkdir(target);
    await writeFile(join(target, 'data_batch_1.bin'), 'x');
    const err = await failure(
      downloadCifar10({ dir: target, url: server.url('/cifar.tar.gz'), progress: silent }),
    );
    expect(err.message).toMatch(/exists but is not a complete CIFAR-10 folder/);
    expect(await readdir(target)).toEqual(['data_batch_1.bin']);
  });
});

describe('loadDataset without --data', () => {
  const saved = { ...process.env };
  afterEach(() => {
    for (const key of ['TFJS_DDP_CACHE_DIR', 'TFJS_DDP_CIFAR10_URL', 'TFJS_DDP_CIFAR10_MD5']) {
      if (saved[key] === undefined) delete process.env[key];
      else process.env[key] = saved[key];
    }
  });

  it('downloads into the cache on first use, then reads the cache', async () => {
    process.env.TFJS_DDP_CACHE_DIR = cache;
    process.env.TFJS_DDP_CIFAR10_URL = server.url('/cifar.tar.gz');
    process.env.TFJS_DDP_CIFAR10_MD5 = tarball.md5;
    const before = server.requests.length;
    const first = await loadDataset({ dataset: 'cifar10', valSize: 5, seed: 0 });
    expect(first).toMatchObject({ dataDir: target, valSource: 'test' });
    expect(first.train.count).toBe(40);
    await loadDataset({ dataset: 'cifar10', valSize: 5, seed: 0 });
    expect(server.requests.length).toBe(before + 1);
  });

  it('says how to do without the download when it fails', async () => {
    process.env.TFJS_DDP_CACHE_DIR = cache;
    process.env.TFJS_DDP_CIFAR10_URL = server.url('/broken');
    const err = await failure(loadDataset({ dataset: 'cifar10', valSize: 5, seed: 0 }));
    expect(err.message).toMatch(
      /CIFAR-10 is not in .*cifar10 and could not be downloaded: .*HTTP 500/,
    );
    expect(err.message).toMatch(/--data \.\.\/shared\/data\/cifar10\), or use --dataset synthetic/);
  });
});
