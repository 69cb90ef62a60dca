import { UserError } from '../../shared/errors.js';
import type { Scenario } from './scenario.js';
import { FAULT_SCENARIOS } from './scenarios-faults.js';
import { MEMBERSHIP_SCENARIOS } from './scenarios-membership.js';

/** Every chaos scenario, in the table's order. */
export const CHAOS_SCENARIOS: readonly Scenario[] = [...MEMBERSHIP_SCENARIOS, ...FAULT_SCENARIOS];

/** The scenarios named in `list` (comma-separated; all when absent), the CI subset with `ci`. */
export function selectScenarios(list: string | undefined, ci: boolean): Scenario[] {
  const pool = CHAOS_SCENARIOS.filter((s) => !ci || s.ci);
  if (list === undefined) return pool;
  return list.split(',').map((name) => {
    const scenario = pool.find((s) => s.name === name.trim());
    if (!scenario)
      throw new UserError(
        `--scenarios: no scenario ${name}${ci ? ' in the CI subset' : ''}; there are ${pool.map((s) => s.name).join(', ')}`,
      );
    return scenario;
  });
}
