import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { UserError } from '../shared/errors.js';

/**
 * Writes `files` (name → content) into `dir`, creating it; returns the paths
 * written. Throws UserError naming the folder when it cannot be written.
 */
export async function writeResultFiles(
  dir: string,
  files: Record<string, string | Uint8Array>,
): Promise<string[]> {
  const folder = resolve(dir);
  try {
    await mkdir(folder, { recursive: true });
    const paths: string[] = [];
    for (const [name, content] of Object.entries(files)) {
      const path = join(folder, name);
      await writeFile(path, content);
      paths.push(path);
    }
    return paths;
  } catch (error) {
    throw new UserError(`--out ${dir}: cannot write the results: ${(error as Error).message}`);
  }
}
