import type { Command } from 'commander';

/** Every subcommand registers itself here; each lives in its own module under src/cli/. */
export function registerCommands(program: Command): void {
  void program;
}
