import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import * as tar from 'tar';
import { UserError } from '../errors.js';
import { log } from '../logging/logger.js';
import { checkCifarFolder } from './cifar-binary-reader.js';
import { type DownloadProgress, downloadProgress } from './download-progress.js';

export const CIFAR10_URL = 'https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz';
export const CIFAR10_MD5 = 'c32a1d4ab5d03f1284b67883e8d87530';
/** The folder inside the official archive that holds the batches. */
const ARCHIVE_FOLDER = 'cifar-10-batches-bin';
const DEFAULT_IDLE_TIMEOUT_MS = 60_000;

export interface DownloadOptions {
  /** The folder the batches end up in (created with its parents). */
  dir: string;
  /** Default: $TFJS_DDP_CIFAR10_URL, else CIFAR10_URL. */
  url?: string;
  /** Expected MD5 of the archive. Default: $TFJS_DDP_CIFAR10_MD5, else CIFAR10_MD5. */
  md5?: string;
  /** Replace `dir` even when it already holds CIFAR-10. */
  force?: boolean;
  /** Default: a bar on a terminal, periodic log lines otherwise. */
  progress?: DownloadProgress;
  /** Give up when no bytes arrive for this long (default 60 s). */
  idleTimeoutMs?: number;
}

export interface DownloadResult {
  dir: string;
  /** False when `dir` already held CIFAR-10 and nothing was done. */
  downloaded: boolean;
  /** Size of the archive fetched (0 when nothing was done). */
  bytes: number;
}

/**
 * Fetches the CIFAR-10 binary archive and installs its batches as `dir`, atomically:
 * the archive goes to a temp file beside `dir` and its MD5 is checked; it is extracted
 * into a temp folder beside `dir`, checked, fsynced and renamed into place. On any
 * failure (network, HTTP status, checksum, archive content) it throws UserError and
 * leaves nothing behind; `dir` is either absent, untouched or complete. A no-op when
 * `dir` already holds the batches (unless `force`). If another process installs `dir`
 * at the same time, whichever renames first wins and the other keeps its result.
 */
export async function downloadCifar10(opts: DownloadOptions): Promise<DownloadResult> {
  const dir = resolve(opts.dir);
  const url = opts.url ?? (process.env.TFJS_DDP_CIFAR10_URL || CIFAR10_URL);
  const md5 = (opts.md5 ?? (process.env.TFJS_DDP_CIFAR10_MD5 || CIFAR10_MD5)).toLowerCase();
  if (!opts.force) {
    const problem = await folderProblem(dir);
    if (problem === undefined) return { dir, downloaded: false, bytes: 0 };
    if (await exists(dir)) {
      throw new UserError(
        `${dir} exists but is not a complete CIFAR-10 folder (${problem}); ` +
          'remove it, or replace it with `tfjs-ddp data download --force`',
      );
    }
  }
  const parent = dirname(dir);
  await mkdir(parent, { recursive: true });
  const tag = `${process.pid}-${randomBytes(4).toString('hex')}`;
  const archive = join(parent, `.${basename(dir)}.${tag}.tar.gz.part`);
  const staging = join(parent, `.${basename(dir)}.${tag}.tmp`);
  const progress = opts.progress ?? downloadProgress(`CIFAR-10 from ${url}`);
  try {
    log().info(`downloading CIFAR-10 from ${url} to ${dir}`);
    let fetched: { bytes: number; md5: string };
    try {
      fetched = await fetchToFile(url, archive, progress, opts.idleTimeoutMs);
    } finally {
      progress.stop();
    }
    if (fetched.md5 !== md5) {
      throw new UserError(
        `the archive downloaded from ${url} (${fetched.bytes} bytes) has MD5 ${fetched.md5}, ` +
          `expected ${md5}; it was discarded and nothing was installed (a corrupt download, ` +
          'or the URL serves another file: check --url, or --md5 if the file is meant to differ)',
      );
    }
    await mkdir(staging);
    await tar.x({ file: archive, cwd: staging, strict: true }).catch((err: Error) => {
      throw new UserError(`the archive from ${url} cannot be extracted: ${err.message}`);
    });
    const extracted = join(staging, ARCHIVE_FOLDER);
    if (!(await exists(extracted))) {
      throw new UserError(
        `the archive from ${url} has no ${ARCHIVE_FOLDER}/ folder, so it is not the CIFAR-10 ` +
          'binary version (check --url)',
      );
    }
    await checkCifarFolder(extracted).catch((err: Error) => {
      throw new UserError(`the archive from ${url} is not CIFAR-10 binary: ${err.message}`);
    });
    await fsyncFolder(extracted);
    await moveIntoPlace(extracted, dir, join(staging, 'replaced'), opts.force === true);
    log().info(`CIFAR-10 is ready in ${dir}`);
    return { dir, downloaded: true, bytes: fetched.bytes };
  } finally {
    await rm(archive, { force: true });
    await rm(staging, { recursive: true, force: true });
  }
}

/** Why `dir` is not a usable CIFAR-10 folder, or undefined when it is. */
export async function folderProblem(dir: string): Promise<string | undefined> {
  return checkCifarFolder(dir).then(
    () => undefined,
    (err: Error) => err.message,
  );
}

/** Streams `url` into `path` (created), hashing as it goes; fsyncs before returning. */
async function fetchToFile(
  url: string,
  path: string,
  progress: DownloadProgress,
  idleTimeoutMs = DEFAULT_IDLE_TIMEOUT_MS,
): Promise<{ bytes: number; md5: string }> {
  const controller = new AbortController();
  let timer = setTimeout(() => controller.abort(), idleTimeoutMs);
  const failed = (err: unknown, received?: number) =>
    new UserError(
      `downloading ${url} failed` +
        (received === undefined ? '' : ` after ${received} bytes`) +
        `: ${controller.signal.aborted ? `no data for ${idleTimeoutMs / 1000} s` : describe(err)}`,
    );
  let response: Response;
  try {
    response = await fetch(url, { signal: controller.signal });
  } catch (err) {
    clearTimeout(timer);
    throw failed(err);
  }
  if (!response.ok || response.body === null) {
    clearTimeout(timer);
    await response.body?.cancel();
    throw new UserError(
      `downloading ${url} failed: the server answered HTTP ${response.status} ${response.statusText}`,
    );
  }
  const total = Number(response.headers.get('content-length')) || undefined;
  const hash = createHash('md5');
  const file = await open(path, 'w');
  let received = 0;
  try {
    for await (const chunk of response.body) {
      clearTimeout(timer);
      timer = setTimeout(() => controller.abort(), idleTimeoutMs);
      hash.update(chunk);
      await file.write(chunk);
      received += chunk.length;
      progress.update(received, total);
    }
    await file.sync();
  } catch (err) {
    throw failed(err, received);
  } finally {
    clearTimeout(timer);
    await file.close();
  }
  if (total !== undefined && received !== total) {
    throw new UserError(
      `downloading ${url} failed: got ${received} of ${total} bytes (connection closed early)`,
    );
  }
  return { bytes: received, md5: hash.digest('hex') };
}

/** Renames the finished folder to `dir`; an existing `dir` is moved to `trash` first when replacing. */
async function moveIntoPlace(
  from: string,
  dir: string,
  trash: string,
  replace: boolean,
): Promise<void> {
  const movedAside = replace && (await exists(dir));
  if (movedAside) await rename(dir, trash);
  try {
    await rename(from, dir);
  } catch (err) {
    if (movedAside) await rename(trash, dir);
    const code = (err as NodeJS.ErrnoException).code;
    if ((code === 'ENOTEMPTY' || code === 'EEXIST') && (await folderProblem(dir)) === undefined) {
      log().info(`${dir} was completed by another process meanwhile; using it`);
      return;
    }
    throw new UserError(`cannot move the extracted batches into ${dir}: ${describe(err)}`);
  }
  await fsyncPath(dirname(dir));
}

async function fsyncFolder(dir: string): Promise<void> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (entry.isFile()) await fsyncPath(join(dir, entry.name));
  }
  await fsyncPath(dir);
}

async function fsyncPath(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** fetch() reports network errors as "fetch failed" with the useful part in `cause`. */
function describe(err: unknown): string {
  const e = err as { message?: string; cause?: { message?: string } };
  return e.cause?.message ?? e.message ?? String(err);
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}
