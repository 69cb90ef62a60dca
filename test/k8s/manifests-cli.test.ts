import { isAbsolute, relative } from 'node:path';
import type { IJob } from 'kubernetes-models/batch/v1';
import type { IContainer, IPodSpec, IProbe, ISecret } from 'kubernetes-models/v1';
import { beforeAll, describe, expect, it } from 'vitest';
import { BACKEND_REQUESTS } from '../../src/shared/backend/select-backend.js';
import { MODEL_NAMES } from '../../src/shared/models/zoo.js';
import { type CliCommand, optionForEnv, optionForFlag, requireCommand } from './cli-options.js';
import { containerEnv, jobPodFacts } from './pod-env.js';
import {
  allContainers,
  configMaps,
  find,
  type KObject,
  OVERLAYS,
  podOf,
  readManifest,
  render,
  renderWithComponents,
} from './render.js';

// How the manifests fit the code: commands, flags and env vars the CLI really defines, the
// ports it listens on, the world size, the workers' DNS names, paths on volumes.

const VARIANTS = [...OVERLAYS, 'overlays/cpu + components/tls'] as const;
const COORDINATOR_PORT = 7070; // the CLI contract's defaults, checked against the code below
const PEER_PORT = 7071;
const rendered = new Map<string, KObject[]>();
let secrets: Map<string, ISecret>;

beforeAll(async () => {
  for (const overlay of OVERLAYS) rendered.set(overlay, await render(overlay));
  rendered.set(VARIANTS[3], await renderWithComponents('overlays/cpu', ['components/tls']));
  const examples = await Promise.all(
    ['secrets/join-token.example.yaml', 'secrets/tls.example.yaml'].map(readManifest),
  );
  secrets = new Map(examples.flat().map((s) => [s.metadata.name, s as ISecret]));
});

/** A container that runs the image's entry point (tfjs-ddp): its subcommand and flags. */
function cliOf(container: IContainer): { command: CliCommand; flags: string[] } | undefined {
  if (container.command) return undefined;
  const args = container.args ?? [];
  const split = args.findIndex((a) => a.startsWith('-'));
  const path = split < 0 ? args : args.slice(0, split);
  const flags = args.filter((a) => a.startsWith('--')).map((a) => a.split('=')[0]);
  return { command: requireCommand(path), flags };
}

function job(objects: readonly KObject[], name: 'coordinator' | 'worker') {
  return find<IJob>(objects, 'Job', `tfjs-ddp-${name}`);
}

function main(objects: readonly KObject[], name: 'coordinator' | 'worker') {
  const { spec } = podOf(job(objects, name));
  const container = spec.containers.find((c) => c.name === name);
  if (!container) throw new Error(`Job tfjs-ddp-${name} has no container ${name}`);
  return {
    spec,
    container,
    env: containerEnv(container, jobPodFacts(job(objects, name), 0), objects),
  };
}

function probes(container: IContainer): [string, IProbe][] {
  const all = {
    startup: container.startupProbe,
    readiness: container.readinessProbe,
    liveness: container.livenessProbe,
  };
  return Object.entries(all).filter((e): e is [string, IProbe] => e[1] !== undefined);
}

/** The volume and the path inside it that `path` lands on in `container`, if mounted. */
function onVolume(spec: IPodSpec, container: IContainer, path: string) {
  const mount = (container.volumeMounts ?? [])
    .filter((m) => !relative(m.mountPath, path).startsWith('..'))
    .sort((a, b) => b.mountPath.length - a.mountPath.length)[0];
  if (!mount) return undefined;
  const volume = spec.volumes?.find((v) => v.name === mount.name);
  return { mount, volume, inside: relative(mount.mountPath, path) };
}

describe.each(VARIANTS)('%s', (variant) => {
  const objects = () => rendered.get(variant)!;
  const config = () => configMaps(objects())[0].data ?? {};

  it('runs only commands, flags and env vars that the CLI defines, with values it accepts', () => {
    const accepted = new Set<string>();
    for (const j of [job(objects(), 'coordinator'), job(objects(), 'worker')]) {
      for (const container of allContainers(podOf(j).spec)) {
        const cli = cliOf(container);
        if (!cli) continue;
        for (const flag of cli.flags) {
          expect(optionForFlag(cli.command, flag), `${cli.command.path} ${flag}`).toBeDefined();
        }
        for (const { name } of container.env ?? []) {
          if (!name.startsWith('TFJS_DDP_')) continue;
          expect(
            optionForEnv(cli.command, name),
            `${cli.command.path} reads ${name}`,
          ).toBeDefined();
        }
        const env = containerEnv(container, jobPodFacts(j, 0), objects());
        for (const [name, value] of Object.entries(env)) {
          const option = optionForEnv(cli.command, name);
          if (!option) continue;
          accepted.add(name);
          if (option.argChoices) expect(option.argChoices, `${name}=${value}`).toContain(value);
        }
      }
    }
    // Every key of the run configuration is a flag of the coordinator or of the worker.
    for (const key of Object.keys(config())) {
      expect(accepted.has(key), `ConfigMap key ${key} is read by no command`).toBe(true);
    }
    expect(MODEL_NAMES).toContain(config().TFJS_DDP_MODEL);
    expect(BACKEND_REQUESTS).toContain(config().TFJS_DDP_BACKEND);
  });

  it('listens on the ports the CLI defaults to, and points workers at the coordinator Service', () => {
    const coordinator = main(objects(), 'coordinator');
    const worker = main(objects(), 'worker');
    const portOption = optionForFlag(requireCommand(['coordinator']), '--port');
    const peerOption = optionForFlag(requireCommand(['worker']), '--peer-port');
    expect(Number(portOption?.defaultValue)).toBe(COORDINATOR_PORT);
    expect(Number(peerOption?.defaultValue)).toBe(PEER_PORT);
    const httpOption = optionForFlag(requireCommand(['coordinator']), '--http-port');
    expect(coordinator.container.ports).toEqual([
      { name: 'grpc', containerPort: COORDINATOR_PORT },
      { name: 'http', containerPort: Number(httpOption?.defaultValue) },
    ]);
    expect(worker.container.ports).toEqual([{ name: 'peer', containerPort: PEER_PORT }]);
    expect(Number(coordinator.env.TFJS_DDP_PORT)).toBe(COORDINATOR_PORT);
    expect(Number(worker.env.TFJS_DDP_PEER_PORT)).toBe(PEER_PORT);

    const [host, port] = worker.env.TFJS_DDP_COORDINATOR.split(':');
    const service = find<KObject & { spec: { ports: { port: number; targetPort: string }[] } }>(
      objects(),
      'Service',
      host,
    );
    const servicePort = service.spec.ports.find((p) => p.port === Number(port));
    expect(servicePort?.targetPort).toBe('grpc');
    expect(service.metadata.labels?.['app.kubernetes.io/component']).toBe('coordinator');
  });

  it('probes declared ports, and lets liveness wait out a whole step deadline', () => {
    for (const name of ['coordinator', 'worker'] as const) {
      const { container } = main(objects(), name);
      const ports = (container.ports ?? []).flatMap((p) => [p.containerPort, p.name]);
      expect(probes(container).map(([kind]) => kind)).toEqual(['startup', 'readiness', 'liveness']);
      for (const [kind, probe] of probes(container)) {
        const port = probe.grpc?.port ?? probe.tcpSocket?.port;
        expect(ports, `${name} ${kind} probe port`).toContain(port);
      }
      const liveness = container.livenessProbe!;
      const tolerated = (liveness.periodSeconds ?? 10) * (liveness.failureThreshold ?? 3);
      expect(tolerated).toBeGreaterThanOrEqual(Number(config().TFJS_DDP_STEP_TIMEOUT));
    }
  });

  it('runs exactly world-size workers as an Indexed Job', () => {
    const spec = job(objects(), 'worker').spec!;
    const worldSize = Number(config().TFJS_DDP_WORLD_SIZE);
    expect(worldSize).toBeGreaterThanOrEqual(2);
    expect([spec.parallelism, spec.completions, spec.completionMode]).toEqual([
      worldSize,
      worldSize,
      'Indexed',
    ]);
    expect(main(objects(), 'coordinator').env.TFJS_DDP_WORLD_SIZE).toBe(String(worldSize));
  });

  it("has every worker advertise its own pod's DNS name through the headless Service", () => {
    const workers = job(objects(), 'worker');
    const { spec } = podOf(workers);
    const service = find<KObject & { spec: Record<string, unknown> }>(
      objects(),
      'Service',
      spec.subdomain ?? '',
    );
    expect(service.spec).toMatchObject({ clusterIP: 'None', publishNotReadyAddresses: true });
    expect(service.spec.ports).toEqual([
      expect.objectContaining({ port: PEER_PORT, targetPort: 'peer' }),
    ]);
    const last = Number(config().TFJS_DDP_WORLD_SIZE) - 1;
    for (const index of [0, last]) {
      const pod = jobPodFacts(workers, index, 'team-a');
      const env = containerEnv(spec.containers[0], pod, objects());
      expect(env.TFJS_DDP_ADVERTISE_HOST).toBe(
        `tfjs-ddp-worker-${index}.${spec.subdomain}.team-a.svc`,
      );
      expect(env.TFJS_DDP_ADVERTISE_HOST).toBe(
        `${pod.hostname}.${service.metadata.name}.team-a.svc`,
      );
    }
  });

  it('keeps every path on a volume: data where fetch-data put it, runs writable, secrets by key', () => {
    const { spec, container, env } = main(objects(), 'coordinator');
    const fetch = spec.initContainers?.find((c) => c.name === 'fetch-data');
    const args = fetch?.args ?? [];
    expect(args.slice(0, 2)).toEqual(['data', 'download']);
    const dir = args[args.indexOf('--dir') + 1];
    const installed = onVolume(spec, fetch!, dir);
    expect(installed?.mount.readOnly ?? false).toBe(false);
    const read = onVolume(spec, container, env.TFJS_DDP_DATA);
    expect([read?.volume?.name, read?.inside]).toEqual([
      installed?.volume?.name,
      installed?.inside,
    ]);
    expect(read?.volume?.persistentVolumeClaim).toBeDefined();

    const out = onVolume(spec, container, env.TFJS_DDP_OUT);
    expect(out?.volume?.persistentVolumeClaim).toBeDefined();
    expect(out?.mount.readOnly ?? false).toBe(false);

    for (const name of ['coordinator', 'worker'] as const) {
      const m = main(objects(), name);
      const cli = cliOf(m.container)!;
      for (const [key, value] of Object.entries(m.env)) {
        if (!optionForEnv(cli.command, key) || !isAbsolute(value)) continue;
        const at = onVolume(m.spec, m.container, value);
        expect(at, `${name} ${key}=${value} is on no volume`).toBeDefined();
        const secretName = at?.volume?.secret?.secretName;
        if (secretName) {
          const secret = secrets.get(secretName);
          expect(
            Object.keys(secret?.stringData ?? {}),
            `${key}: key in Secret ${secretName}`,
          ).toContain(at?.inside);
        }
      }
      expect(m.env.TFJS_DDP_TOKEN_FILE).toBeDefined();
    }
  });

  it('gives TLS material to both sides or to neither, and probes without gRPC when TLS is on', () => {
    const tls = ['TFJS_DDP_TLS_CERT', 'TFJS_DDP_TLS_KEY', 'TFJS_DDP_TLS_CA'];
    const withTls = variant.includes('tls');
    for (const name of ['coordinator', 'worker'] as const) {
      const { container, env } = main(objects(), name);
      expect(tls.map((k) => k in env)).toEqual(tls.map(() => withTls));
      // Kubelet's gRPC probes speak plaintext only.
      for (const [, probe] of probes(container)) expect(probe.grpc === undefined).toBe(withTls);
    }
  });

  it('gives each GPU worker one GPU and requires it, and the coordinator none', () => {
    const gpu = variant.startsWith('overlays/gpu');
    const coordinator = main(objects(), 'coordinator');
    const worker = main(objects(), 'worker');
    expect(config().TFJS_DDP_BACKEND).toBe(gpu ? 'tensorflow' : 'wasm');
    expect(worker.container.resources?.limits?.['nvidia.com/gpu']).toBe(gpu ? 1 : undefined);
    expect('TFJS_DDP_GPU' in worker.env).toBe(gpu);
    expect(coordinator.container.resources?.limits?.['nvidia.com/gpu']).toBeUndefined();
    expect(coordinator.env.NVIDIA_VISIBLE_DEVICES).toBe(gpu ? 'void' : undefined);
    const tolerations = worker.spec.tolerations ?? [];
    expect(tolerations.some((t) => t.key === 'nvidia.com/gpu' && t.effect === 'NoSchedule')).toBe(
      gpu,
    );
  });
});
