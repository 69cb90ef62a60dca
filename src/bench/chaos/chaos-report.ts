import type { ScenarioResult } from './chaos-suite.js';
import { type RunOutcome, TRAJECTORY_TOLERANCE, WEIGHTS_TOLERANCE } from './run-outcome.js';

/** One scenario's row of the chaos table. */
export interface ChaosRow {
  scenario: string;
  title: string;
  expected: string;
  skipped?: string;
  runs: number;
  completed: number;
  hangs: number;
  orphans: number;
  /** Completed runs whose final weights equal the reference (of `completed`). */
  weightsEqual: number;
  maxWeightsError: number | null;
  /** Completed runs whose every step's loss equals the reference's (of `completed`). */
  trajectoryEqual: number;
  maxTrajectoryError: number | null;
  checkpointOk: number;
  recoveryMedianMs: number | null;
  recoveryMaxMs: number | null;
  /** Runs that went as the scenario expects (no failure). */
  asExpected: number;
  /** The distinct causes of the runs that ended non-zero. */
  causes: string[];
  /** The distinct failures, each with the first run it happened in. */
  failures: string[];
}

export interface ChaosReport {
  seed: number;
  runsPerScenario: number;
  runTimeoutS: number;
  startedAt: string;
  durationS: number;
  host: string;
  rows: ChaosRow[];
  outcomes: RunOutcome[];
}

function median(values: number[]): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

export function chaosRows(results: readonly ScenarioResult[]): ChaosRow[] {
  return results.map((result) => {
    const { scenario } = result;
    const outcomes = 'outcomes' in result ? result.outcomes : [];
    const completed = outcomes.filter((o) => o.completed);
    const errors = completed.flatMap((o) => (o.weightsError === undefined ? [] : [o.weightsError]));
    const deviations = completed.flatMap((o) =>
      o.trajectoryError === undefined ? [] : [o.trajectoryError],
    );
    const recoveries = outcomes.flatMap((o) => (o.recoveryMs === undefined ? [] : [o.recoveryMs]));
    const failures = new Map<string, number>();
    for (const o of outcomes)
      for (const f of o.failures)
        if (!failures.has(f.split('\n')[0])) failures.set(f.split('\n')[0], o.run);
    return {
      scenario: scenario.name,
      title: scenario.title,
      expected: scenario.expected,
      skipped: 'skipped' in result ? result.skipped : undefined,
      runs: outcomes.length,
      completed: completed.length,
      hangs: outcomes.filter((o) => o.hang).length,
      orphans: outcomes.reduce((sum, o) => sum + o.orphans, 0),
      weightsEqual: errors.filter((e) => e < WEIGHTS_TOLERANCE).length,
      maxWeightsError: errors.length > 0 ? Math.max(...errors) : null,
      trajectoryEqual: deviations.filter((e) => e < TRAJECTORY_TOLERANCE).length,
      maxTrajectoryError: deviations.length > 0 ? Math.max(...deviations) : null,
      checkpointOk: outcomes.filter((o) => o.checkpoint.kind === 'ok').length,
      recoveryMedianMs: median(recoveries),
      recoveryMaxMs: recoveries.length > 0 ? Math.max(...recoveries) : null,
      asExpected: outcomes.filter((o) => o.failures.length === 0).length,
      causes: [...new Set(outcomes.flatMap((o) => (o.cause ? [o.cause] : [])))],
      failures: [...failures].map(([f, run]) => `run ${run}: ${f}`),
    };
  });
}

const seconds = (ms: number | null) => (ms === null ? '–' : `${(ms / 1000).toFixed(1)} s`);

/** The table as markdown: one row per scenario, then the legend and each failure. */
export function chaosMarkdown(report: ChaosReport): string {
  const lines = [
    `# Chaos suite: ${report.runsPerScenario} run(s) per scenario, seed ${report.seed}`,
    '',
    `${report.startedAt}, ${report.host}; ${report.durationS.toFixed(0)} s in all; deadline ${report.runTimeoutS} s per run.`,
    `Replay: \`npm run chaos -- --seed ${report.seed} --runs ${report.runsPerScenario} --scenarios <name>\`.`,
    '',
    `Equal to the reference: final weights within ${WEIGHTS_TOLERANCE} relative error per tensor, each step's loss within ${TRAJECTORY_TOLERANCE} (max seen in brackets).`,
    '',
    '| scenario | expected | runs | as expected | completed | hangs | orphans | weights = reference | losses = reference | checkpoint ok | recovery median / max | cause (non-zero exits) |',
    '| --- | --- | --: | --: | --: | --: | --: | --: | --: | --: | --: | --- |',
  ];
  for (const row of report.rows) {
    if (row.skipped) {
      lines.push(
        `| ${row.scenario} | ${row.expected} | skipped: ${row.skipped} | | | | | | | | | |`,
      );
      continue;
    }
    const weights =
      row.completed === 0
        ? '–'
        : `${row.weightsEqual}/${row.completed} (max ${row.maxWeightsError?.toExponential(1)})`;
    const losses =
      row.completed === 0
        ? '–'
        : `${row.trajectoryEqual}/${row.completed} (max ${row.maxTrajectoryError?.toExponential(1)})`;
    lines.push(
      `| ${row.scenario} | ${row.expected} | ${row.runs} | ${row.asExpected} | ${row.completed} | ${row.hangs} | ${row.orphans} | ${weights} | ${losses} | ${row.checkpointOk}/${row.runs} | ${seconds(row.recoveryMedianMs)} / ${seconds(row.recoveryMaxMs)} | ${row.causes.map(cell).join('<br>') || '–'} |`,
    );
  }
  lines.push('', '## Scenarios', '');
  for (const row of report.rows) lines.push(`- **${row.scenario}**: ${row.title}.`);
  const failing = report.rows.filter((r) => r.failures.length > 0);
  if (failing.length > 0) {
    lines.push('', '## Runs not as expected', '');
    for (const row of failing)
      for (const f of row.failures) lines.push(`- ${row.scenario}, ${cell(f)}`);
  }
  return `${lines.join('\n')}\n`;
}

function cell(text: string): string {
  return text.replaceAll('|', '\\|').replaceAll('\n', ' ');
}
