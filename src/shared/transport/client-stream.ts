import { type Client, type ServiceError, status } from '@grpc/grpc-js';
import {
  DeadlineExceededError,
  PeerAbortedError,
  PeerLostError,
  ProtocolError,
  type TransportError,
} from './errors.js';

/** The readable half of a grpc-js client stream, as the helpers here use it. */
export interface ClientReadable<T> {
  once(event: 'data', listener: (message: T) => void): unknown;
  once(event: 'error', listener: (error: ServiceError) => void): unknown;
  once(event: 'end', listener: () => void): unknown;
  removeListener(event: string, listener: (...args: never[]) => void): unknown;
  pause(): unknown;
}

/**
 * Waits until the channel to `address` is connected (retrying with grpc-js'
 * backoff while the peer starts up), at most `timeoutMs`.
 */
export function waitForChannel(
  client: Client,
  peer: string,
  address: string,
  timeoutMs: number,
): Promise<void> {
  return new Promise((resolve, reject) => {
    client.waitForReady(Date.now() + timeoutMs, (error) => {
      if (!error) return resolve();
      reject(
        new DeadlineExceededError(
          `could not connect to ${peer} at ${address} within ${timeoutMs} ms: ${error.message}`,
        ),
      );
    });
  });
}

/**
 * The first message the server sends on `call` (its hello), then pauses the
 * stream until the caller attaches its listeners. Rejects with the server's
 * refusal (status code and details, as a ProtocolError or PeerLostError) or with
 * DeadlineExceededError after `timeoutMs`.
 */
export function firstMessage<T>(
  call: ClientReadable<T>,
  peer: string,
  timeoutMs: number,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const cleanup = () => {
      clearTimeout(timer);
      call.removeListener('data', onData);
      call.removeListener('error', onError);
      call.removeListener('end', onEnd);
    };
    const onData = (message: T) => {
      cleanup();
      call.pause();
      resolve(message);
    };
    const onError = (error: ServiceError) => {
      cleanup();
      reject(statusError(error, `${peer} refused the stream`));
    };
    const onEnd = () => {
      cleanup();
      reject(new PeerLostError(`${peer} closed the stream before answering`));
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new DeadlineExceededError(`${peer} did not answer within ${timeoutMs} ms`));
    }, timeoutMs);
    call.once('data', onData);
    call.once('error', onError);
    call.once('end', onEnd);
  });
}

/**
 * Records the first error of `call` from now on, so that an error while nobody
 * else listens (between the handshake and the transport taking the stream, or
 * after giving up on it) neither crashes the process nor goes unnoticed.
 */
export function recordErrors(call: {
  on(event: 'error', listener: (error: ServiceError) => void): unknown;
}): { error?: ServiceError } {
  const record: { error?: ServiceError } = {};
  call.on('error', (error) => {
    record.error ??= error;
  });
  return record;
}

const LOST = new Set([status.UNAVAILABLE, status.CANCELLED, status.UNKNOWN, status.INTERNAL]);

/** A grpc-js call error as a TransportError: "<context>: FAILED_PRECONDITION: <details>". */
export function statusError(error: ServiceError, context: string): TransportError {
  const message = `${context}: ${status[error.code] ?? error.code}: ${error.details || error.message}`;
  if (LOST.has(error.code)) return new PeerLostError(message);
  if (error.code === status.ABORTED) return new PeerAbortedError(message);
  if (error.code === status.DEADLINE_EXCEEDED) return new DeadlineExceededError(message);
  return new ProtocolError(message, error.code);
}
