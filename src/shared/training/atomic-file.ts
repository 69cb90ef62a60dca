import { randomBytes } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/**
 * Replaces `path` with `chunks` so that a reader (or a crash at any moment) sees either the old
 * file or the complete new one, never a part: write a temporary file in the same folder, fsync
 * it, rename it over `path`, then fsync the folder so the rename itself is durable. The temporary
 * file is removed if anything fails. Temporary names start with `.${basename(path)}.tmp-`.
 */
export async function writeFileAtomic(path: string, chunks: readonly Uint8Array[]): Promise<void> {
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
