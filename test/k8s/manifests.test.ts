import type { IJob, IJobSpec } from 'kubernetes-models/batch/v1';
import * as batchV1 from 'kubernetes-models/batch/v1';
import * as networkingV1 from 'kubernetes-models/networking.k8s.io/v1';
import type {
  IConfigMap,
  IContainer,
  IPersistentVolumeClaim,
  IPodSpec,
  ISecret,
} from 'kubernetes-models/v1';
import * as coreV1 from 'kubernetes-models/v1';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  allContainers,
  find,
  jobs,
  type KObject,
  OVERLAYS,
  ofKind,
  podOf,
  readManifest,
  render,
  renderWithComponents,
  services,
} from './render.js';

// The shapes of the manifests: valid against the API schemas, labelled, self-consistent,
// locked down. How they fit the CLI is in manifests-cli.test.ts.

const VARIANTS = [...OVERLAYS, 'overlays/cpu + components/tls'] as const;
const EXAMPLE_SECRETS = ['secrets/join-token.example.yaml', 'secrets/tls.example.yaml'];
const rendered = new Map<string, KObject[]>();
let exampleSecrets: (ISecret & KObject)[];
let runsReader: KObject[];

beforeAll(async () => {
  for (const overlay of OVERLAYS) rendered.set(overlay, await render(overlay));
  rendered.set(VARIANTS[3], await renderWithComponents('overlays/cpu', ['components/tls']));
  exampleSecrets = (await Promise.all(EXAMPLE_SECRETS.map(readManifest))).flat() as never;
  runsReader = await readManifest('tools/runs-reader.yaml');
});

/** The API groups the manifests use, as kubernetes-models' classes (each with validate()). */
const MODELS = { v1: coreV1, 'batch/v1': batchV1, 'networking.k8s.io/v1': networkingV1 } as Record<
  string,
  Record<string, unknown>
>;

/** Validates one object with kubernetes-models' JSON-schema validator for its apiVersion/kind. */
function validateObject(object: KObject): void {
  const Model = MODELS[object.apiVersion]?.[object.kind] as
    | (new (
        data: unknown,
      ) => { validate(): void })
    | undefined;
  if (!Model) throw new Error(`kubernetes-models has no ${object.apiVersion} ${object.kind}`);
  try {
    new Model(object).validate();
  } catch (err) {
    throw new Error(`${object.kind} ${object.metadata.name}: ${(err as Error).message}`);
  }
}

const mountedVolume = (spec: IPodSpec, container: IContainer, path: string) => {
  const mount = container.volumeMounts?.find((m) => m.mountPath === path);
  return mount && spec.volumes?.find((v) => v.name === mount.name);
};

describe('kubernetes-models validation', () => {
  it('rejects an object that breaks the schema (the validator is really applied)', () => {
    const job = structuredClone(
      find<KObject>(rendered.get('overlays/cpu')!, 'Job', 'tfjs-ddp-worker'),
    );
    (job.spec as { parallelism: unknown }).parallelism = 'two';
    expect(() => validateObject(job)).toThrow(/parallelism must be integer/);
  });
});

describe.each(VARIANTS)('%s', (variant) => {
  const objects = () => rendered.get(variant)!;

  it('renders objects that are all valid against the Kubernetes API schemas', () => {
    expect(
      objects()
        .map((o) => `${o.kind}/${o.metadata.name}`)
        .sort(),
    ).toEqual([
      'ConfigMap/tfjs-ddp-config',
      'Job/tfjs-ddp-coordinator',
      'Job/tfjs-ddp-worker',
      'NetworkPolicy/tfjs-ddp',
      'PersistentVolumeClaim/tfjs-ddp-data',
      'PersistentVolumeClaim/tfjs-ddp-runs',
      'Service/tfjs-ddp-coordinator',
      'Service/tfjs-ddp-workers',
    ]);
    for (const object of objects()) validateObject(object);
  });

  it('labels every object and pod as a part of tfjs-ddp, with its component', () => {
    const labelSets = [
      ...objects().map((o) => o.metadata.labels ?? {}),
      ...jobs(objects()).map((j) => podOf(j).labels),
    ];
    for (const labels of labelSets) {
      expect(labels).toMatchObject({
        'app.kubernetes.io/name': 'tfjs-ddp',
        'app.kubernetes.io/part-of': 'tfjs-ddp',
      });
      expect(labels['app.kubernetes.io/component']).toMatch(/^[a-z-]+$/);
    }
  });

  it('has each Service select exactly the pods of its component, on ports they declare', () => {
    const pods = jobs(objects()).map((j) => ({ job: j.metadata?.name, ...podOf(j) }));
    const expected: Record<string, string> = {
      'tfjs-ddp-coordinator': 'tfjs-ddp-coordinator',
      'tfjs-ddp-workers': 'tfjs-ddp-worker',
    };
    for (const service of services(objects())) {
      const selector = service.spec?.selector ?? {};
      expect(Object.keys(selector).length).toBeGreaterThan(0);
      const selected = pods.filter((p) =>
        Object.entries(selector).every(([k, v]) => p.labels[k] === v),
      );
      expect(selected.map((p) => p.job)).toEqual([expected[service.metadata.name]]);
      const ports = selected[0].spec.containers.flatMap((c) => c.ports ?? []);
      for (const port of service.spec?.ports ?? []) {
        const target = port.targetPort ?? port.port;
        expect(ports.some((p) => p.name === target || p.containerPort === target)).toBe(true);
      }
    }
  });

  it('lets the NetworkPolicy admit every declared container port between tfjs-ddp pods', () => {
    const [policy] = ofKind<
      KObject & {
        spec: { podSelector: { matchLabels: object }; ingress: { ports: { port: number }[] }[] };
      }
    >(objects(), 'NetworkPolicy');
    const allowed = policy.spec.ingress.flatMap((rule) => rule.ports.map((p) => p.port));
    for (const job of jobs(objects())) {
      const { spec, labels } = podOf(job);
      expect(labels).toMatchObject(policy.spec.podSelector.matchLabels);
      for (const port of spec.containers.flatMap((c) => c.ports ?? [])) {
        expect(allowed).toContain(port.containerPort);
      }
    }
  });

  it('references only ConfigMaps, claims and Secrets that exist (Secrets: as documented examples)', () => {
    const examples = new Map(exampleSecrets.map((s) => [s.metadata.name, s]));
    for (const job of jobs(objects())) {
      const { spec } = podOf(job);
      for (const container of allContainers(spec)) {
        for (const source of container.envFrom ?? []) {
          find(objects(), 'ConfigMap', source.configMapRef?.name ?? '');
        }
      }
      for (const volume of spec.volumes ?? []) {
        if (volume.persistentVolumeClaim) {
          find(objects(), 'PersistentVolumeClaim', volume.persistentVolumeClaim.claimName);
        }
        if (volume.secret) {
          // Secrets are created by the user (README); each has a documented example.
          const example = examples.get(volume.secret.secretName ?? '');
          expect(example, `example for Secret ${volume.secret.secretName}`).toBeDefined();
          expect(volume.secret.optional ?? false).toBe(false);
        }
      }
    }
  });

  it('runs every pod and container locked down (restricted Pod Security Standard)', () => {
    for (const job of jobs(objects())) {
      const { spec } = podOf(job);
      expect(spec.restartPolicy).toBe('Never');
      expect(spec.automountServiceAccountToken).toBe(false);
      // Service links inject TFJS_DDP_COORDINATOR_* variables: the CLI's env namespace.
      expect(spec.enableServiceLinks).toBe(false);
      expect(spec.securityContext).toMatchObject({
        runAsNonRoot: true,
        seccompProfile: { type: 'RuntimeDefault' },
      });
      expect(spec.securityContext?.runAsUser).toBeGreaterThan(0);
      for (const container of allContainers(spec)) {
        const where = `${job.metadata?.name}/${container.name}`;
        expect(container.securityContext, where).toMatchObject({
          allowPrivilegeEscalation: false,
          readOnlyRootFilesystem: true,
          capabilities: { drop: ['ALL'] },
        });
        expect(container.securityContext?.privileged ?? false).toBe(false);
        expect(container.securityContext?.capabilities?.add ?? []).toEqual([]);
        // A read-only root needs a writable /tmp (Node, CUDA caches, HOME=/tmp).
        expect(mountedVolume(spec, container, '/tmp')?.emptyDir, `${where} /tmp`).toBeDefined();
        for (const kind of ['requests', 'limits'] as const) {
          expect(container.resources?.[kind], `${where} ${kind}`).toMatchObject({
            cpu: expect.anything(),
            memory: expect.anything(),
          });
        }
        expect(container.image, where).toMatch(/^[^:@]+(:[\w.-]+|@sha256:[0-9a-f]{64})$/);
        expect(container.image).not.toMatch(/:latest$/);
      }
    }
  });

  it('replaces a failed pod unless its exit code says configuration error, ignoring disruptions', () => {
    const configError = 2; // UserError's exit code: no restart can fix it.
    for (const job of jobs(objects())) {
      const spec: Partial<IJobSpec> = job.spec ?? {};
      const pod = podOf(job).spec;
      const main = pod.containers[0].name;
      // Both fields require restartPolicy Never (the API server refuses the Job otherwise).
      expect(pod.restartPolicy).toBe('Never');
      const indexed = spec.completionMode === 'Indexed';
      // Per index for the workers (one index failing cannot use up the others' retries).
      if (indexed) {
        expect(spec.backoffLimitPerIndex).toBeGreaterThanOrEqual(1);
        expect(spec.backoffLimit).toBeUndefined();
        // One pod per index at a time: its hostname is the rank's address in the ring.
        expect(spec.podReplacementPolicy).toBe('Failed');
      } else {
        expect(spec.backoffLimitPerIndex).toBeUndefined();
        expect(spec.backoffLimit).toBeGreaterThanOrEqual(1);
      }
      // Rules apply in order: a disruption is recognised before its exit code is looked at.
      expect(spec.podFailurePolicy?.rules).toEqual([
        { action: 'Ignore', onPodConditions: [{ type: 'DisruptionTarget', status: 'True' }] },
        {
          // FailIndex is allowed only with backoffLimitPerIndex.
          action: indexed ? 'FailIndex' : 'FailJob',
          onExitCodes: { containerName: main, operator: 'In', values: [configError] },
        },
      ]);
    }
  });

  it('gives SIGTERM a whole step deadline to end in a graceful leave or checkpoint', () => {
    const config = find<IConfigMap>(objects(), 'ConfigMap', 'tfjs-ddp-config').data ?? {};
    const stepTimeout = Number(config.TFJS_DDP_STEP_TIMEOUT);
    expect(stepTimeout).toBeGreaterThan(0);
    for (const job of jobs(objects()))
      expect(podOf(job).spec.terminationGracePeriodSeconds).toBeGreaterThan(stepTimeout);
  });

  it('restarts the coordinator on its run folder: --resume auto on the runs claim', () => {
    const coordinator = find<IJob>(objects(), 'Job', 'tfjs-ddp-coordinator');
    const container = podOf(coordinator).spec.containers[0];
    expect(container.env).toContainEqual({ name: 'TFJS_DDP_RESUME', value: 'auto' });
    const runs = container.volumeMounts?.find((m) => m.name === 'runs');
    const claim = podOf(coordinator).spec.volumes?.find((v) => v.name === 'runs');
    expect(claim?.persistentVolumeClaim?.claimName).toBe('tfjs-ddp-runs');
    const config = find<IConfigMap>(objects(), 'ConfigMap', 'tfjs-ddp-config').data ?? {};
    expect(config.TFJS_DDP_OUT.startsWith(`${runs?.mountPath}/`)).toBe(true);
  });

  it('keeps one image per overlay for the coordinator and the workers', () => {
    const images = new Set(
      jobs(objects()).flatMap((j) => allContainers(podOf(j).spec).map((c) => c.image)),
    );
    expect(images.size).toBe(1);
    expect([...images][0]).toMatch(variant.startsWith('overlays/gpu') ? /-gpu:/ : /tfjs-ddp:/);
  });
});

describe('example manifests', () => {
  it('are valid, and the runs reader mounts the runs claim read-only, locked down', () => {
    for (const object of [...exampleSecrets, ...runsReader]) validateObject(object);
    const pod = runsReader[0] as KObject & { spec: IPodSpec };
    const claim = pod.spec.volumes?.[0].persistentVolumeClaim;
    for (const objects of rendered.values()) {
      const pvc = find<IPersistentVolumeClaim>(
        objects,
        'PersistentVolumeClaim',
        claim?.claimName ?? '',
      );
      expect(pvc.metadata?.labels?.['app.kubernetes.io/component']).toBe('runs');
    }
    expect(claim?.readOnly).toBe(true);
    expect(pod.spec.containers[0].securityContext).toMatchObject({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
    });
  });

  it('hold placeholders only, never a usable secret', () => {
    for (const secret of exampleSecrets) {
      for (const value of Object.values(secret.stringData ?? {}))
        expect(value).toMatch(/REPLACE-ME/);
      expect(secret.data).toBeUndefined();
    }
  });
});
