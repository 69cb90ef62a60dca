import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import semver from 'semver';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../k8s/render.js';

// The package promises the Node versions in its `engines`: Node 20 (still on many machines)
// and the LTS lines after it. Every package it installs, direct or not, must declare at least
// those, or a user on one of them gets a dependency that refuses to run (vega-lite 6 needs
// Node 22, for one).

interface LockEntry {
  version?: string;
  engines?: { node?: string } | string[];
}

const readJson = async <T>(file: string): Promise<T> =>
  JSON.parse(await readFile(join(ROOT, file), 'utf8')) as T;

describe('Node engines', () => {
  it('names Node 20 and the current LTS (26)', async () => {
    const { engines } = await readJson<{ engines: { node: string } }>('package.json');
    expect(semver.validRange(engines.node)).not.toBeNull();
    for (const version of ['20.19.0', '20.20.2', '24.0.0', '26.0.0']) {
      expect(semver.satisfies(version, engines.node), version).toBe(true);
    }
  });

  it('is accepted by every package in the lockfile that declares its own', async () => {
    const { engines } = await readJson<{ engines: { node: string } }>('package.json');
    const lock = await readJson<{ packages: Record<string, LockEntry> }>('package-lock.json');
    const refusing: string[] = [];
    let declared = 0;
    for (const [path, entry] of Object.entries(lock.packages)) {
      const node = Array.isArray(entry.engines) ? undefined : entry.engines?.node;
      if (path === '' || node === undefined) continue;
      declared++;
      if (!semver.subset(engines.node, node)) refusing.push(`${path}@${entry.version}: ${node}`);
    }
    expect(declared).toBeGreaterThan(10);
    expect(refusing).toEqual([]);
  });

  it('holds for the Node running the tests', async () => {
    const { engines } = await readJson<{ engines: { node: string } }>('package.json');
    expect(semver.satisfies(process.version, engines.node)).toBe(true);
  });
});
