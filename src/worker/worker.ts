import { hostname } from 'node:os';
import type { JoinResponse } from '../gen/tfjs_ddp/v1/coordinator.js';
import { type BackendRequest, initBackend } from '../shared/backend/select-backend.js';
import { localDataFingerprint } from '../shared/data/data-fingerprint.js';
import { decodeRunSettings } from '../shared/distributed/run-settings.js';
import type { Security } from '../shared/distributed/security.js';
import { bindToLog, log } from '../shared/logging/logger.js';
import { architectureFingerprint, buildModel, parseModelName } from '../shared/models/zoo.js';
import { PROTOCOL_VERSION } from '../shared/transport/grpc-settings.js';
import { CoordinatorError, CoordinatorLost } from './coordinator-errors.js';
import { CoordinatorLink } from './coordinator-link.js';
import { TransportThread } from './transport-thread/transport-thread.js';
import type { WorkerReplica } from './worker-replica.js';
import { WorkerSession } from './worker-session.js';

export interface WorkerOptions {
  /** host:port of the coordinator. */
  coordinator: string;
  bindHost: string;
  /** 0: any free port (the real one is advertised). */
  peerPort: number;
  advertiseHost: string;
  /** The CIFAR-10 folder, when the run reads local data. */
  dataDir?: string;
  backend: BackendRequest;
  gpu: boolean;
  /** The model this worker expects; absent: the coordinator's. */
  model?: string;
  /** The rank to ask for; absent: the lowest free one. */
  rank?: number;
  joinTimeoutMs: number;
  /** How long a worker that lost its coordinator keeps its state and asks to rejoin. */
  coordinatorGraceMs: number;
  security: Security;
  /**
   * Once aborted (SIGTERM), the worker stops: at once while it connects and joins; later it
   * reports the reason to the coordinator as its failure.
   */
  signal?: AbortSignal;
}

/**
 * One worker process: initialises the backend (saying which device it computes on; with
 * `gpu`, failing rather than running on a CPU), starts its transport thread (peer server and collectives), joins the coordinator
 * (stating the protocol version, model and architecture fingerprint), then executes the
 * coordinator's commands (WorkerSession). Resolves when the run completed; rejects when the
 * coordinator stopped the run with an error or this worker failed (after telling it why).
 *
 * A coordinator that goes away without a Stop (CoordinatorLost) leaves the replica at its
 * last committed step: the worker joins again (as the same rank, with a new credential),
 * stating the steps and fingerprint it holds, for `coordinatorGraceMs`; a restarted
 * coordinator goes on from that state or loads its checkpoint into it. After the grace the
 * worker fails, saying how long the coordinator was gone.
 */
export async function runWorker(opts: WorkerOptions): Promise<void> {
  // Hashing the data files (about 150 MB) overlaps the backend's start; awaited at the join.
  const data = localDataFingerprint(opts.dataDir);
  data.catch(() => undefined);
  const backend = await initBackend(opts.backend, { gpu: opts.gpu });
  log().info(
    { device: backend.device },
    `this worker computes on ${backend.device} (${backend.name} backend)`,
  );
  let architecture = '';
  if (opts.model !== undefined) {
    const model = buildModel(parseModelName(opts.model), { seed: 0 });
    architecture = architectureFingerprint(model);
    model.dispose();
  }
  // The peer server and the collectives run in a thread of their own, so that gradients move
  // while this thread computes; only the current generation's ring neighbours get in.
  const transport = await TransportThread.start({
    bindHost: opts.bindHost,
    peerPort: opts.peerPort,
    joinTimeoutMs: opts.joinTimeoutMs,
    tls: opts.security.pem,
  });
  const peerAddress = `${opts.advertiseHost}:${transport.port}`;
  let kept: WorkerReplica | undefined;
  let lostAt: number | undefined;
  let rank = opts.rank;
  try {
    for (;;) {
      const joined = await CoordinatorLink.join(
        opts.coordinator,
        {
          protocolVersion: PROTOCOL_VERSION,
          modelName: opts.model ?? '',
          architectureFingerprint: architecture,
          peerAddress,
          device: {
            backend: backend.name,
            device: backend.device,
            hostname: hostname(),
            pid: process.pid,
          },
          workerId: `${hostname()}:${process.pid}`,
          requestedRank: rank,
          data: await data,
          heldReducedStep: false,
          ...kept?.held(),
        },
        {
          credentials: opts.security.channel,
          token: opts.security.token,
          generationCredential: transport,
          ...(lostAt === undefined
            ? { joinTimeoutMs: opts.joinTimeoutMs }
            : {
                joinTimeoutMs: Math.max(1, lostAt + opts.coordinatorGraceMs - Date.now()),
                timeoutFlag: '--coordinator-grace',
              }),
          signal: opts.signal,
        },
      ).catch((error: unknown) => {
        kept?.dispose();
        if (lostAt === undefined || !(error instanceof CoordinatorError)) throw error;
        const goneS = Math.round((Date.now() - lostAt) / 1000);
        throw new CoordinatorError(
          `the coordinator at ${opts.coordinator} was gone for ${goneS} s (--coordinator-grace ${opts.coordinatorGraceMs / 1000} s): ${error.message}`,
        );
      });
      const { link, response } = joined;
      rank = response.rank;
      const session = joinedSession(opts, link, response, transport, kept, peerAddress);
      try {
        await session.run(opts.signal);
        return;
      } catch (error) {
        if (!(error instanceof CoordinatorLost) || !session.kept) throw error;
        kept = session.kept;
        lostAt = Date.now();
        // The old ring is over: its streams are refused, the next coordinator's generations start anew.
        transport.adopt('');
        transport.forgetGenerations();
        log().warn(
          { committedSteps: kept.replica.committedSteps },
          `${error.message}; keeping this replica at step ${kept.replica.committedSteps}` +
            `${kept.replica.holdsReducedStep ? ` (with step ${kept.replica.committedSteps + 1} reduced, its commit not received)` : ''}` +
            ` and asking to rejoin for --coordinator-grace ${opts.coordinatorGraceMs / 1000} s`,
        );
      } finally {
        link.close();
      }
    }
  } finally {
    await transport.shutdown();
  }
}

/** Opens the Control stream of a joined worker and its session. */
function joinedSession(
  opts: WorkerOptions,
  link: CoordinatorLink,
  response: JoinResponse,
  transport: TransportThread,
  kept: WorkerReplica | undefined,
  peerAddress: string,
): WorkerSession {
  const settings = decodeRunSettings(response.config);
  bindToLog({ rank: response.rank });
  log().info(
    { rank: response.rank },
    `joined ${opts.coordinator} as rank ${response.rank} of ${response.worldSize}${kept ? ` holding step ${kept.replica.committedSteps}` : ''}; peers reach it at ${peerAddress}`,
  );
  link.openControl(response.rank, response.sessionId, settings.stepTimeoutMs);
  return new WorkerSession({
    link,
    settings,
    rank: response.rank,
    transport,
    coordinator: opts.coordinator,
    dataDir: opts.dataDir,
    kept,
  });
}
