import type { ChaosProcess } from './chaos-processes.js';
import { type ChaosRun, causeOf, ScenarioError, sleep } from './chaos-run.js';
import { SMALL_RUN } from './run-shape.js';
import type { Scenario } from './scenario.js';

// Scenarios that change the world's membership while it trains: workers lost (killed, stopped,
// leaving), gained, a coordinator replaced. Each draws the step it strikes at from the run's
// random stream: after the first checkpoint, early enough that the run has steps left.

/** The step the fault comes after, and a moment inside the next step. */
async function reachRandomStep(run: ChaosRun): Promise<number> {
  const step = run.draw(run.shape.checkpointEvery + 1, run.shape.steps - 8);
  if (!(await run.waitForStep(step)))
    throw new ScenarioError(`the run never completed step ${step}`, run.coordinator);
  await sleep(run.draw(0, 60));
  return step;
}

function pick(run: ChaosRun, workers: readonly ChaosProcess[]): ChaosProcess {
  return workers[run.draw(0, workers.length - 1)];
}

/**
 * The run goes on with fewer workers than it started with (never below 2 here), through up to
 * 5 membership changes after lost workers (--max-restarts is 0 by default: a loss ends the run).
 */
const SHRINKABLE = ['--min-workers', '2', '--max-restarts', '5'];

/** The worker worker-joins starts into the running world, for its check. */
const joiners = new WeakMap<ChaosRun, ChaosProcess>();

/** Starts a world that may shrink, and sends `signal` to a random worker after a random step. */
async function signalRandomWorker(run: ChaosRun, signal: NodeJS.Signals): Promise<ChaosProcess> {
  const workers = await run.startWorld(SHRINKABLE);
  const step = await reachRandomStep(run);
  const victim = pick(run, workers);
  run.processes.signal(victim, signal);
  run.fault(`${signal} ${victim.name} after step ${step}`);
  return victim;
}

export const MEMBERSHIP_SCENARIOS: Scenario[] = [
  {
    name: 'sigkill-worker',
    title: 'SIGKILL a worker at a random moment of a random step (mid all-reduce or compute)',
    shape: SMALL_RUN,
    expected: 'completes',
    needs: ['elastic'],
    ci: true,
    async drive(run) {
      await signalRandomWorker(run, 'SIGKILL');
    },
  },
  {
    name: 'sigstop-worker',
    title: 'SIGSTOP a worker past --step-timeout, then SIGCONT it (it must go, not linger)',
    shape: SMALL_RUN,
    expected: 'completes',
    needs: ['elastic'],
    ci: false,
    async drive(run) {
      const victim = await signalRandomWorker(run, 'SIGSTOP');
      await sleep(run.shape.stepTimeoutS * 1000 + run.draw(500, 2000));
      run.processes.signal(victim, 'SIGCONT');
    },
  },
  {
    name: 'sigterm-worker',
    title: 'SIGTERM a worker: it announces that it leaves, the others go on',
    shape: SMALL_RUN,
    expected: 'completes',
    needs: ['elastic'],
    ci: true,
    async drive(run) {
      await signalRandomWorker(run, 'SIGTERM');
    },
  },
  {
    name: 'coordinator-restart',
    title: 'SIGKILL the coordinator, restart it with the same command and --resume auto',
    shape: SMALL_RUN,
    expected: 'completes',
    needs: ['elastic', 'coordinatorRestart'],
    ci: true,
    async drive(run) {
      await run.startWorld(['--resume', 'auto']);
      const step = await reachRandomStep(run);
      const first = run.coordinator as ChaosProcess;
      run.processes.signal(first, 'SIGKILL');
      run.fault(`SIGKILL the coordinator after step ${step}`);
      await first.exit;
      await sleep(run.draw(200, 1500));
      await run.startCoordinator(['--resume', 'auto']);
    },
  },
  {
    name: 'below-minimum-and-back',
    title: 'SIGKILL 2 of 3 workers (minimum 2), then start 2 new ones within --rejoin-timeout',
    shape: SMALL_RUN,
    expected: 'completes',
    needs: ['elastic'],
    ci: false,
    async drive(run) {
      const workers = await run.startWorld([...SHRINKABLE, '--rejoin-timeout', '30']);
      const step = await reachRandomStep(run);
      const spared = run.draw(0, workers.length - 1);
      for (const [i, worker] of workers.entries())
        if (i !== spared) run.processes.signal(worker, 'SIGKILL');
      run.fault(`SIGKILL 2 workers after step ${step}`);
      await sleep(run.draw(300, 2000));
      run.startWorker();
      run.startWorker();
    },
  },
  {
    name: 'below-minimum-timeout',
    title: 'SIGKILL 2 of 3 workers (minimum 2) and let --rejoin-timeout pass: checkpoint and exit',
    shape: SMALL_RUN,
    expected: 'exits with a cause',
    needs: ['elastic'],
    ci: true,
    async drive(run) {
      const workers = await run.startWorld([...SHRINKABLE, '--rejoin-timeout', '2']);
      const step = await reachRandomStep(run);
      for (const worker of workers.slice(1)) run.processes.signal(worker, 'SIGKILL');
      run.fault(`SIGKILL 2 workers after step ${step}`);
    },
    async check(run) {
      const cause = run.coordinator && causeOf(run.coordinator);
      return cause && /\b(1|2|missing|minimum)\b/.test(cause)
        ? undefined
        : `the cause does not say how many workers were missing: ${cause}`;
    },
  },
  {
    name: 'crash-loop',
    title:
      'a worker that dies right after joining, restarted each time (--max-restarts 3, --rejoin-timeout 60)',
    shape: SMALL_RUN,
    expected: 'exits with a cause',
    needs: ['elastic'],
    ci: true,
    async drive(run) {
      // The rejoin timeout outlasts the 4 crashes (a replacement takes seconds to start): the
      // crash loop must end at --max-restarts.
      const workers = await run.startWorld(['--max-restarts', '3', '--rejoin-timeout', '60']);
      const step = await reachRandomStep(run);
      run.processes.signal(pick(run, workers), 'SIGKILL');
      run.fault(`SIGKILL a worker after step ${step}`);
      // The supervisor (a kubelet, a launcher) restarts it; it crashes as soon as it has joined.
      for (let restart = 0; restart < 10 && !run.coordinator?.exited(); restart++) {
        const replacement = run.startWorker();
        await sleep(run.draw(0, 300));
        // It crashes once admitted; one refused or never admitted is stopped all the same, and
        // so is one still joining when the coordinator ends the run.
        await Promise.race([run.rankOf(replacement), run.coordinator?.exit]);
        run.processes.signal(replacement, 'SIGKILL');
        await replacement.exit;
        run.fault(`restart ${restart + 1} crashed`);
      }
    },
    async check(run) {
      const coordinator = run.coordinator;
      const cause = coordinator && causeOf(coordinator);
      // A replacement that died right after its admission must give its place back.
      const leaked = coordinator?.records.find((r) => /world is full/.test(r.msg));
      if (leaked) return `a replacement was refused while a rank was missing: ${leaked.msg}`;
      return cause && /over --max-restarts 3$/.test(cause)
        ? undefined
        : `the cause does not name --max-restarts: ${cause}`;
    },
  },
  {
    name: 'worker-joins',
    title: 'a fourth worker joins a running world of 3 (--max-workers 4)',
    // Long enough that the joiner, which takes seconds to start on a loaded machine, finds the
    // run still going; it starts early in the run.
    shape: { ...SMALL_RUN, steps: 150 },
    expected: 'completes',
    needs: ['elastic'],
    ci: true,
    async drive(run) {
      await run.startWorld(['--max-workers', '4']);
      const step = run.draw(run.shape.checkpointEvery + 1, 2 * run.shape.checkpointEvery);
      if (!(await run.waitForStep(step)))
        throw new ScenarioError(`the run never completed step ${step}`, run.coordinator);
      joiners.set(run, run.startWorker());
      run.fault(`a worker starts after step ${step}`);
    },
    async check(run) {
      const joiner = joiners.get(run);
      const admitted = joiner?.records.some((r) => /^joined /.test(r.msg));
      const widened = (await run.metrics()).some((r) => r.type === 'step' && r.workers === 4);
      return admitted && widened
        ? undefined
        : `the fourth worker was ${admitted ? 'admitted but never trained' : 'never admitted'}`;
    },
  },
];
