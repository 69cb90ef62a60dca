import { join } from 'node:path';
import { loadSync } from '@grpc/proto-loader';
import { FLAGS } from '../../shared/config/flags.js';
import { PACKAGE_ROOT } from './chaos-processes.js';
import type { ChaosRun } from './chaos-run.js';
import type { RunShape } from './run-shape.js';

/** The .proto files, as a client that is not ours would load them. */
export const PROTO_DIR = join(PACKAGE_ROOT, 'proto');

/**
 * What a scenario needs of the trainer beyond a fixed world. A scenario whose feature the
 * built trainer lacks is listed as skipped, naming it, rather than counted as failing.
 */
export const FEATURES = {
  elastic: {
    needs: 'membership changes in place (--min-workers, --max-workers, --max-restarts)',
    present: () => 'minWorkers' in FLAGS && 'maxRestarts' in FLAGS,
  },
  coordinatorRestart: {
    needs: 'a restarted coordinator re-admitting its workers (--coordinator-grace, --resume auto)',
    present: () => 'coordinatorGrace' in FLAGS,
  },
  credentials: {
    needs: 'a per-run credential on every RPC (JoinResponse.credential)',
    present: () => {
      const proto = loadSync('tfjs_ddp/v1/coordinator.proto', { includeDirs: [PROTO_DIR] });
      const response = proto['tfjs_ddp.v1.JoinResponse'] as {
        type?: { field?: { name: string }[] };
      };
      return (response.type?.field ?? []).some((f) => f.name === 'credential');
    },
  },
} as const;

export type Feature = keyof typeof FEATURES;

/** How a scenario's run ends when the trainer does its job. */
export type Expected = 'completes' | 'exits with a cause';

export interface Scenario {
  /** kebab-case, as given to --scenarios. */
  name: string;
  /** What the scenario does, for the table's legend. */
  title: string;
  shape: RunShape;
  expected: Expected;
  needs: readonly Feature[];
  /** Cheap and deterministic enough for `npm test` (one run each). */
  ci: boolean;
  /**
   * Starts the run's processes and disturbs them (timings drawn from run.random). Returns once
   * the disturbance is done; the suite then waits for the run to end.
   */
  drive(run: ChaosRun): Promise<void>;
  /** A check of the ended run beyond the common ones: a failure's description, or undefined. */
  check?(run: ChaosRun): Promise<string | undefined>;
}

/** The features `scenario` needs that the built trainer lacks. */
export function missingFeatures(scenario: Scenario): Feature[] {
  return scenario.needs.filter((f) => !FEATURES[f].present());
}
