import { status } from '@grpc/grpc-js';
import { UserError } from '../errors.js';

/**
 * A failure of the link between two ranks. Messages name the peer, the operation
 * and what was expected, so that a line in the log says who stopped doing what.
 * `code` is the gRPC status a server answers with when it refuses a stream for
 * this reason. These are UserErrors: a dead or stalled peer is a fault of the
 * environment, reported in one line.
 */
export class TransportError extends UserError {
  constructor(
    message: string,
    readonly code: status = status.UNAVAILABLE,
  ) {
    super(message, 3);
  }
}

/** A wait (for a chunk, a connection, a full stream to drain) ran past its deadline. */
export class DeadlineExceededError extends TransportError {
  constructor(message: string) {
    super(message, status.DEADLINE_EXCEEDED);
  }
}

/** The peer's stream ended or failed (the process died, the connection dropped). */
export class PeerLostError extends TransportError {
  constructor(message: string) {
    super(message, status.UNAVAILABLE);
  }
}

/** The peer gave up on the generation and said why (its own error, relayed). */
export class PeerAbortedError extends TransportError {
  constructor(message: string) {
    super(message, status.ABORTED);
  }
}

/**
 * A message contradicts the protocol or what this rank expected (another
 * generation, an unknown rank, a chunk of another length or operation).
 */
export class ProtocolError extends TransportError {}
