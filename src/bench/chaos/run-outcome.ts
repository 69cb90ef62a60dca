import type { CheckpointState } from './run-folder-checks.js';
import type { Scenario } from './scenario.js';

/**
 * Final weights within this relative error (per tensor) of the reference count as equal. Float
 * rounding alone reaches 5e-5 on the chaos runs' configuration: undisturbed runs of 2 and 3
 * workers against one process, seeds 1 to 6, ended 4e-7 to 5e-5 apart (docs/chaos.md); a step
 * lost, repeated or trained on other samples moves them by 1e-2 and more.
 */
export const WEIGHTS_TOLERANCE = 1e-4;
/** Each step's loss within this relative error of the reference's: the same trajectory. */
export const TRAJECTORY_TOLERANCE = 1e-4;

/** What one chaos run did, as the table counts it. */
export interface RunOutcome {
  scenario: string;
  run: number;
  seed: number;
  /** The (last) coordinator exited 0. */
  completed: boolean;
  /** The run was still going at its deadline and was killed. */
  hang: boolean;
  /** Processes of the run alive after it ended (killed once counted). */
  orphans: number;
  exitCode: number | null;
  /** The error line a process gave when the run ended non-zero. */
  cause?: string;
  checkpoint: CheckpointState;
  /** The last step metrics.jsonl records. */
  trainedSteps: number;
  /** Largest relative error per tensor against the reference, when the run completed. */
  weightsError?: number;
  /**
   * Largest relative difference of a step's loss from the reference's loss of that step, over
   * every step record of metrics.jsonl (a step recorded twice counts twice).
   */
  trajectoryError?: number;
  /** From the last fault to the first step completed after it. */
  recoveryMs?: number;
  faults: string[];
  durationMs: number;
  /** Where the run went against what the scenario expects (empty: as expected). */
  failures: string[];
}

/** The common expectations every run is held to; the scenario's own check comes on top. */
export function judge(outcome: RunOutcome, scenario: Scenario): string[] {
  const failures: string[] = [];
  if (outcome.hang) failures.push('hang: the run did not end before its deadline');
  if (outcome.orphans > 0) failures.push(`${outcome.orphans} process(es) left alive after the run`);
  if (outcome.checkpoint.kind === 'damaged')
    failures.push(`checkpoint not loadable: ${outcome.checkpoint.message}`);
  if (outcome.checkpoint.kind === 'none' && outcome.trainedSteps >= scenario.shape.checkpointEvery)
    failures.push(`no checkpoint after ${outcome.trainedSteps} steps`);
  if (scenario.expected === 'completes') {
    if (!outcome.completed)
      failures.push(
        `expected to complete, exited ${outcome.exitCode}: ${outcome.cause ?? 'no cause given'}`,
      );
    else if (outcome.weightsError === undefined)
      failures.push('completed without exporting its model');
    else if (!(outcome.weightsError < WEIGHTS_TOLERANCE))
      failures.push(
        `final weights differ from the reference: relative error ${outcome.weightsError.toExponential(2)}`,
      );
    if (outcome.trajectoryError !== undefined && !(outcome.trajectoryError < TRAJECTORY_TOLERANCE))
      failures.push(
        `a step's loss differs from the reference's: relative error ${outcome.trajectoryError.toExponential(2)}`,
      );
  } else if (outcome.completed) {
    failures.push('expected to end with a cause, but completed');
  } else if (!outcome.hang && outcome.cause === undefined) {
    failures.push(`exited ${outcome.exitCode} without an error line naming the cause`);
  }
  return failures;
}
