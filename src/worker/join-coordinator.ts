import type { ChannelCredentials, ServiceError } from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import {
  CoordinatorServiceClient,
  type JoinRequest,
  type JoinResponse,
} from '../gen/tfjs_ddp/v1/coordinator.js';
import { credentialMetadata } from '../shared/distributed/call-authenticator.js';
import { Interrupted } from '../shared/errors.js';
import { log } from '../shared/logging/logger.js';
import { channelOptions, DEFAULT_GRPC_SETTINGS } from '../shared/transport/grpc-settings.js';
import { CoordinatorError, refusal } from './coordinator-errors.js';
import { unreachableCause } from './unreachable-cause.js';

export interface JoinOptions {
  credentials: ChannelCredentials;
  /** The run's join token, sent in Join's metadata; absent: none. */
  token: string | undefined;
  /**
   * Adopts the credential of every Membership that arrives (see CoordinatorLink): the worker's
   * peer server admits that generation's streams only (TransportThread.adopt).
   */
  generationCredential: { adopt(credential: string): void };
  joinTimeoutMs: number;
  /** The flag that set joinTimeoutMs, named when it runs out (default --join-timeout). */
  timeoutFlag?: string;
  signal?: AbortSignal;
}

/**
 * Connects (retrying while the coordinator starts, up to `joinTimeoutMs`, saying why every
 * 10 s) and joins, asking again while a running job has no place yet. Throws CoordinatorError
 * with the coordinator's status and reason when it refuses, or naming the cause when it cannot
 * be reached; Interrupted as soon as `signal` aborts. Resolves with the channel it joined on.
 */
export async function joinCoordinator(
  address: string,
  request: JoinRequest,
  opts: JoinOptions,
): Promise<{ client: CoordinatorServiceClient; response: JoinResponse }> {
  const client = new CoordinatorServiceClient(address, opts.credentials, {
    ...channelOptions(DEFAULT_GRPC_SETTINGS),
    // Dial every second while the coordinator is away, not with grpc-js's backoff to 2 min:
    // a restarted coordinator is found within a second.
    'grpc.initial_reconnect_backoff_ms': RECONNECT_MS,
    'grpc.max_reconnect_backoff_ms': RECONNECT_MS,
  });
  const deadline = Date.now() + opts.joinTimeoutMs;
  try {
    await reachCoordinator(client, address, opts, opts.signal);
    let toldFull = false;
    for (;;) {
      const answer = await untilAborted<JoinResponse | ServiceError>(opts.signal, (resolve) => {
        const call = client.join(
          request,
          credentialMetadata(opts.token),
          { deadline },
          (error, response) => resolve(error ?? response),
        );
        return () => call.cancel();
      });
      if (!(answer instanceof Error)) return { client, response: answer };
      // A running job that is full (or still holds the rank of the worker this one replaces)
      // frees a place once it notices a loss: keep asking until the join timeout.
      const retry =
        answer.code === status.RESOURCE_EXHAUSTED || answer.code === status.ALREADY_EXISTS;
      if (!retry || Date.now() + JOIN_RETRY_MS >= deadline) {
        throw refusal(answer, `the coordinator at ${address} refused to admit this worker`);
      }
      if (!toldFull) {
        log().info(
          `the coordinator at ${address} has no place yet (${answer.details}); asking again until the join timeout`,
        );
        toldFull = true;
      }
      await untilAborted<void>(opts.signal, (resolve) => {
        const timer = setTimeout(resolve, JOIN_RETRY_MS);
        return () => clearTimeout(timer);
      });
    }
  } catch (error) {
    client.close();
    throw error;
  }
}

/** How often a worker dials a coordinator it cannot reach. */
const RECONNECT_MS = 1000;

/** How often a worker asks again to join a job that has no place for it yet. */
const JOIN_RETRY_MS = 250;

/** How often a worker that cannot reach its coordinator yet says so, and why. */
const RETRY_REPORT_MS = 10_000;

/**
 * Waits until `client`'s channel is connected (grpc-js retries with its backoff meanwhile), at
 * most `timeoutMs`, logging the cause of the wait every RETRY_REPORT_MS.
 */
async function reachCoordinator(
  client: CoordinatorServiceClient,
  address: string,
  opts: JoinOptions,
  signal: AbortSignal | undefined,
): Promise<void> {
  const timeoutMs = opts.joinTimeoutMs;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const until = Math.min(deadline, Date.now() + RETRY_REPORT_MS);
    const ready = await untilAborted<boolean>(signal, (resolve) => {
      client.waitForReady(until, (error) => resolve(!error));
      return undefined;
    });
    if (ready) return;
    const cause = await unreachableCause(address);
    const left = Math.round((deadline - Date.now()) / 1000);
    if (left <= 0) {
      throw new CoordinatorError(
        `failed to reach the coordinator at ${address} within ${opts.timeoutFlag ?? '--join-timeout'} ${timeoutMs / 1000} s: ${cause}`,
      );
    }
    log().warn(
      { cause },
      `cannot reach the coordinator at ${address} yet: ${cause}; retrying for ${left} s more`,
    );
  }
}

/**
 * A promise settled by `start` (which may return how to cancel what it started), or rejected
 * with Interrupted (and the work cancelled) once `signal` aborts.
 */
function untilAborted<T>(
  signal: AbortSignal | undefined,
  start: (resolve: (value: T) => void, reject: (error: Error) => void) => (() => void) | undefined,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const interrupt = () => {
      cancel?.();
      const reason = String(signal?.reason);
      reject(new Interrupted(`stopped by ${reason} before joining the coordinator`, reason));
    };
    const settle =
      <V>(finish: (v: V) => void) =>
      (v: V) => {
        signal?.removeEventListener('abort', interrupt);
        finish(v);
      };
    const cancel = start(settle(resolve), settle(reject));
    if (signal?.aborted) interrupt();
    else signal?.addEventListener('abort', interrupt, { once: true });
  });
}
