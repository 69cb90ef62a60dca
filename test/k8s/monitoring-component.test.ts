import type { IService } from 'kubernetes-models/v1';
import { beforeAll, describe, expect, it } from 'vitest';
import { find, jobs, type KObject, podOf, readManifest, renderWithComponents } from './render.js';

// components/monitoring: a ServiceMonitor for the Prometheus operator that points at the port
// the coordinator really serves /metrics on, with the Secret the coordinator guards it with.

let objects: KObject[];
let secretNames: Set<string>;

beforeAll(async () => {
  objects = await renderWithComponents('overlays/cpu', ['components/monitoring']);
  const examples = await readManifest('secrets/join-token.example.yaml');
  secretNames = new Set(examples.map((s) => s.metadata.name));
});

describe('components/monitoring', () => {
  it('scrapes the coordinator Service port that targets the container port the CLI listens on', () => {
    const monitor = find<{
      spec: {
        selector: { matchLabels: Record<string, string> };
        endpoints: {
          port: string;
          path: string;
          authorization: { credentials: { name: string } };
        }[];
      };
    }>(objects, 'ServiceMonitor', 'tfjs-ddp-coordinator');
    const service = find<IService & KObject>(objects, 'Service', 'tfjs-ddp-coordinator');
    for (const [key, value] of Object.entries(monitor.spec.selector.matchLabels)) {
      expect(service.metadata?.labels?.[key]).toBe(value);
    }
    const [endpoint] = monitor.spec.endpoints;
    expect(endpoint.path).toBe('/metrics');
    const port = service.spec?.ports?.find((p) => p.name === endpoint.port);
    expect(port?.targetPort).toBe('http');
    const coordinator = jobs(objects).find((j) => j.metadata?.name === 'tfjs-ddp-coordinator');
    const container = podOf(coordinator as never).spec.containers[0];
    const http = container.ports?.find((p) => p.name === 'http');
    const env = Object.fromEntries((container.env ?? []).map((e) => [e.name, e.value]));
    expect(String(http?.containerPort)).toBe(env.TFJS_DDP_HTTP_PORT);
    expect(service.metadata?.annotations?.['prometheus.io/port']).toBe(env.TFJS_DDP_HTTP_PORT);
    expect(secretNames.has(endpoint.authorization.credentials.name)).toBe(true);
  });

  it('opens only the HTTP port to the monitoring namespace', () => {
    const policy = find<{ spec: { ingress: { ports: { port: number }[] }[] } }>(
      objects,
      'NetworkPolicy',
      'tfjs-ddp-metrics',
    );
    expect(policy.spec.ingress.flatMap((i) => i.ports.map((p) => p.port))).toEqual([7080]);
  });
});
