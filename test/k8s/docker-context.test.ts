import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, readFile, rm, stat, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import dockerignoreModule from '@balena/dockerignore';
import type { Copy } from 'dockerfile-ast';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { entrypoint, instructionsOf, parseDockerfile } from './dockerfile-model.js';
import { ROOT } from './render.js';

// The Docker build without Docker: the files .dockerignore lets into the build context
// (matched as Docker matches them), built with the Dockerfile's own build command in a
// folder of their own. This catches a build input left out of the context, and a runtime
// stage that copies something the build does not make.

const exec = promisify(execFile);
// The package is CommonJS (module.exports = factory) but its types declare a default export.
const dockerignore = dockerignoreModule as unknown as typeof dockerignoreModule.default;
let context: string;
let admitted: string[];

beforeAll(async () => {
  const { stdout } = await exec(
    'git',
    ['ls-files', '--cached', '--others', '--exclude-standard', '-z'],
    {
      cwd: ROOT,
      maxBuffer: 64 * 2 ** 20,
    },
  );
  const files = stdout.split('\0').filter((f) => f.length > 0);
  const rules = dockerignore().add(await readFile(join(ROOT, '.dockerignore'), 'utf8'));
  admitted = rules.filter(files);
  context = await mkdtemp(join(tmpdir(), 'docker-context-'));
  for (const file of admitted) {
    // A file may be listed but deleted in the working tree (another change in progress).
    const present = await stat(join(ROOT, file)).then(
      () => true,
      () => false,
    );
    if (!present) continue;
    await mkdir(dirname(join(context, file)), { recursive: true });
    await cp(join(ROOT, file), join(context, file));
  }
}, 60_000);

afterAll(async () => {
  if (context) await rm(context, { recursive: true, force: true });
});

describe('the Docker build context', () => {
  it('holds the sources, protos and lockfile, and nothing else', () => {
    expect(admitted).toEqual(
      expect.arrayContaining([
        'package.json',
        'package-lock.json',
        'tsconfig.json',
        'tsconfig.build.json',
        'src/cli/main.ts',
      ]),
    );
    expect(admitted.some((f) => f.startsWith('proto/') && f.endsWith('.proto'))).toBe(true);
    const outside = admitted.filter(
      (f) => !/^(src|proto)\//.test(f) && !/^[^/]+\.(json|yaml)$/.test(f),
    );
    expect(outside).toEqual([]);
    for (const kept of ['test/', 'k8s/', 'bench/', 'node_modules/', 'dist/', 'runs/', '.git/']) {
      expect(admitted.filter((f) => f.startsWith(kept))).toEqual([]);
    }
  });

  it('builds with `npm run build`, and holds every path the runtime stages copy and run', async () => {
    // `npm ci` from the same lockfile stands in as a link to this checkout's node_modules.
    await symlink(join(ROOT, 'node_modules'), join(context, 'node_modules'), 'dir');
    await exec('npm', ['run', 'build'], { cwd: context }).catch((err: { stdout?: string }) => {
      throw new Error(`npm run build failed in the Docker context:\n${err.stdout?.slice(-4000)}`);
    });
    for (const file of ['Dockerfile', 'Dockerfile.gpu']) {
      const dockerfile = await parseDockerfile(file);
      for (const copy of instructionsOf(dockerfile.final, 'COPY') as Copy[]) {
        const source = copy.getArguments()[0]?.getValue() ?? '';
        if (!source.startsWith('/app/')) continue;
        await expect(
          stat(join(context, source.slice('/app/'.length))),
          `${file}: ${source}`,
        ).resolves.toBeDefined();
      }
      // node, its flags (dockerfiles.test checks them), the CLI entry point.
      const argv = entrypoint(dockerfile);
      const main = argv[argv.length - 1];
      expect(argv[0]).toBe('node');
      const help = await exec(
        process.execPath,
        [join(context, main.slice('/app/'.length)), '--help'],
        {
          cwd: context,
          env: { PATH: process.env.PATH, NODE_ENV: 'production' },
        },
      );
      expect(help.stdout).toMatch(/Usage: tfjs-ddp/);
    }
  }, 120_000);
});
