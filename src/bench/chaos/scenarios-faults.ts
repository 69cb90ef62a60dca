import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { type ChaosRun, ScenarioError, sleep } from './chaos-run.js';
import { type HostileAnswer, hostileCalls } from './hostile-client.js';
import { checkpointState, leftoverTemporaryFiles } from './run-folder-checks.js';
import { SMALL_RUN } from './run-shape.js';
import type { Scenario } from './scenario.js';

// Faults that need no membership change: a kill while the checkpoint is written, a slow or
// stopped rank that must not be mistaken for a lost one, a shard with fewer samples than ranks.

/** Polls until none of the run's processes is alive (a killed launcher's workers included). */
async function noneAlive(run: ChaosRun, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if ((await run.alive()).length === 0) return true;
    await sleep(100);
  }
  return false;
}

/**
 * Stops and continues `pid` in a duty cycle (`stoppedMs` of every `stoppedMs + runningMs`)
 * until `until()`: the process computes at a fraction of its speed but is never silent for
 * longer than `stoppedMs`, as a rank on a slow or shared device.
 */
async function throttle(
  run: ChaosRun,
  proc: Parameters<ChaosRun['processes']['signal']>[0],
  stoppedMs: number,
  runningMs: number,
  until: () => boolean,
) {
  while (!until() && run.remainingMs() > 0) {
    run.processes.signal(proc, 'SIGSTOP');
    await sleep(stoppedMs);
    run.processes.signal(proc, 'SIGCONT');
    await sleep(runningMs);
  }
}

export const FAULT_SCENARIOS: Scenario[] = [
  {
    name: 'kill-during-checkpoint',
    title:
      'SIGKILL `train --workers 3` (checkpoint every step) at a random moment, then `train --resume`',
    shape: { ...SMALL_RUN, checkpointEvery: 1 },
    expected: 'completes',
    needs: [],
    ci: true,
    async drive(run) {
      const launcher = run.startLauncher();
      const step = run.draw(3, run.shape.steps - 8);
      if (!(await run.waitForStep(step)))
        throw new ScenarioError(`the run never completed step ${step}`, launcher);
      await sleep(run.draw(0, 80));
      run.processes.signal(launcher, 'SIGKILL');
      run.fault(`SIGKILL the launcher after step ${step}`);
      await launcher.exit;
      // Its workers lose their coordinator and must go by themselves.
      if (!(await noneAlive(run, 15_000)))
        run.findings.push('the killed launcher’s workers were still alive 15 s later');
      const left = await checkpointState(run.runDir);
      if (left.kind !== 'ok')
        run.findings.push(
          `after the kill the run folder held no loadable checkpoint (${left.kind})`,
        );
      run.startLauncher(['--resume', run.runDir]);
    },
    async check(run) {
      const left = await leftoverTemporaryFiles(run.runDir);
      return left.length === 0
        ? undefined
        : `temporary files left in the run folder: ${left.join(', ')}`;
    },
  },
  {
    name: 'short-shard',
    title: 'the last batch of the epoch (2 samples) over 4 workers: two ranks get none',
    // 2,000 synthetic training images = 37 × 54 + 2.
    shape: { ...SMALL_RUN, workers: 4, globalBatch: 54, steps: 39, checkpointEvery: 10 },
    expected: 'completes',
    needs: [],
    ci: false,
    async drive(run) {
      await run.startWorld();
    },
  },
  {
    name: 'delayed-rank',
    title:
      'one worker slowed to a tenth of its speed for 1.5–2.5 s (each step under --step-timeout): no failure, metrics.jsonl names it',
    shape: SMALL_RUN,
    expected: 'completes',
    needs: [],
    ci: true,
    async drive(run) {
      const workers = await run.startWorld();
      const step = run.draw(run.shape.checkpointEvery + 1, run.shape.steps - 8);
      if (!(await run.waitForStep(step)))
        throw new ScenarioError(`the run never completed step ${step}`, run.coordinator);
      const victim = workers[run.draw(0, workers.length - 1)];
      const rank = await run.rankOf(victim);
      const from = Date.now();
      const forMs = run.draw(1500, 2500);
      run.fault(`slow down rank ${rank} after step ${step}`);
      await throttle(run, victim, 300, 30, () => Date.now() - from > forMs);
      delayed.set(run, { rank: rank ?? -1, from, to: Date.now() });
    },
    async check(run) {
      const { rank, from, to } = delayed.get(run) ?? { rank: -1, from: 0, to: 0 };
      const slowSteps = (await run.metrics()).filter(
        (r) => r.type === 'step' && r.time && Date.parse(r.time) > from && Date.parse(r.time) <= to,
      );
      // A pause that hits the rank's own work (data, compute, apply) shows in its own phase
      // times; one in the all-reduce stalls every rank alike. So over the steps it was slowed
      // in, the slow rank is the one whose own work took longest.
      type RankTimes = { rank: number; dataMs: number; computeMs: number; applyMs: number };
      const own = new Map<number, number>();
      for (const record of slowSteps)
        for (const r of (record.ranks ?? []) as RankTimes[])
          own.set(r.rank, (own.get(r.rank) ?? 0) + r.dataMs + r.computeMs + r.applyMs);
      const named = [...own].sort((a, b) => b[1] - a[1])[0]?.[0];
      return named === rank
        ? undefined
        : `over the ${slowSteps.length} steps rank ${rank} was slowed in, metrics.jsonl shows rank ${named} working longest, not it`;
    },
  },
  {
    name: 'long-evaluation',
    title:
      'one rank slowed to 2% of its speed (stopped 0.9 s in every 0.915 s) during the evaluation, which then outlasts --step-timeout',
    // One image per evaluation batch: many small calls, so that the evaluation lasts; and
    // enough of them that it is still going once the throttle has started (the scenario
    // notices the last step through metrics.jsonl, up to a few hundred ms late on a busy
    // machine: with 60 images, 2 runs of 20 had finished most of it by then).
    shape: { ...SMALL_RUN, evalBatchSize: 1, valSize: 180 },
    expected: 'completes',
    needs: [],
    ci: false,
    async drive(run) {
      const workers = await run.startWorld();
      if (!(await run.waitForStep(run.shape.steps)))
        throw new ScenarioError('the run never reached its evaluation', run.coordinator);
      const slow = workers[run.draw(0, workers.length - 1)];
      run.fault(`throttle ${slow.name} during the evaluation`);
      await throttle(run, slow, 900, 15, () => Boolean(run.coordinator?.exited()));
    },
    async check(run) {
      const records = await run.metrics();
      const last = records.find((r) => r.type === 'step' && r.step === run.shape.steps);
      const evaluation = records.find((r) => r.type === 'eval');
      if (!last?.time || !evaluation?.time)
        return 'no evaluation after the last step in metrics.jsonl';
      const seconds = (Date.parse(evaluation.time) - Date.parse(last.time)) / 1000;
      return seconds > run.shape.stepTimeoutS
        ? undefined
        : `the evaluation took ${seconds.toFixed(1)} s, not longer than --step-timeout: the scenario tested nothing`;
    },
  },
  {
    name: 'hostile-client',
    title:
      'a plain @grpc/grpc-js client sends chunks over the size limit and of the wrong length into every ring and reduction stream, and an oversized Join, mid-run',
    shape: SMALL_RUN,
    expected: 'completes',
    needs: ['credentials'],
    ci: false,
    async drive(run) {
      const token = randomBytes(24).toString('hex');
      const tokenFile = join(dirname(run.runDir), 'join-token');
      await writeFile(tokenFile, token, { mode: 0o600 });
      const auth = ['--token-file', tokenFile];
      const workers = await run.startWorld(auth, auth);
      const peers = await Promise.all(workers.map((w) => run.peerAddressOf(w)));
      if (peers.some((p) => p === undefined))
        throw new ScenarioError('a worker never joined', run.coordinator);
      const step = run.draw(run.shape.checkpointEvery + 1, run.shape.steps - 8);
      if (!(await run.waitForStep(step)))
        throw new ScenarioError(`the run never completed step ${step}`, run.coordinator);
      run.fault(`hostile calls after step ${step}`);
      const answers = await hostileCalls(
        `127.0.0.1:${run.coordinatorPort}`,
        peers as string[],
        token,
      );
      hostile.set(run, answers);
    },
    async check(run) {
      const accepted = (hostile.get(run) ?? []).filter(
        (a) => a.code === status.OK || a.received > 0,
      );
      return accepted.length === 0
        ? undefined
        : `hostile calls answered: ${accepted.map((a) => `${a.call} (code ${a.code}, ${a.received} messages)`).join('; ')}`;
    },
  },
];

/** What the hostile client's calls got back, for the check. */
const hostile = new WeakMap<ChaosRun, HostileAnswer[]>();

/** The rank delayed-rank slowed, and when, for its check. */
const delayed = new WeakMap<ChaosRun, { rank: number; from: number; to: number }>();
