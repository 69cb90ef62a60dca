import type { Command } from 'commander';

/**
 * `tfjs-ddp bench compute | allreduce | scaling | predict | chaos`. The subcommands, the benchmark
 * code and its charting libraries (vega, vega-lite, resvg) load only when `bench` runs: a
 * worker or coordinator never loads them. So `bench` takes its arguments as they are
 * (its own --help included) and hands them to the bench program (bench/bench-program.ts).
 */
export function registerBenchCommand(program: Command): void {
  program
    .command('bench')
    .description(
      'benchmarks: compute, all-reduce bandwidth, scaling efficiency, predictions, chaos',
    )
    .usage('compute|allreduce|scaling|predict|chaos [options]')
    .helpOption(false)
    .allowUnknownOption()
    .allowExcessArguments()
    .action(async (_flags: unknown, command: Command) => {
      const { benchProgram } = await import('../bench/bench-program.js');
      const bench = benchProgram(program);
      if (command.args.length === 0) bench.help({ error: true });
      await bench.parseAsync(command.args, { from: 'user' });
    });
}
