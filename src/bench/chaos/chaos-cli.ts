import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { ExplainedError, UserError } from '../../shared/errors.js';
import { log } from '../../shared/logging/logger.js';
import { parsePositiveIntegers } from '../byte-sizes.js';
import { writeResultFiles } from '../result-files.js';
import { type ChaosReport, chaosMarkdown, chaosRows } from './chaos-report.js';
import { runChaosSuite } from './chaos-suite.js';
import type { RunOutcome } from './run-outcome.js';
import { CHAOS_SCENARIOS, selectScenarios } from './scenarios.js';

interface ChaosFlags {
  scenarios?: string;
  ci?: boolean;
  runs: string;
  seed?: string;
  runTimeout: string;
  runsDir?: string;
  out: string;
}

/** `tfjs-ddp bench chaos` (`npm run chaos`): fault scenarios against real processes. */
export function addChaosCommand(bench: Command): void {
  bench
    .command('chaos')
    .description(
      'fault scenarios (killed, stopped, leaving and joining workers, a restarted coordinator, ' +
        'kills during checkpoints, slow ranks) against real processes on loopback, each run ' +
        'several times with randomised timing; writes chaos.md and chaos.json',
    )
    .option(
      '--scenarios <list>',
      `comma-separated, of: ${CHAOS_SCENARIOS.map((s) => s.name).join(', ')}`,
    )
    .option('--ci', 'only the scenarios cheap enough for npm test')
    .option('--runs <n>', 'runs per scenario', '20')
    .option('--seed <n>', 'seed of the timings (default: drawn, and printed to replay)')
    .option(
      '--run-timeout <s>',
      'deadline of one run, in seconds: past it the run is a hang',
      '120',
    )
    .option('--runs-dir <dir>', 'keep the run folders in a new folder under DIR (default: removed)')
    .option('--out <dir>', 'folder for chaos.md and chaos.json', 'bench/results')
    .action(async (flags: ChaosFlags) => {
      const scenarios = selectScenarios(flags.scenarios, flags.ci ?? false);
      const [runs] = parsePositiveIntegers(flags.runs, '--runs');
      const [runTimeoutS] = parsePositiveIntegers(flags.runTimeout, '--run-timeout');
      const seed =
        flags.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(flags.seed);
      if (!Number.isSafeInteger(seed) || seed < 0)
        throw new UserError(`--seed ${flags.seed}: must be a whole number ≥ 0`);
      log().info({ seed }, `chaos seed ${seed} (replay with --seed ${seed})`);
      const parent = flags.runsDir ? resolve(flags.runsDir) : tmpdir();
      await mkdir(parent, { recursive: true });
      const workDir = await mkdtemp(join(parent, 'chaos-runs-'));
      const started = new Date();
      try {
        const results = await runChaosSuite(scenarios, {
          seed,
          runs,
          runTimeoutMs: runTimeoutS * 1000,
          workDir,
          onRun: (o) => log().info({ outcome: o }, describeRun(o)),
        });
        for (const r of results)
          if ('skipped' in r)
            log().info({ scenario: r.scenario.name }, `${r.scenario.name}: skipped: ${r.skipped}`);
        const report: ChaosReport = {
          seed,
          runsPerScenario: runs,
          runTimeoutS,
          startedAt: started.toISOString(),
          durationS: (Date.now() - started.getTime()) / 1000,
          host: `${hostname()}, node ${process.version}`,
          rows: chaosRows(results),
          outcomes: results.flatMap((r) => ('outcomes' in r ? r.outcomes : [])),
        };
        const markdown = chaosMarkdown(report);
        const paths = await writeResultFiles(flags.out, {
          'chaos.md': markdown,
          'chaos.json': `${JSON.stringify(report, null, 2)}\n`,
        });
        process.stdout.write(markdown);
        log().info({ files: paths }, `results written to ${paths.join(', ')}`);
        const unexpected = report.outcomes.filter((o) => o.failures.length > 0).length;
        if (unexpected > 0)
          throw new ExplainedError(
            `${unexpected} of ${report.outcomes.length} chaos runs went against their scenario (seed ${seed}; see the table)`,
            1,
          );
      } finally {
        if (flags.runsDir) log().info({ workDir }, `run folders kept in ${workDir}`);
        else await rm(workDir, { recursive: true, force: true });
      }
    });
}

function describeRun(o: RunOutcome): string {
  const how = o.hang
    ? 'HANG'
    : o.completed
      ? 'completed'
      : `exited ${o.exitCode}${o.cause ? `: ${o.cause}` : ''}`;
  const recovery =
    o.recoveryMs === undefined ? '' : `, recovered in ${(o.recoveryMs / 1000).toFixed(1)} s`;
  const verdict =
    o.failures.length === 0 ? 'as expected' : `NOT as expected: ${o.failures.join('; ')}`;
  return `${o.scenario} run ${o.run}: ${how} in ${(o.durationMs / 1000).toFixed(1)} s${recovery}; ${verdict}`;
}
