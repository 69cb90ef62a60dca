import { ExplainedError } from '../shared/errors.js';

/**
 * The run failed (a worker lost, stalled or diverged, replicas that disagree, training that
 * diverged): not the user's input at fault. The coordinator's loop, its worker group and their
 * control channels throw it; the CLI prints its one line and exits with code 3.
 */
export class RunFailure extends ExplainedError {
  constructor(message: string) {
    super(message, 3);
  }
}
