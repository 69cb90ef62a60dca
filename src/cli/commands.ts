import type { Command } from 'commander';
import { registerDataCommand } from './data-command.js';
import { registerEvalCommand } from './eval-command.js';
import { registerModelsCommand } from './models-command.js';
import { registerTrainCommand } from './train-command.js';

/** Every subcommand registers itself here; each lives in its own module under src/cli/. */
export function registerCommands(program: Command): void {
  registerDataCommand(program);
  registerModelsCommand(program);
  registerTrainCommand(program);
  registerEvalCommand(program);
}
