import { randomBytes } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { UserError } from '../errors.js';

/**
 * Replaces `path` with `chunks` so that a reader (or a crash at any moment) sees either the old
 * file or the complete new one, never a part: write a temporary file in the same folder, fsync
 * it, rename it over `path`, then fsync the folder so the rename itself is durable. The temporary
 * file is removed if anything fails. Temporary names start with `.${basename(path)}.tmp-`.
 * Throws FileWriteError naming `path` and the cause (a full disk, a read-only folder, ...).
 */
export async function writeFileAtomic(path: string, chunks: readonly Uint8Array[]): Promise<void> {
  try {
    await replaceFile(path, chunks);
  } catch (error) {
    throw new FileWriteError(path, error as NodeJS.ErrnoException);
  }
}

/**
 * A file that could not be written, for a cause outside the program (ENOSPC, EACCES, EROFS,
 * ...): one line for the user, with the file and the cause.
 */
export class FileWriteError extends UserError {
  constructor(
    readonly path: string,
    cause: NodeJS.ErrnoException,
  ) {
    // "ENOSPC: no space left on device, write" → "no space left on device (ENOSPC)"
    const text = cause.message.replace(/^E[A-Z]+: /, '').replace(/, \w+( '.*')?$/, '');
    super(`cannot write ${path}: ${cause.code ? `${text} (${cause.code})` : text}`, 1);
  }
}

async function replaceFile(path: string, chunks: readonly Uint8Array[]): Promise<void> {
  const temp = join(
    dirname(path),
    `.${basename(path)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`,
  );
  try {
    const file = await open(temp, 'w', 0o644);
    try {
      for (const chunk of chunks) {
        let written = 0;
        while (written < chunk.byteLength) {
          const { bytesWritten } = await file.write(chunk, written, chunk.byteLength - written);
          written += bytesWritten;
        }
      }
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(temp, path);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
  await syncFolder(dirname(path));
}

async function syncFolder(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
