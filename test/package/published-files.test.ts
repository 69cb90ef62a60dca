// What `npm publish` would ship (npm pack --dry-run): the compiled sources and the protos that
// server reflection reads, never the tests, the benchmarks' results or source maps of files
// that are not shipped.
import { execFile } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, expect, it } from 'vitest';
import { ROOT } from '../cli/run-cli.js';

let files: string[];
beforeAll(async () => {
  // --ignore-scripts: `prepare` would build again; the global setup has built dist/.
  const { stdout } = await promisify(execFile)(
    'npm',
    ['pack', '--dry-run', '--json', '--ignore-scripts'],
    { cwd: ROOT },
  );
  files = (JSON.parse(stdout) as [{ files: { path: string }[] }])[0].files.map((f) => f.path);
});

it('ships the CLI, the compiled sources and the protos, and nothing of test/', () => {
  expect(files).toContain('package.json');
  expect(files).toContain('dist/src/cli/main.js');
  expect(files).toContain('proto/tfjs_ddp/v1/peer.proto');
  const unexpected = files.filter(
    (f) => !/^dist\/src\/.+\.js$/.test(f) && !/^proto\/.+\.proto$/.test(f),
  );
  expect(unexpected.sort()).toEqual(['README.md', 'package.json']);
  expect(files.filter((f) => /(^|\/)test\/|\.test\.|\.map$/.test(f))).toEqual([]);
});

it('ships every module the build made from src/, so the CLI finds its imports', () => {
  const built = (readdirSync(join(ROOT, 'dist/src'), { recursive: true }) as string[])
    .filter((f) => f.endsWith('.js'))
    .map((f) => `dist/src/${f}`);
  expect(built.length).toBeGreaterThan(50);
  expect(files.filter((f) => f.startsWith('dist/')).sort()).toEqual(built.sort());
});
