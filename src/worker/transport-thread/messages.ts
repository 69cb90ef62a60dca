import type { Compression } from '../../shared/collectives/collective.js';
import type {
  CollectiveName,
  CollectiveSetup,
} from '../../shared/collectives/create-collective.js';
import type { TlsPem } from '../../shared/distributed/security.js';
import { ExplainedError, UserError } from '../../shared/errors.js';
import {
  DeadlineExceededError,
  PeerAbortedError,
  PeerLostError,
  ProtocolError,
  TransportError,
} from '../../shared/transport/errors.js';
import type { TransportStats } from '../../shared/transport/transport.js';

/** What the thread needs to start the peer server (workerData). */
export interface ThreadStart {
  bindHost: string;
  /** 0: any free port. */
  peerPort: number;
  /** How long the PeerService waits for the stream of a generation it was told about. */
  joinTimeoutMs: number;
  /** Security.pem: grpc-js credential objects cannot cross threads, their PEM text can. */
  tls: TlsPem | undefined;
}

/** A collective's setup without what lives in the thread already (the PeerService, credentials). */
export type ThreadCollectiveSetup = Omit<CollectiveSetup, 'peerService' | 'credentials'>;

/**
 * Float32 values in shared memory, with no copy: `length` floats at `byteOffset` of `buffer`.
 * The owner does not touch them until the operation has settled.
 */
export interface SharedValues {
  buffer: SharedArrayBuffer;
  byteOffset: number;
  length: number;
}

/** Main thread → transport thread. `id` pairs a request with its reply. */
export type Request =
  | { kind: 'adopt'; credential: string }
  | { kind: 'forgetGenerations' }
  | { kind: 'create'; id: number; name: CollectiveName; setup: ThreadCollectiveSetup }
  | {
      kind: 'allReduceSum';
      id: number;
      collective: number;
      values: SharedValues;
      compression: Compression | undefined;
      bucket: number | undefined;
    }
  | { kind: 'broadcast'; id: number; collective: number; values: SharedValues; root: number }
  | { kind: 'barrier'; id: number; collective: number }
  | { kind: 'close'; id: number; collective: number }
  | { kind: 'shutdown'; id: number };

/** A request as its sender writes it: the id is added on the way. */
export type SentRequest = Request extends infer R
  ? R extends { id: number }
    ? Omit<R, 'id'>
    : never
  : never;

/** What a request's caller hears besides its outcome. */
export interface Listeners {
  /** The operation learnt that every rank entered it, at `atMs` of this thread's performance.now(). */
  peersReady?(atMs: number): void;
  /** The collective's stats after the operation, whether it succeeded or failed. */
  stats?(stats: TransportStats): void;
}

/** Transport thread → main thread. */
export type Reply =
  | { kind: 'listening'; port: number }
  | { kind: 'startFailed'; error: SentError }
  /** `handle` names the collective a 'create' built. */
  | { kind: 'done'; id: number; stats?: TransportStats; handle?: number }
  | { kind: 'failed'; id: number; error: SentError; stats?: TransportStats }
  /**
   * Request `id` learnt that every rank entered it, at `atMs`: performance.timeOrigin +
   * performance.now() in the thread, the one clock both threads read alike.
   */
  | { kind: 'peersReady'; id: number; atMs: number };

/** An error as it crosses threads: structured clone keeps neither its class nor its fields. */
export interface SentError {
  name: string;
  message: string;
  /** TransportError's gRPC status, ExplainedError's exit code. */
  code?: number;
  exitCode?: number;
}

export function sendError(error: unknown): SentError {
  if (!(error instanceof Error)) return { name: 'Error', message: String(error) };
  return {
    name: error.name,
    message: error.message,
    code: error instanceof TransportError ? error.code : undefined,
    exitCode: error instanceof ExplainedError ? error.exitCode : undefined,
  };
}

const TRANSPORT_ERRORS: Record<string, new (message: string) => TransportError> = {
  DeadlineExceededError,
  PeerLostError,
  PeerAbortedError,
};

/**
 * The error `sent` was, rebuilt as the same class (the worker session tells a failed generation
 * from a bug by it), or a plain Error with its name and message.
 */
export function reviveError(sent: SentError): Error {
  const transport = TRANSPORT_ERRORS[sent.name];
  if (transport) return new transport(sent.message);
  if (sent.name === 'ProtocolError') return new ProtocolError(sent.message, sent.code);
  if (sent.name === 'TransportError') return new TransportError(sent.message, sent.code);
  if (sent.name === 'UserError') return new UserError(sent.message, sent.exitCode);
  if (sent.exitCode !== undefined) {
    const error = new ExplainedError(sent.message, sent.exitCode);
    error.name = sent.name;
    return error;
  }
  const error = new Error(sent.message);
  error.name = sent.name;
  return error;
}
