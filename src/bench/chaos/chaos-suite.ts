import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { hashKeys, keyedRandom } from '../../shared/keyed-random.js';
import { CLI_MAIN } from './chaos-processes.js';
import { ChaosRun, causeOf, type MetricsRecord, readMetrics, sleep } from './chaos-run.js';
import { checkpointState, exportedTensors, maxRelativeError } from './run-folder-checks.js';
import { judge, type RunOutcome } from './run-outcome.js';
import { type RunShape, referenceFlags, referenceKey } from './run-shape.js';
import { FEATURES, missingFeatures, type Scenario } from './scenario.js';

export interface SuiteOptions {
  seed: number;
  runs: number;
  /** Hard deadline of one run, in ms: past it the run counts as a hang and is killed. */
  runTimeoutMs: number;
  /** Run folders, references and logs go here. */
  workDir: string;
  /** Told of each run as it ends (the CLI prints a line). */
  onRun?: (outcome: RunOutcome) => void;
}

/** The results of one scenario: skipped (naming what it needs) or its runs. */
export type ScenarioResult =
  | { scenario: Scenario; skipped: string }
  | { scenario: Scenario; outcomes: RunOutcome[] };

/** How long the run's processes get to exit once the coordinator has, before they are orphans. */
const ORPHAN_GRACE_MS = 15_000;

/**
 * Runs each scenario `runs` times against real processes, each run with its own timings drawn
 * from (seed, scenario, run index), so that one failing run replays with the same --seed.
 * References (undisturbed one-process runs) are computed once per shape.
 */
export async function runChaosSuite(
  scenarios: readonly Scenario[],
  opts: SuiteOptions,
): Promise<ScenarioResult[]> {
  const references = new Map<string, Reference>();
  const results: ScenarioResult[] = [];
  for (const scenario of scenarios) {
    const missing = missingFeatures(scenario);
    if (missing.length > 0) {
      results.push({
        scenario,
        skipped: `needs ${missing.map((f) => FEATURES[f].needs).join('; ')}`,
      });
      continue;
    }
    const key = referenceKey(scenario.shape);
    if (!references.has(key))
      references.set(
        key,
        await referenceRun(scenario.shape, join(opts.workDir, `reference-${references.size}`)),
      );
    const reference = references.get(key) as Reference;
    const outcomes: RunOutcome[] = [];
    for (let index = 0; index < opts.runs; index++) {
      const outcome = await runOnce(scenario, index, reference, opts);
      opts.onRun?.(outcome);
      outcomes.push(outcome);
    }
    results.push({ scenario, outcomes });
  }
  return results;
}

/** What a disturbed run is compared with: the undisturbed run's weights and each step's loss. */
export interface Reference {
  tensors: Map<string, Float32Array>;
  losses: Map<number, number>;
}

/** The undisturbed run of `shape`: `train` in one process, same global batch. */
async function referenceRun(shape: RunShape, dir: string): Promise<Reference> {
  await mkdir(dir, { recursive: true });
  const out = join(dir, 'run');
  await promisify(execFile)(
    process.execPath,
    [CLI_MAIN, 'train', ...referenceFlags(shape), '--out', out],
    {
      cwd: dir,
      env: { ...process.env, LOG_FORMAT: 'json' },
      maxBuffer: 64 * 2 ** 20,
    },
  );
  const tensors = await exportedTensors(out);
  if (!tensors) throw new Error(`the reference run in ${out} exported no model`);
  return { tensors, losses: stepLosses(await readMetrics(out)) };
}

function stepLosses(records: readonly MetricsRecord[]): Map<number, number> {
  return new Map(
    records.flatMap((r) => (r.type === 'step' ? [[r.step as number, r.loss as number]] : [])),
  );
}

/** The largest relative difference of a recorded step's loss from the reference's. */
function trajectoryError(records: readonly MetricsRecord[], reference: Reference): number {
  let worst = 0;
  for (const r of records) {
    if (r.type !== 'step') continue;
    const expected = reference.losses.get(r.step as number);
    if (expected === undefined) return Number.POSITIVE_INFINITY;
    worst = Math.max(worst, Math.abs((r.loss as number) - expected) / Math.abs(expected));
  }
  return worst;
}

async function runOnce(
  scenario: Scenario,
  index: number,
  reference: Reference,
  opts: SuiteOptions,
): Promise<RunOutcome> {
  const dir = join(opts.workDir, `${scenario.name}-${index}`);
  await mkdir(dir, { recursive: true });
  const startedMs = Date.now();
  const run = new ChaosRun(
    scenario.shape,
    join(dir, 'run'),
    randomUUID(),
    keyedRandom(opts.seed, hashKeys(...Buffer.from(scenario.name)), index),
    dir,
    startedMs + opts.runTimeoutMs,
  );
  const notes: string[] = [];
  try {
    // The deadline bounds the scenario's own waits too.
    const deadline = sleep(run.remainingMs()).then(() => {
      throw new Error('still disturbing the run at its deadline');
    });
    await Promise.race([scenario.drive(run), deadline]);
  } catch (err) {
    notes.push(`the scenario could not finish its disturbance: ${(err as Error).message}`);
  }
  const ended = await run.coordinatorExit();
  if (!ended) await run.processes.stopAll();
  const orphans = await orphansAfter(run);
  await run.processes.stopAll();
  // Each process's last lines, next to the run folder (kept with --runs-dir).
  for (const [i, proc] of run.processes.processes.entries())
    await writeFile(join(dir, `${i}-${proc.name}.log`), `${proc.tail(400)}\n`);
  const coordinator = run.coordinator;
  const exitCode = coordinator?.exited()?.code ?? null;
  const lastFault = run.faults.at(-1);
  const records = await run.metrics();
  const steps = records.filter((r) => r.type === 'step' && r.time);
  const recovered = lastFault && steps.find((r) => Date.parse(r.time as string) > lastFault.atMs);
  const tensors = exitCode === 0 ? await exportedTensors(run.runDir) : undefined;
  const outcome: RunOutcome = {
    scenario: scenario.name,
    run: index,
    seed: opts.seed,
    completed: exitCode === 0,
    hang: !ended,
    orphans: orphans.length,
    exitCode,
    cause:
      exitCode === 0
        ? undefined
        : ((coordinator && causeOf(coordinator)) ??
          run.processes.processes.map(causeOf).find((c) => c !== undefined)),
    checkpoint: await checkpointState(run.runDir),
    trainedSteps: steps.length === 0 ? 0 : Math.max(...steps.map((r) => r.step ?? 0)),
    weightsError: tensors ? maxRelativeError(tensors, reference.tensors) : undefined,
    trajectoryError: tensors ? trajectoryError(records, reference) : undefined,
    recoveryMs: recovered ? Date.parse(recovered.time as string) - lastFault.atMs : undefined,
    faults: run.faults.map((f) => f.what),
    durationMs: Date.now() - startedMs,
    failures: [],
  };
  const checked = await scenario.check?.(run);
  outcome.failures = [
    ...notes,
    ...run.findings,
    ...judge(outcome, scenario),
    ...(checked ? [checked] : []),
  ];
  if (outcome.failures.length > 0 && !outcome.completed && coordinator)
    outcome.failures.push(`coordinator's last lines:\n${coordinator.tail().slice(-1500)}`);
  return outcome;
}

/**
 * The run's processes still alive ORPHAN_GRACE_MS after its coordinator exited (found by the
 * run's marker, so workers a dead launcher left behind count too); they are killed, one by one
 * by pid, once counted.
 */
async function orphansAfter(run: ChaosRun): Promise<number[]> {
  const until = Date.now() + ORPHAN_GRACE_MS;
  let alive = await run.alive();
  while (alive.length > 0 && Date.now() < until) {
    await sleep(200);
    alive = await run.alive();
  }
  for (const pid of alive) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Gone meanwhile.
    }
  }
  return alive;
}
