/**
 * An error whose message is written for the user: the CLI prints it in one line, without a
 * stack trace, and exits with `exitCode`. Subclass it (through UserError when the user can fix
 * the cause) for errors that callers need to tell apart.
 */
export class ExplainedError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/**
 * An error caused by the user's input or environment (a bad flag, a missing file,
 * a package that is not installed). Failures that are not the user's doing (a lost
 * worker, an interruption) are ExplainedErrors of their own kinds.
 */
export class UserError extends ExplainedError {
  constructor(message: string, exitCode = 2) {
    super(message, exitCode);
  }
}

/** The exit code of a process stopped by `signal` (128 + its number, as shells report it). */
export function signalExitCode(signal: string): number {
  return signal === 'SIGTERM' ? 143 : 130;
}

/**
 * The run stopped because the user asked it to (SIGINT, SIGTERM): not a failure, and not a
 * mistake either, so the CLI reports it once, at INFO. Exits with the signal's code.
 */
export class Interrupted extends ExplainedError {
  constructor(message: string, signal: string) {
    super(message, signalExitCode(signal));
  }
}
