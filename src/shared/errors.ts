/**
 * An error caused by the user's input or environment (a bad flag, a missing file,
 * a package that is not installed). Its message is written for the user: the CLI
 * prints it in one line, without a stack trace, and exits with `exitCode`.
 * Subclass it for errors that callers need to tell apart.
 */
export class UserError extends Error {
  constructor(
    message: string,
    readonly exitCode = 2,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** The exit code of a process stopped by `signal` (128 + its number, as shells report it). */
export function signalExitCode(signal: string): number {
  return signal === 'SIGTERM' ? 143 : 130;
}

/**
 * The run stopped because the user asked it to (SIGINT, SIGTERM): not a failure, so the CLI
 * reports it once, at INFO, and exits with the signal's code.
 */
export class Interrupted extends UserError {
  constructor(message: string, signal: string) {
    super(message, signalExitCode(signal));
  }
}
