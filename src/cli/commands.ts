import type { Command } from 'commander';
import { registerBenchCommand } from './bench-command.js';
import { registerCoordinatorCommand } from './coordinator-command.js';
import { registerDataCommand } from './data-command.js';
import { registerEvalCommand } from './eval-command.js';
import { registerModelsCommand } from './models-command.js';
import { registerReportCommand } from './report-command.js';
import { registerTrainCommand } from './train-command.js';
import { registerWorkerCommand } from './worker-command.js';

/** Every subcommand registers itself here; each lives in its own module under src/cli/. */
export function registerCommands(program: Command): void {
  registerDataCommand(program);
  registerModelsCommand(program);
  registerTrainCommand(program);
  registerEvalCommand(program);
  registerCoordinatorCommand(program);
  registerWorkerCommand(program);
  registerBenchCommand(program);
  registerReportCommand(program);
}
