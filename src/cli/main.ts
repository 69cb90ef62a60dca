#!/usr/bin/env node
import { Command } from 'commander';
import { ExplainedError, Interrupted } from '../shared/errors.js';
import { routeGrpcLogs } from '../shared/logging/grpc-log.js';
import { log } from '../shared/logging/logger.js';
import { registerCommands } from './commands.js';
import { packageVersion } from './package-version.js';

const program = new Command('tfjs-ddp')
  .description('Distributed data-parallel training for TensorFlow.js over gRPC')
  .version(packageVersion(), '-V, --version', 'print the version of tfjs-ddp')
  // A usage error is one line and a pointer, not the whole help (subcommands inherit this).
  .showHelpAfterError('(add --help to see the options)')
  .exitOverride();

routeGrpcLogs();
registerCommands(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  process.exitCode = reportError(err);
}

/** Turns any error into one clear line (and a log record) and an exit code; no stack traces for user errors. */
function reportError(err: unknown): number {
  const e = err as { code?: string; exitCode?: number; message?: string };
  if (typeof e.code === 'string' && e.code.startsWith('commander.')) {
    // commander already printed its message (help, version or a usage error).
    return e.exitCode ?? 1;
  }
  if (err instanceof Interrupted) {
    // What the user asked for, not a failure.
    log().info(err.message);
    return err.exitCode;
  }
  if (err instanceof ExplainedError) {
    log().error(err.message);
    return err.exitCode;
  }
  log().error({ err }, e.message ?? String(err));
  return 1;
}
