import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import type { IContainer, IPodSpec } from 'kubernetes-models/v1';
import { containerEnv, expand, type PodFacts } from './pod-env.js';
import { type KObject, ROOT } from './render.js';

/** The image as the kubelet would run it: its ENTRYPOINT and ENV (from the Dockerfile). */
export interface LocalImage {
  entrypoint: readonly string[];
  env: Record<string, string>;
}

/** A container turned into a local process: argv and environment. */
export interface LocalCommand {
  argv: string[];
  env: Record<string, string>;
}

/**
 * Turns `container` of a pod into the local process that does what the kubelet would do:
 * the image's ENTRYPOINT unless `command` replaces it, then `args`, both with $(VAR)
 * expanded; the environment the pod spec gives it (see containerEnv) over the image's ENV.
 * Every path under a volume mount is mapped to the local folder of that volume
 * (`volumeDir(volumeName)`), and the image's /app to this checkout (its build output).
 */
export function localCommand(
  container: IContainer,
  pod: { facts: PodFacts; spec: IPodSpec },
  objects: readonly KObject[],
  image: LocalImage,
  volumeDir: (volumeName: string) => string,
): LocalCommand {
  const mounts = (container.volumeMounts ?? []).map((m) => ({
    at: m.mountPath,
    local: join(volumeDir(m.name), m.subPath ?? ''),
  }));
  const mapPath = (value: string) => {
    const mount = mounts
      .filter((m) => value === m.at || value.startsWith(`${m.at}/`))
      .sort((a, b) => b.at.length - a.at.length)[0];
    return mount ? mount.local + value.slice(mount.at.length) : value;
  };
  const env = containerEnv(container, pod.facts, objects);
  const argv = [...(container.command ?? image.entrypoint), ...(container.args ?? [])]
    .map((arg) => expand(arg, env))
    .map((arg) => (arg.startsWith('/app/') ? join(ROOT, arg.slice('/app/'.length)) : mapPath(arg)));
  if (argv[0] === 'node') argv[0] = process.execPath;
  const mapped = Object.fromEntries(Object.entries(env).map(([k, v]) => [k, mapPath(v)]));
  return { argv, env: { PATH: process.env.PATH ?? '', ...image.env, ...mapped } };
}

/** A started local process, its output kept for the test's messages. */
export interface Started {
  name: string;
  child: ChildProcess;
  output: () => string;
  exit: Promise<number | null>;
}

export function start(name: string, command: LocalCommand): Started {
  const child = spawn(command.argv[0], command.argv.slice(1), {
    env: command.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (d) => (output += d));
  child.stderr?.on('data', (d) => (output += d));
  const exit = new Promise<number | null>((resolve) => {
    child.on('error', (err) => {
      output += `\nspawn failed: ${err.message}`;
      resolve(null);
    });
    child.on('close', (code) => resolve(code));
  });
  return { name, child, output: () => output, exit };
}
