import { Command, type Option } from 'commander';
import { registerCommands } from '../../src/cli/commands.js';

/** A subcommand of the real CLI, as commander defines it (no process, no build needed). */
export interface CliCommand {
  path: string;
  options: readonly Option[];
}

/**
 * The CLI's own option definitions for `path` (e.g. ['data', 'download']), taken from the
 * same registerCommands that main.ts uses; undefined when no such command is registered.
 */
export function cliCommand(path: readonly string[]): CliCommand | undefined {
  let command: Command | undefined = program();
  for (const name of path) command = command?.commands.find((c) => c.name() === name);
  return command && { path: path.join(' '), options: command.options };
}

/** Like cliCommand, but a missing command is an error that says which one. */
export function requireCommand(path: readonly string[]): CliCommand {
  const command = cliCommand(path);
  if (!command) throw new Error(`the CLI has no \`tfjs-ddp ${path.join(' ')}\` command`);
  return command;
}

/** The option that reads environment variable `name`, if any. */
export function optionForEnv(command: CliCommand, name: string): Option | undefined {
  return command.options.find((o) => o.envVar === name);
}

/** The option `--flag`, if any. */
export function optionForFlag(command: CliCommand, flag: string): Option | undefined {
  return command.options.find((o) => o.long === flag);
}

let cached: Command | undefined;
function program(): Command {
  if (!cached) {
    cached = new Command('tfjs-ddp');
    registerCommands(cached);
  }
  return cached;
}
