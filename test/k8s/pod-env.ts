import type { IJob } from 'kubernetes-models/batch/v1';
import type { IContainer } from 'kubernetes-models/v1';
import { envFromData, type KObject, podOf } from './render.js';

/** What the API server and the Job controller give one pod of a Job, as far as env can see. */
export interface PodFacts {
  name: string;
  namespace: string;
  /** The pod's hostname: <job>-<index> for an Indexed Job's pod. */
  hostname: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

/**
 * The facts of pod `index` of `job` in `namespace`, as the Job controller sets them
 * (Kubernetes ≥ 1.27: batch.kubernetes.io/job-name label, job-completion-index annotation
 * and the <job>-<index> hostname for Indexed Jobs).
 */
export function jobPodFacts(job: IJob, index: number, namespace = 'default'): PodFacts {
  const jobName = job.metadata?.name ?? '';
  const indexed = job.spec?.completionMode === 'Indexed';
  return {
    name: `${jobName}-${indexed ? `${index}-` : ''}abcde`,
    namespace,
    hostname: indexed ? `${jobName}-${index}` : `${jobName}-abcde`,
    labels: {
      ...podOf(job).labels,
      'batch.kubernetes.io/job-name': jobName,
      'job-name': jobName,
      ...(indexed ? { 'batch.kubernetes.io/job-completion-index': String(index) } : {}),
    },
    annotations: indexed ? { 'batch.kubernetes.io/job-completion-index': String(index) } : {},
  };
}

/**
 * The environment the kubelet gives `container` in the pod described by `pod`: envFrom
 * ConfigMaps first, then `env` in order (overriding), with $(VAR) references to variables
 * defined before expanded and $$ escaping, as Kubernetes does. Supports the fieldRefs the
 * manifests use; any other source throws, so a new kind of reference gets noticed here.
 */
export function containerEnv(
  container: IContainer,
  pod: PodFacts,
  objects: readonly KObject[],
): Record<string, string> {
  const env: Record<string, string> = { ...envFromData(container, objects) };
  for (const variable of container.env ?? []) {
    if (variable.valueFrom) {
      const path = variable.valueFrom.fieldRef?.fieldPath;
      if (path === undefined) {
        throw new Error(`env ${variable.name}: only fieldRef sources are supported here`);
      }
      env[variable.name] = fieldValue(path, pod);
    } else {
      env[variable.name] = expand(variable.value ?? '', env);
    }
  }
  return env;
}

function fieldValue(path: string, pod: PodFacts): string {
  if (path === 'metadata.name') return pod.name;
  if (path === 'metadata.namespace') return pod.namespace;
  const keyed = /^metadata\.(labels|annotations)\['([^']+)'\]$/.exec(path);
  if (keyed) {
    const value = (keyed[1] === 'labels' ? pod.labels : pod.annotations)[keyed[2]];
    if (value === undefined)
      throw new Error(`fieldRef ${path}: the pod has no such ${keyed[1]} key`);
    return value;
  }
  throw new Error(`fieldRef ${path} is not supported here`);
}

/** Kubernetes' dependent-variable expansion: $(NAME) if defined, $$ → $, otherwise kept. */
export function expand(value: string, defined: Record<string, string>): string {
  return value.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (match, name?: string) => {
    if (match === '$$') return '$';
    return name !== undefined && name in defined ? defined[name] : match;
  });
}
