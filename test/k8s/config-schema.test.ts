import { beforeAll, describe, expect, it } from 'vitest';
import { resolveDistributedConfig } from '../../src/coordinator/distributed-config.js';
import {
  COORDINATOR_COMMAND_FLAGS,
  TRAINING_FLAGS,
  WORKER_COMMAND_FLAGS,
} from '../../src/shared/config/command-flags.js';
import { envOf, FLAGS, type FlagName, type FlagSpec } from '../../src/shared/config/flags.js';
import { allContainers, configMaps, type KObject, OVERLAYS, podOf, render } from './render.js';

// The ConfigMap and the containers' variables against the one flag schema
// (src/shared/config/flags.ts): a variable the schema does not know, or a value its entry
// refuses, fails here; so does a run configuration that would not resolve.

const BY_ENV = new Map(
  (Object.keys(FLAGS) as FlagName[]).map((name) => [envOf(name), name] as const),
);
const READ_BY_SOME_COMMAND = new Set<FlagName>([
  ...COORDINATOR_COMMAND_FLAGS,
  ...WORKER_COMMAND_FLAGS,
]);
const rendered = new Map<string, KObject[]>();

beforeAll(async () => {
  for (const overlay of OVERLAYS) rendered.set(overlay, await render(overlay));
});

describe.each(OVERLAYS)('%s', (overlay) => {
  const data = () => configMaps(rendered.get(overlay)!)[0].data ?? {};

  it('sets only variables of the schema, read by coordinator or worker, with valid values', () => {
    expect(Object.keys(data()).length).toBeGreaterThan(0);
    for (const [key, value] of Object.entries(data())) {
      const name = BY_ENV.get(key);
      expect(name, `ConfigMap key ${key} is no flag of the schema`).toBeDefined();
      expect(READ_BY_SOME_COMMAND.has(name!), `${key} is read by no command`).toBe(true);
      const spec: FlagSpec = FLAGS[name!];
      const parsed = spec.schema.safeParse(value);
      expect(parsed.success, `${key}=${value}: ${parsed.error?.issues[0]?.message}`).toBe(true);
    }
  });

  it('names in the coordinator and worker containers only variables of the schema', () => {
    for (const job of rendered.get(overlay)!.filter((o) => o.kind === 'Job')) {
      for (const container of allContainers(podOf(job as never).spec)) {
        const command = container.args?.[0];
        if (container.command || (command !== 'coordinator' && command !== 'worker')) continue;
        for (const { name } of container.env ?? []) {
          if (name.startsWith('TFJS_DDP_')) expect(BY_ENV.has(name), name).toBe(true);
        }
      }
    }
  });

  it('holds a training configuration that resolves', async () => {
    const flags: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(data())) {
      const name = BY_ENV.get(key);
      if (name && (TRAINING_FLAGS as readonly string[]).includes(name)) {
        flags[name] = (FLAGS[name] as FlagSpec).schema.parse(value);
      }
    }
    const worldSize = Number(data().TFJS_DDP_WORLD_SIZE);
    const { config } = await resolveDistributedConfig(flags, worldSize);
    expect(config.model).toBe(data().TFJS_DDP_MODEL);
  });
});
