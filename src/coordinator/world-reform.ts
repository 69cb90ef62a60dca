import type { ReplicaState } from '../shared/distributed/state-parts.js';
import { DEFAULT_PART_BYTES, toStateParts } from '../shared/distributed/state-parts.js';
import { log } from '../shared/logging/logger.js';
import type { DataCursor } from '../shared/training/sampler.js';
import type { Command, ControlChannel } from './control-channel.js';
import { fingerprintMismatch } from './fingerprints.js';
import {
  BelowMinimum,
  type ElasticLimits,
  type MembershipChange,
  type MembershipRecord,
} from './membership-change.js';
import { RunFailure } from './run-failure.js';

/** What a reform needs of the WorkerGroup (an interface here, so that no import cycle forms). */
export interface ReformableGroup {
  members: ControlChannel[];
  readonly joiners: ControlChannel[];
  readonly limits: ElasticLimits;
  takeLosses(): { change: MembershipChange | undefined; lost: number[]; since: number };
  startGeneration(members: ControlChannel[]): { generation: number; credential: string };
  send(commandFor: (channel: ControlChannel) => Command, activity?: string): Promise<void>;
  all<T>(fn: (channel: ControlChannel) => Promise<T>): Promise<T[]>;
  state(step: number, checkpointId: number, average: boolean): Promise<Required<ReplicaState>>;
  fingerprints(step: number): Promise<string[]>;
  joinersAtLeast(count: number, deadline: number): Promise<void>;
  release(channel: ControlChannel, stopWith: string | undefined): void;
}

/** Ids of the state transfers to joiners: far above the training loop's checkpoint ids. */
let nextTransferId = 2 ** 40;

/**
 * Starts generation n+1 with `members` (in this collective order) and sends each its
 * Membership; `step` steps are committed. Resolves once every member has it (each connects
 * its new collective before it reads the next command).
 */
export async function formGeneration(
  group: Pick<ReformableGroup, 'startGeneration' | 'send'>,
  members: ControlChannel[],
  step: number,
  activity: string,
): Promise<number> {
  const { generation, credential } = group.startGeneration(members);
  const peers = members.map((c) => ({
    rank: c.rank,
    address: c.admission.peerAddress,
    device: c.admission.device,
  }));
  await group.send(
    () => ({
      $case: 'membership',
      value: { generation, worldSize: members.length, peers, credential, committedSteps: step },
    }),
    activity,
  );
  return generation;
}

/**
 * The membership change at a step boundary (`step` steps committed, the next batch at
 * `cursor`): the lost workers are already out; those that announced their leave are released
 * (a clean Stop); waiting joiners are taken in up to --max-workers. Below --min-workers the run
 * pauses for joins up to --rejoin-timeout, then the survivors form a generation (so that their
 * state can be checkpointed) and BelowMinimum is thrown. A joiner receives the state of the
 * member at position 0, relayed through the coordinator, and the data cursor; then every
 * replica's fingerprint must agree. Throws RunFailure past --max-restarts (takeLosses) or when
 * no replica is left to hold the state.
 */
export async function reform(
  group: ReformableGroup,
  step: number,
  cursor: DataCursor,
): Promise<MembershipRecord> {
  const { change, lost, since } = group.takeLosses();
  const started = since || Date.now();
  const { limits } = group;
  const left = group.members.filter((c) => c.leavingReason !== undefined);
  for (const c of left) group.release(c, '');
  // A joiner whose state transfer a failure interrupted is a joiner again.
  const stateless = group.members.filter((c) => !c.hasState);
  group.members = group.members.filter((c) => c.hasState);
  group.joiners.unshift(...stateless);
  const causes = [
    ...(change ? [change.why] : []),
    ...left.map((c) => `${c.label} left (${c.leavingReason})`),
  ];
  if (group.members.length === 0) {
    throw new RunFailure(
      `no worker holding the run's state is left (${causes.join('; ') || 'every worker left'}); resume from the last checkpoint`,
    );
  }
  const room = () => Math.max(0, limits.maxWorkers - group.members.length);
  if (group.members.length + Math.min(room(), group.joiners.length) < limits.minWorkers) {
    const needed = limits.minWorkers - group.members.length;
    const seconds = limits.rejoinTimeoutMs / 1000;
    log().warn(
      `${group.members.length} of --min-workers ${limits.minWorkers} workers left: pausing for up to ${seconds} s (--rejoin-timeout) for ${needed - group.joiners.length} to join`,
    );
    await group.joinersAtLeast(needed, Date.now() + limits.rejoinTimeoutMs);
    if (group.joiners.length < needed) {
      const missing = needed - group.joiners.length;
      await formGeneration(group, group.members, step, 'connecting to the remaining workers');
      throw new BelowMinimum(
        `${missing} worker${missing > 1 ? 's' : ''} missing: ${group.members.length + group.joiners.length} of --min-workers ${limits.minWorkers} after ${causes.join('; ')}, and ${missing > 1 ? 'they' : 'it'} did not rejoin within --rejoin-timeout ${seconds} s`,
        true,
      );
    }
  }
  const joined = group.joiners.splice(0, room());
  causes.push(...joined.map((c) => `${c.label} joined`));
  const world = [...group.members, ...joined];
  const generation = await formGeneration(group, world, step, 'connecting to the new generation');
  if (joined.length > 0) await transferState(group, joined, step, cursor);
  const fingerprints = await group.fingerprints(step);
  const mismatch = fingerprintMismatch(fingerprints);
  if (mismatch) {
    throw new RunFailure(
      `the replicas differ after membership change ${generation} at step ${step}: ${mismatch}`,
    );
  }
  return {
    generation,
    worldSize: world.length,
    step,
    cause: causes.join('; '),
    lost,
    left: left.map((c) => c.rank),
    joined: joined.map((c) => c.rank),
    ranks: world.map((c) => c.rank),
    seconds: (Date.now() - started) / 1000,
  };
}

/**
 * Gives `joined` the state of the member at position 0 (weights with BatchNorm statistics,
 * optimiser state) and the data cursor, relayed as LoadStateCommands; resolves once each holds
 * it (its fingerprint came back).
 */
async function transferState(
  group: ReformableGroup,
  joined: ControlChannel[],
  step: number,
  cursor: DataCursor,
): Promise<void> {
  const state = await group.state(step, nextTransferId++, false);
  const parts = toStateParts(state, 0, DEFAULT_PART_BYTES);
  const activity = 'receiving the state of a current replica';
  await group.all(async (c) => {
    if (!joined.includes(c)) return;
    for (const part of parts) {
      await c.send(
        {
          $case: 'loadState',
          value: {
            committedSteps: step,
            part,
            cursorEpoch: cursor.epoch,
            cursorOffset: cursor.offset,
          },
        },
        activity,
      );
    }
    await c.fingerprint(step);
    c.hasState = true;
  });
}
