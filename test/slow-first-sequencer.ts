import type { TestSpecification } from 'vitest/node';
import { BaseSequencer } from 'vitest/node';

// A fresh clone (CI) has no record of how long each file took, so vitest runs the largest
// files first; a short file that runs for two minutes then starts last and one of the two
// forks idles while it finishes. These files, the longest on 2 cores (40 s and more), start first.
export const SLOW_FILES = [
  'test/distributed/worker-count-invariance.test.ts',
  'test/bench/chaos-ci.test.ts',
  'test/bench/emulated-network.test.ts',
  'test/distributed/coordinator-restart.test.ts',
  'test/bench/scaling-cli.test.ts',
  'test/distributed/resume-and-data-serving.test.ts',
  'test/distributed/batchnorm-real-data.test.ts',
  'test/distributed/elastic-membership.test.ts',
  'test/k8s/manifest-e2e.test.ts',
  'test/collectives/collective-contract.test.ts',
  'test/cli/train-eval-cli.test.ts',
  'test/distributed/elastic-limits.test.ts',
  'test/bench/allreduce-cli.test.ts',
];

export class SlowFirstSequencer extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const rank = (f: TestSpecification) => {
      const i = SLOW_FILES.findIndex((slow) => f.moduleId.endsWith(slow));
      return i < 0 ? SLOW_FILES.length : i;
    };
    // Array.prototype.sort is stable: the rest keep vitest's order.
    return sorted.sort((a, b) => rank(a) - rank(b));
  }
}
