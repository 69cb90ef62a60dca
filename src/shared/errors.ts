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
