import type { Collective } from '../shared/collectives/collective.js';
import type { RunSettings } from '../shared/distributed/run-settings.js';
import { StateAssembler, toStateParts } from '../shared/distributed/state-parts.js';
import { Interrupted, UserError } from '../shared/errors.js';
import { log } from '../shared/logging/logger.js';
import { type Replica, StepAbandoned } from '../shared/training/replica.js';
import { TransportError } from '../shared/transport/errors.js';
import { CoordinatorError, CoordinatorLost } from './coordinator-errors.js';
import type { Command, CoordinatorLink } from './coordinator-link.js';
import type { TransportThread } from './transport-thread/transport-thread.js';
import { WorkerReplica } from './worker-replica.js';

/** The coordinator ended the run with an error (it knows why: nothing to report back). */
class RunStopped extends CoordinatorError {}

/** How long a failed worker waits for the coordinator's Stop before it exits anyway. */
const STOP_GRACE_MS = 5000;

export interface WorkerSessionOptions {
  /** Joined, with its Control stream open. */
  link: CoordinatorLink;
  settings: RunSettings;
  rank: number;
  /** Where this worker's collectives run (its peer server too). */
  transport: TransportThread;
  /** host:port of the coordinator (the star all-reduce's reduction point). */
  coordinator: string;
  dataDir: string | undefined;
  /** The replica kept from a coordinator that went away; absent: one is built. */
  kept?: WorkerReplica;
}

/**
 * A joined worker's part of the run: builds the model the coordinator names (and refuses to
 * train one of another architecture), loads or fetches its samples, and executes the commands
 * of the Control stream in order, reporting each result; heartbeats say what it is doing. A
 * failure is reported to the coordinator (WorkerFailure) before run() rejects with it.
 *
 * Membership changes: a new Membership (a new generation) abandons the command in flight (its
 * collective is closed, CoordinatorLink drops the old generation's queued commands), the
 * replica keeps its state at the last committed step, and the worker goes on with the new
 * collective. When its collective fails on its own (a peer lost, a deadline), it says so
 * (GenerationFailed) and waits for the coordinator's decision. On SIGTERM (`signal`) it
 * announces that it leaves and exits cleanly once the coordinator's Stop arrives, which comes
 * at the next step boundary (at most the step timeout later, else it leaves anyway).
 */
export class WorkerSession {
  private readonly state: { step: number; activity: string };
  private collective: Collective | undefined;
  /** The parts of a LoadStateCommand in progress (this worker joined a running job). */
  private joiningState: StateAssembler | undefined;
  /**
   * The replica, once built. When run() rejects with CoordinatorLost it is left undisposed,
   * at a committed step, for the next coordinator.
   */
  kept: WorkerReplica | undefined;

  constructor(private readonly o: WorkerSessionOptions) {
    this.kept = o.kept;
    const step = o.kept?.replica.committedSteps ?? o.settings.startStep;
    this.state = { step, activity: 'loading the model and the data' };
  }

  /**
   * Resolves on a Stop without error; rejects on a Stop with one, on a failure, or when
   * `signal` aborts; with CoordinatorLost when the coordinator went away (see `kept`).
   */
  async run(signal?: AbortSignal): Promise<void> {
    const { link, settings } = this.o;
    const heartbeat = setInterval(() => {
      link.send({ $case: 'heartbeat', value: this.state }).catch(() => undefined);
    }, settings.heartbeatIntervalMs);
    let lost = false;
    try {
      this.kept ??= WorkerReplica.build(settings, link, this.o.dataDir);
      this.kept.link = link;
      this.kept.activity = (activity) => {
        this.state.activity = activity;
      };
      // A new generation abandons whatever the old one was doing.
      link.onMembership = () => void this.collective?.close();
      await this.execute(this.kept.replica, signal);
    } catch (error) {
      if (link.lost && this.kept) {
        lost = true;
        this.kept.settleAfterLoss();
        throw error instanceof CoordinatorLost
          ? error
          : new CoordinatorLost(
              `lost the coordinator at ${link.address}: ${(error as Error).message}`,
            );
      }
      await this.reportFailure(error as Error);
      throw error;
    } finally {
      clearInterval(heartbeat);
      await this.collective?.close();
      if (!lost) this.kept?.dispose();
    }
  }

  private async execute(replica: Replica, signal: AbortSignal | undefined): Promise<void> {
    const { link, settings } = this.o;
    // Leaving: announced at once, then a Stop is awaited for at most the step timeout.
    const leaveDeadline = new Promise<never>((_, reject) => {
      signal?.addEventListener(
        'abort',
        () => {
          const reason = String(signal.reason);
          log().info(`${reason}: leaving the run at the next step boundary`);
          link.send({ $case: 'leaving', value: { reason } }).catch(() => undefined);
          setTimeout(
            () =>
              reject(
                new Interrupted(
                  `stopped by ${reason}: the coordinator did not release this worker within the step timeout`,
                  reason,
                ),
              ),
            settings.stepTimeoutMs,
          ).unref();
        },
        { once: true },
      );
    });
    leaveDeadline.catch(() => undefined);
    for (;;) {
      const command = await Promise.race([link.next(), leaveDeadline]);
      if (command.$case === 'stop') {
        if (command.value.error === '') return;
        throw new RunStopped(`the coordinator stopped the run: ${command.value.error}`);
      }
      try {
        await Promise.race([this.handle(command, replica), leaveDeadline]);
      } catch (error) {
        await this.abandoned(error as Error, replica);
      }
    }
  }

  /**
   * A command failed. Rethrows unless its generation ended: a newer Membership is waiting (it
   * abandoned the command), the Control stream ended, or the collective failed, which is
   * reported to the coordinator; either way the next command decides.
   */
  private async abandoned(error: Error, replica: Replica): Promise<void> {
    const { link } = this.o;
    if (link.membershipWaiting) return;
    // The stream ended while the command waited for a commit: what is still queued decides, a
    // Stop first (the coordinator ended the run), else the end itself (it is gone).
    if (link.endedWith(error)) return;
    if (!(error instanceof StepAbandoned) && !(error instanceof TransportError)) throw error;
    log().warn(
      { generation: replica.generation },
      `generation ${replica.generation} failed: ${error.message}; waiting for the coordinator`,
    );
    // The stream may have ended meanwhile, with the coordinator's Stop still queued (it stopped
    // the run): the next command decides, not this report's failure.
    await link
      .send({
        $case: 'generationFailed',
        value: { generation: replica.generation, step: this.state.step, message: error.message },
      })
      .catch(() => undefined);
  }

  private async handle(command: Command, replica: Replica): Promise<void> {
    const { link, settings } = this.o;
    switch (command.$case) {
      case 'membership': {
        this.state.activity = 'connecting to the other workers';
        const m = command.value;
        replica.resolveHeld(m.committedSteps);
        await this.collective?.close();
        this.collective = undefined;
        const position = m.peers.findIndex((p) => p.rank === this.o.rank);
        if (position < 0) {
          throw new UserError(
            `the coordinator sent a membership of generation ${m.generation} without this worker's rank ${this.o.rank}`,
          );
        }
        this.collective = await this.o.transport.createCollective(settings.allReduce, {
          rank: position,
          worldSize: m.worldSize,
          generation: m.generation,
          timeoutMs: settings.stepTimeoutMs,
          chunkBytes: settings.chunkBytes,
          peerAddresses: m.peers.map((p) => p.address),
          reductionAddress: this.o.coordinator,
          // A neighbour in its step cannot answer pings: allow for the longest step.
          settings: {
            keepaliveTimeoutMs: settings.stepTimeoutMs,
            maxMessageBytes: settings.maxMessageBytes,
          },
          credential: m.credential,
        });
        replica.useCollective(this.collective);
        return;
      }
      case 'initializeWeights': {
        const { fromCheckpoint, rootRank, keepHeldState } = command.value;
        if (keepHeldState) {
          // A restarted coordinator goes on from the state this replica kept.
          const step = replica.committedSteps;
          const fingerprint = await replica.fingerprint(step);
          await link.send({
            $case: 'fingerprint',
            value: { step, fingerprint, generation: replica.generation },
          });
          return;
        }
        const fingerprint = await replica.initialize(fromCheckpoint, rootRank, () =>
          link.fetchCheckpoint(),
        );
        replica.committedSteps = settings.startStep;
        this.state.step = settings.startStep;
        await link.send({
          $case: 'fingerprint',
          value: { step: settings.startStep, fingerprint, generation: replica.generation },
        });
        return;
      }
      case 'loadState': {
        const { part, committedSteps } = command.value;
        this.state.activity = 'receiving the state of a current replica';
        this.joiningState ??= new StateAssembler('the coordinator', true);
        if (part) this.joiningState.add(part);
        if (!this.joiningState.complete) return;
        const fingerprint = replica.loadState(this.joiningState.result(), committedSteps);
        this.joiningState = undefined;
        this.state.step = committedSteps;
        await link.send({
          $case: 'fingerprint',
          value: { step: committedSteps, fingerprint, generation: replica.generation },
        });
        return;
      }
      case 'stepPlan': {
        this.state.step = command.value.step + 1;
        const metrics = await replica.step(command.value);
        await link.send({ $case: 'stepMetrics', value: metrics });
        return;
      }
      case 'evaluate': {
        const metrics = await replica.evaluate(command.value);
        await link.send({ $case: 'evaluationMetrics', value: metrics });
        return;
      }
      case 'fingerprint': {
        const { step } = command.value;
        const fingerprint = await replica.fingerprint(step);
        await link.send({
          $case: 'fingerprint',
          value: { step, fingerprint, generation: replica.generation },
        });
        return;
      }
      case 'checkpoint': {
        const state = await replica.checkpoint(command.value);
        if (!state) return;
        this.state.activity = `sending its state for the checkpoint after step ${command.value.step}`;
        const partBytes = Math.min(4 * 1024 * 1024, settings.maxMessageBytes / 4);
        for (const part of toStateParts(state, command.value.checkpointId, partBytes)) {
          await link.send({ $case: 'statePart', value: part });
        }
        return;
      }
    }
  }

  /** Tells the coordinator why this worker stops, then gives it a moment to answer with a Stop. */
  private async reportFailure(error: Error): Promise<void> {
    if (error instanceof RunStopped) return;
    const { link } = this.o;
    const grace = () => new Promise((resolve) => setTimeout(resolve, STOP_GRACE_MS).unref());
    try {
      await Promise.race([
        link.send({ $case: 'failure', value: { step: this.state.step, message: error.message } }),
        grace(),
      ]);
      const stop = (async () => {
        for (;;) if ((await link.next()).$case === 'stop') return;
      })();
      stop.catch(() => undefined);
      await Promise.race([stop, grace()]);
    } catch {
      // The coordinator is gone too: nothing more to tell it.
    }
  }
}
