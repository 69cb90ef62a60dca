import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runChaosSuite, type ScenarioResult } from '../../src/bench/chaos/chaos-suite.js';
import { selectScenarios } from '../../src/bench/chaos/scenarios.js';
import { ensureBuilt } from '../cli/run-cli.js';

// The CI subset of the chaos suite (`npm run chaos -- --ci`): one run of each cheap scenario
// against real processes (coordinator and workers of the built CLI, on loopback), with timings
// drawn from a fixed seed. Scenarios whose feature is not built are reported as skipped.
// The full suite (20 runs each) runs on demand: see docs/chaos.md.

const SEED = 20261206;
const scenarios = selectScenarios(undefined, true);
let work: string;
let results: ScenarioResult[];

beforeAll(async () => {
  await ensureBuilt();
  work = await mkdtemp(join(tmpdir(), 'chaos-ci-'));
  results = await runChaosSuite(scenarios, {
    seed: SEED,
    runs: 1,
    runTimeoutMs: 120_000,
    workDir: work,
  });
}, 900_000);

afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

describe(`the chaos suite's CI subset (seed ${SEED})`, () => {
  it.each(scenarios.map((s) => s.name))('%s', (name) => {
    const result = results.find((r) => r.scenario.name === name);
    if (!result || 'skipped' in result) {
      console.info(
        `${name}: skipped: ${result && 'skipped' in result ? result.skipped : 'no result'}`,
      );
      return;
    }
    for (const outcome of result.outcomes) {
      expect(outcome.hang, `${name}: hang`).toBe(false);
      expect(outcome.orphans, `${name}: processes left alive`).toBe(0);
      expect(outcome.checkpoint.kind, `${name}: checkpoint`).not.toBe('damaged');
      expect(
        outcome.completed || outcome.cause !== undefined,
        `${name}: neither completed nor a cause`,
      ).toBe(true);
      // Everything the scenario expects: completion with the reference's weights, or its cause.
      expect(outcome.failures, `${name}: ${outcome.failures.join('\n')}`).toEqual([]);
    }
  });
});
