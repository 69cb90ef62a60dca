import { type ServiceError, status } from '@grpc/grpc-js';
import { UserError } from '../shared/errors.js';

/** A refusal or failure the coordinator answered with; exits like other transport faults. */
export class CoordinatorError extends UserError {
  constructor(message: string) {
    super(message, 3);
  }
}

/**
 * The coordinator went away without a Stop (its process died, its connection dropped): the
 * worker keeps its replica and asks a restarted coordinator to take it back (see runWorker).
 */
export class CoordinatorLost extends CoordinatorError {}

/** A refusal the coordinator answered a call with, said with its context. */
export function refusal(error: ServiceError, context: string): CoordinatorError {
  return new CoordinatorError(
    `${context}: ${status[error.code] ?? error.code}: ${error.details || error.message}`,
  );
}
