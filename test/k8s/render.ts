import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { IJob } from 'kubernetes-models/batch/v1';
import type { IConfigMap, IContainer, IPodSpec, IService } from 'kubernetes-models/v1';
import { parseAllDocuments } from 'yaml';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const K8S = join(ROOT, 'k8s');

/** Every overlay a user may apply, by its folder under k8s/. */
export const OVERLAYS = ['overlays/cpu', 'overlays/gpu', 'overlays/gpu-8'] as const;

/** A rendered Kubernetes object: type meta and metadata, the rest as the API defines it. */
export interface KObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string>; [key: string]: unknown };
  [key: string]: unknown;
}

/** Runs `kubectl kustomize` on `dir` (relative to k8s/ or absolute) and parses what it prints. */
export async function render(dir: string): Promise<KObject[]> {
  const { stdout } = await promisify(execFile)('kubectl', ['kustomize', resolve(K8S, dir)], {
    maxBuffer: 16 * 2 ** 20,
  });
  return parseObjects(stdout, `kubectl kustomize ${dir}`);
}

/**
 * Renders an overlay with kustomize components added (as a user's own overlay would),
 * through a temporary kustomization; kustomize wants its paths relative.
 */
export async function renderWithComponents(
  overlay: string,
  components: readonly string[],
): Promise<KObject[]> {
  const dir = await mkdtemp(join(tmpdir(), 'k8s-overlay-'));
  try {
    const rel = (p: string) => relative(dir, join(K8S, p));
    await writeFile(
      join(dir, 'kustomization.yaml'),
      'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n' +
        `resources: [${rel(overlay)}]\ncomponents: [${components.map(rel).join(', ')}]\n`,
    );
    return await render(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Parses the objects of a manifest file under k8s/ (e.g. an example Secret). */
export async function readManifest(file: string): Promise<KObject[]> {
  return parseObjects(await readFile(join(K8S, file), 'utf8'), file);
}

function parseObjects(text: string, source: string): KObject[] {
  return parseAllDocuments(text).map((doc) => {
    if (doc.errors.length > 0) throw new Error(`${source}: ${doc.errors[0].message}`);
    return doc.toJS() as KObject;
  });
}

/** The one object of `kind` named `name`; throws (naming both) when it is not there. */
export function find<T = KObject>(objects: readonly KObject[], kind: string, name: string): T {
  const found = objects.find((o) => o.kind === kind && o.metadata.name === name);
  if (!found) throw new Error(`no ${kind} ${name} in the rendered manifests`);
  return found as T;
}

export function ofKind<T = KObject>(objects: readonly KObject[], kind: string): T[] {
  return objects.filter((o) => o.kind === kind) as T[];
}

export const jobs = (objects: readonly KObject[]) => ofKind<IJob & KObject>(objects, 'Job');
export const services = (objects: readonly KObject[]) =>
  ofKind<IService & KObject>(objects, 'Service');
export const configMaps = (objects: readonly KObject[]) =>
  ofKind<IConfigMap & KObject>(objects, 'ConfigMap');

/** A Job's pod spec and pod labels (every Job here has a template). */
export function podOf(job: IJob): { spec: IPodSpec; labels: Record<string, string> } {
  const template = job.spec?.template;
  if (!template?.spec) throw new Error(`Job ${job.metadata?.name} has no pod template`);
  return { spec: template.spec, labels: template.metadata?.labels ?? {} };
}

/** All containers of a pod, init containers first, in the order the kubelet starts them. */
export function allContainers(spec: IPodSpec): IContainer[] {
  return [...(spec.initContainers ?? []), ...spec.containers];
}

/** The ConfigMap data a container receives through envFrom (later sources win). */
export function envFromData(
  container: IContainer,
  objects: readonly KObject[],
): Record<string, string> {
  const data: Record<string, string> = {};
  for (const source of container.envFrom ?? []) {
    if (source.configMapRef) {
      Object.assign(
        data,
        find<IConfigMap>(objects, 'ConfigMap', source.configMapRef.name ?? '').data,
      );
    } else {
      throw new Error(`container ${container.name}: only configMapRef envFrom is supported here`);
    }
  }
  return data;
}
