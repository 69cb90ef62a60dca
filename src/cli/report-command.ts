import { resolve } from 'node:path';
import { type Command, Option } from 'commander';
import { readRunRecord } from '../report/run-record.js';
import { writeReport } from '../report/write-report.js';
import { UserError } from '../shared/errors.js';
import { log } from '../shared/logging/logger.js';
import { MODEL_DIR } from '../shared/training/run-folder.js';
import { evaluateModel } from './eval-command.js';

interface ReportFlags {
  out?: string;
  evaluate: boolean;
  backend: string;
}

export function registerReportCommand(program: Command): void {
  program
    .command('report')
    .description(
      'write report.html (and its charts as SVG and PNG) from a run folder: curves, throughput, ' +
        'step split, membership events, per-class accuracy and confusion matrix, configuration',
    )
    .argument('<run-dir>', 'the run folder (config.json, metrics.jsonl, model/)')
    .option('--out <dir>', 'where to write the report (default: the run folder)')
    .option('--no-evaluate', 'skip evaluating the exported model (per-class accuracy, confusion)')
    .addOption(
      new Option(
        '--backend <name>',
        'compute backend of the evaluation: auto, tensorflow, wasm, cpu',
      )
        .default('auto')
        .env('TFJS_DDP_BACKEND'),
    )
    .action(async (runDir: string, flags: ReportFlags) => {
      const run = await readRunRecord(resolve(runDir));
      let evaluation: Awaited<ReturnType<typeof evaluateModel>> | undefined;
      if (flags.evaluate && run.hasModel) {
        try {
          evaluation = await evaluateModel({
            modelDir: resolve(runDir, MODEL_DIR),
            batchSize: '256',
            backend: flags.backend,
          });
        } catch (error) {
          if (!(error instanceof UserError)) throw error;
          log().warn(`no per-class accuracy in the report: ${error.message}`);
        }
      }
      const written = await writeReport(run, resolve(flags.out ?? runDir), evaluation);
      process.stdout.write(`report: ${written.html}\n`);
    });
}
