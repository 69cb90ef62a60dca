import {
  type ChannelCredentials,
  type ChannelOptions,
  type Client,
  type ClientDuplexStream,
  credentials,
  type Metadata,
  type ServiceError,
  status,
} from '@grpc/grpc-js';
import { credentialMetadata } from '../distributed/call-authenticator.js';
import {
  DeadlineExceededError,
  PeerAbortedError,
  PeerLostError,
  ProtocolError,
  type TransportError,
} from './errors.js';
import { channelOptions, DEFAULT_GRPC_SETTINGS, type GrpcSettings } from './grpc-settings.js';

/** How to open a transport's long-lived stream: the server, the call, the handshake. */
export interface HelloStreamSpec<C extends Client, Req, Res> {
  /** The generated client class of the service. */
  client: new (
    address: string,
    credentials: ChannelCredentials,
    options: ChannelOptions,
  ) => C;
  /** host:port of the server. */
  address: string;
  /** Names the server in messages: "rank 2", "the coordinator". */
  peer: string;
  /** Deadline for connecting, and then for the server's answer. */
  timeoutMs: number;
  settings?: Partial<GrpcSettings>;
  /** Default: insecure (plain TCP). */
  credentials?: ChannelCredentials;
  /** The generation's credential, sent in the call's metadata (see CallAuthenticator). */
  credential?: string;
  /** Opens the call on the client, with `metadata` (it carries the credential). */
  open(client: C, metadata: Metadata): ClientDuplexStream<Req, Res>;
  /** This side's hello, the stream's first message. */
  hello: Req;
  /** Why the server's first message is not the hello expected (then the stream is given up), or undefined. */
  refusal(answer: Res): string | undefined;
}

/** An open stream whose server accepted the handshake. */
export interface HelloStream<C extends Client, Req, Res> {
  client: C;
  /** Paused after the server's hello, until the caller has attached its listeners. */
  call: ClientDuplexStream<Req, Res>;
  /** The first error of the call since it opened (see recordErrors). */
  early: { error?: ServiceError };
}

/** Pause between tries of a stream the server refused as UNAUTHENTICATED (see openHelloStream). */
const UNAUTHENTICATED_RETRY_MS = 100;

/**
 * The stream set-up shared by the ring and star transports: a client with the project's
 * channel options, the channel awaited (waitForChannel), the call opened, this side's hello
 * sent and the server's awaited (firstMessage) and checked. On any failure the call is
 * cancelled and the client closed before the promise rejects: with DeadlineExceededError,
 * the server's refusal, or a ProtocolError (FAILED_PRECONDITION) carrying `refusal`'s reason.
 * A call refused as UNAUTHENTICATED is tried again until `timeoutMs` has passed: a ring
 * neighbour adopts a new generation's credential when its Membership message arrives, which
 * may be a moment after this rank's (then the last refusal is the error).
 */
export async function openHelloStream<C extends Client, Req, Res>(
  spec: HelloStreamSpec<C, Req, Res>,
): Promise<HelloStream<C, Req, Res>> {
  const deadline = Date.now() + spec.timeoutMs;
  for (;;) {
    try {
      return await tryHelloStream(spec, deadline);
    } catch (error) {
      const unauthenticated =
        error instanceof ProtocolError && error.code === status.UNAUTHENTICATED;
      if (!unauthenticated || Date.now() + UNAUTHENTICATED_RETRY_MS >= deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, UNAUTHENTICATED_RETRY_MS));
    }
  }
}

async function tryHelloStream<C extends Client, Req, Res>(
  spec: HelloStreamSpec<C, Req, Res>,
  deadline: number,
): Promise<HelloStream<C, Req, Res>> {
  const settings = { ...DEFAULT_GRPC_SETTINGS, ...spec.settings };
  const client = new spec.client(
    spec.address,
    spec.credentials ?? credentials.createInsecure(),
    channelOptions(settings),
  );
  let call: ClientDuplexStream<Req, Res> | undefined;
  try {
    const timeoutMs = Math.max(1, deadline - Date.now());
    await waitForChannel(client, spec.peer, spec.address, timeoutMs);
    call = spec.open(client, credentialMetadata(spec.credential));
    const early = recordErrors(call);
    call.write(spec.hello);
    const answer = await firstMessage<Res>(call, `${spec.peer} at ${spec.address}`, timeoutMs);
    const refusal = spec.refusal(answer);
    if (refusal !== undefined) throw new ProtocolError(refusal, status.FAILED_PRECONDITION);
    return { client, call, early };
  } catch (error) {
    call?.cancel();
    client.close();
    throw error;
  }
}

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
