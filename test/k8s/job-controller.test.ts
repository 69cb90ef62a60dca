import type { IJob } from 'kubernetes-models/batch/v1';
import { beforeAll, describe, expect, it } from 'vitest';
import { JobController } from './job-controller.js';
import { find, type KObject, render } from './render.js';

// What Kubernetes does with the manifests' Jobs when their pods fail, by the rules of their
// podFailurePolicy and backoff limits (the manifest-driven restart test plays the same part).

let objects: KObject[];
beforeAll(async () => {
  objects = await render('overlays/cpu');
});

const KILLED = { exitCode: 137 };
const CONFIG_ERROR = { exitCode: 2 };

describe('the workers’ Indexed Job', () => {
  it('replaces a killed pod up to backoffLimitPerIndex times for each index', () => {
    const job = find<IJob>(objects, 'Job', 'tfjs-ddp-worker');
    const controller = new JobController(job);
    const limit = job.spec?.backoffLimitPerIndex ?? 0;
    for (let i = 0; i < limit; i++) expect(controller.decide(0, KILLED)).toBe('replace');
    expect(controller.decide(0, KILLED)).toBe('index-failed');
    // Another index has its own budget.
    expect(controller.decide(1, KILLED)).toBe('replace');
  });

  it('replaces an evicted or preempted pod without counting it, whatever its exit code', () => {
    const controller = new JobController(find<IJob>(objects, 'Job', 'tfjs-ddp-worker'));
    for (let i = 0; i < 10; i++)
      expect(controller.decide(0, { exitCode: 143, disrupted: true })).toBe('replace');
    expect(controller.decide(0, KILLED)).toBe('replace');
  });

  it('replaces a worker that left on SIGTERM (exit 143: a deleted pod), counting it', () => {
    const job = find<IJob>(objects, 'Job', 'tfjs-ddp-worker');
    const controller = new JobController(job);
    for (let i = 0; i < (job.spec?.backoffLimitPerIndex ?? 0); i++)
      expect(controller.decide(0, { exitCode: 143 })).toBe('replace');
  });

  it('fails the index at once on a configuration error, and counts a pod that exits 0 as done', () => {
    const controller = new JobController(find<IJob>(objects, 'Job', 'tfjs-ddp-worker'));
    expect(controller.decide(0, CONFIG_ERROR)).toBe('index-failed');
    expect(controller.decide(1, { exitCode: 0 })).toBe('succeeded');
  });
});

describe('the coordinator’s Job', () => {
  it('replaces a killed, crashed or stopped coordinator up to backoffLimit times', () => {
    const job = find<IJob>(objects, 'Job', 'tfjs-ddp-coordinator');
    const controller = new JobController(job);
    const ends = [KILLED, { exitCode: 1 }, { exitCode: 3 }, { exitCode: 143 }];
    for (let i = 0; i < (job.spec?.backoffLimit ?? 0); i++)
      expect(controller.decide(0, ends[i % ends.length])).toBe('replace');
    expect(controller.decide(0, KILLED)).toBe('job-failed');
  });

  it('fails at once on a configuration error; a disruption does not count', () => {
    const controller = new JobController(find<IJob>(objects, 'Job', 'tfjs-ddp-coordinator'));
    expect(controller.decide(0, { exitCode: 143, disrupted: true })).toBe('replace');
    expect(controller.decide(0, CONFIG_ERROR)).toBe('job-failed');
  });
});
