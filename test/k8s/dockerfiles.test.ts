import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Copy } from 'dockerfile-ast';
import { validate } from 'dockerfile-utils';
import { run as dockerfilelint } from 'dockerfilelint';
import semver from 'semver';
import { beforeAll, describe, expect, it } from 'vitest';
import { GRADIENT_PROCESS_NODE_FLAGS } from '../../src/shared/transport/grpc-settings.js';
import { optionForFlag, requireCommand } from './cli-options.js';
import {
  entrypoint,
  instructionsOf,
  type ParsedDockerfile,
  parseDockerfile,
} from './dockerfile-model.js';
import { ROOT } from './render.js';

// No Docker engine runs here, so the images are checked statically: two linters (the
// Dockerfile parser/validator of VS Code's Docker support, and dockerfilelint's best
// practices) and the project's rules. docker-context.test.ts runs the build steps.

const FILES = ['Dockerfile', 'Dockerfile.gpu'] as const;
const parsed = new Map<string, ParsedDockerfile>();
let pkg: {
  bin: Record<string, string>;
  engines: { node: string };
  peerDependencies: Record<string, string>;
};

beforeAll(async () => {
  for (const file of FILES) parsed.set(file, await parseDockerfile(file));
  pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8'));
});

const runs = (d: ParsedDockerfile) =>
  d.stages.flatMap((s) => instructionsOf(s, 'RUN').map((i) => i.getArgumentsContent() ?? ''));

describe.each(FILES)('%s', (file) => {
  const dockerfile = () => parsed.get(file)!;

  it('passes dockerfile-utils validation and dockerfilelint', () => {
    const problems = validate(dockerfile().text).map(
      (d) => `${d.range.start.line + 1}: ${d.message}`,
    );
    expect(problems).toEqual([]);
    const lint = dockerfilelint(join(ROOT, file), dockerfile().text).map(
      (d) => `${d.line}: ${d.title}`,
    );
    expect(lint).toEqual([]);
  });

  it('builds in stages from bases pinned to exact versions', () => {
    const { stages } = dockerfile();
    expect(stages.length).toBeGreaterThanOrEqual(2);
    const stageNames = new Set(stages.map((s) => s.name));
    for (const { from } of stages) {
      if (stageNames.has(from.getImageName() ?? '')) continue;
      const tag = from.getImageTag() ?? '';
      expect(`${from.getImage()}`).toMatch(/:\d+\.\d+\.\d+[\w.-]*$/);
      expect(tag).not.toMatch(/latest/);
    }
    // The image's Node is an LTS line (even major) that the package's engines accept.
    const nodeBase = stages.find((s) => s.from.getImageName() === 'node')?.from.getImageTag() ?? '';
    const nodeVersion = /^\d+\.\d+\.\d+/.exec(nodeBase)?.[0] ?? '';
    expect(semver.satisfies(nodeVersion, pkg.engines.node)).toBe(true);
    expect(semver.major(nodeVersion) % 2).toBe(0);
  });

  it('installs no dependency scripts but the one it names, and keeps dev dependencies out', () => {
    const npm = runs(dockerfile()).flatMap((r) =>
      r.split('&&').map((c) => c.replace(/\\\s*/g, ' ').trim()),
    );
    const installs = npm.filter((c) => /^npm (ci|install|prune)\b/.test(c));
    expect(installs.length).toBeGreaterThan(0);
    for (const command of installs) expect(command).toContain('--ignore-scripts');
    expect(npm).toContain('npm run build');
    expect(npm.some((c) => /^npm prune --omit=dev\b/.test(c))).toBe(true);
    const scripts = npm.filter((c) => /\brun install\b|\brebuild\b/.test(c));
    expect(scripts).toEqual(
      file === 'Dockerfile.gpu'
        ? ['npm --prefix node_modules/@tensorflow/tfjs-node-gpu run install']
        : [],
    );
  });

  it('runs the CLI entry point of the package, with the gradient flags, as a numeric non-root user', () => {
    const { final } = dockerfile();
    const user = instructionsOf(final, 'USER').at(-1)?.getArgumentsContent() ?? '';
    expect(user).toMatch(/^[1-9]\d*(:[1-9]\d*)?$/);
    // Workers move gradients: node starts with the flags the launcher gives local workers.
    expect(entrypoint(dockerfile())).toEqual([
      'node',
      ...GRADIENT_PROCESS_NODE_FLAGS,
      `/app/${pkg.bin['tfjs-ddp']}`,
    ]);
    const copied = (instructionsOf(final, 'COPY') as Copy[]).map((c) => [
      c.getFromFlag()?.getValue(),
      c.getArguments()[0]?.getValue(),
    ]);
    // Only build outputs (and Node itself) come from the build stage; the entry point among them.
    for (const [from] of copied) expect(from).toBe('build');
    expect(copied.map(([, source]) => source)).toContain('/app/dist/src');
  });

  it('exposes the ports the CLI listens on by default', () => {
    const exposed = instructionsOf(dockerfile().final, 'EXPOSE').flatMap((i) =>
      i.getArguments().map((a) => Number(a.getValue())),
    );
    const port = optionForFlag(requireCommand(['coordinator']), '--port')?.defaultValue;
    const peerPort = optionForFlag(requireCommand(['worker']), '--peer-port')?.defaultValue;
    expect(exposed).toEqual([Number(port), Number(peerPort)]);
  });
});

describe('Dockerfile.gpu', () => {
  it('starts from a CUDA 11 + cuDNN 8 runtime and installs the tfjs-node-gpu the package names', () => {
    const gpu = parsed.get('Dockerfile.gpu')!;
    expect(gpu.final.from.getImageName()).toBe('nvidia/cuda');
    // tfjs-node-gpu 4.x loads libcudart.so.11.0 and libcudnn.so.8.
    expect(gpu.final.from.getImageTag()).toMatch(/^11\.\d+\.\d+-cudnn8-runtime-ubuntu\d+\.\d+$/);
    const version = pkg.peerDependencies['@tensorflow/tfjs-node-gpu'];
    expect(runs(gpu).join('\n')).toContain(`@tensorflow/tfjs-node-gpu@${version}`);
    const args = gpu.stages.flatMap((s) =>
      instructionsOf(s, 'ARG').map((a) => a.getArgumentsContent()),
    );
    expect(args).toContain('TFJS_NODE_CDN_STORAGE=');
  });

  it('runs the same Node as the CPU image', () => {
    const nodeTag = (file: string) =>
      parsed
        .get(file)!
        .stages.find((s) => s.from.getImageName() === 'node')
        ?.from.getImageTag();
    expect(nodeTag('Dockerfile.gpu')).toBe(nodeTag('Dockerfile'));
  });

  it('leaves the native TensorFlow packages out of the CPU image', () => {
    expect(runs(parsed.get('Dockerfile')!).join('\n')).not.toMatch(/tfjs-node/);
  });
});
