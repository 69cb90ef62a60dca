import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

/**
 * Where CIFAR-10 is kept when no `--data` folder is given: `<cache>/cifar10`, where
 * `<cache>` is $TFJS_DDP_CACHE_DIR, else $XDG_CACHE_HOME/tfjs-ddp, else ~/.cache/tfjs-ddp.
 */
export function cifar10CacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const root =
    env.TFJS_DDP_CACHE_DIR || join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'tfjs-ddp');
  return resolve(root, 'cifar10');
}
