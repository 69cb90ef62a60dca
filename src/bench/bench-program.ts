import { Command } from 'commander';
import { addAllreduceCommand } from './allreduce-cli.js';
import { runAllreduceRank } from './allreduce-rank.js';
import { addChaosCommand } from './chaos/chaos-cli.js';
import { addComputeCommand } from './compute-cli.js';
import { runComputeStep } from './compute-step.js';
import { runGrpcPeer } from './grpc-reference.js';
import { addPredictCommand } from './predict-cli.js';
import { runReductionPoint } from './reduction-point.js';
import { addScalingCommand } from './scaling-cli.js';
import { runTcpPeer } from './tcp-reference.js';

/**
 * The `tfjs-ddp bench` subcommands: compute, allreduce, scaling, predict, and the hidden
 * processes they start (`compute-step`, `allreduce-rank`, `reduction-point`, `tcp-peer`,
 * `grpc-peer`). Built only
 * when `bench` runs (cli/bench-command.ts), so that no other command loads the benchmarks or
 * their charting libraries. `parent` is the CLI's program, whose error and output settings
 * this program takes.
 */
export function benchProgram(parent: Command): Command {
  const bench = new Command('tfjs-ddp bench')
    .description(
      'benchmarks: compute, all-reduce bandwidth, scaling efficiency, predictions, chaos',
    )
    .copyInheritedSettings(parent);
  addComputeCommand(bench);
  addAllreduceCommand(bench);
  addScalingCommand(bench);
  addPredictCommand(bench);
  addChaosCommand(bench);
  bench
    .command('compute-step', { hidden: true })
    .argument('<args...>')
    .action((args: string[]) => runComputeStep(args));
  bench.command('allreduce-rank', { hidden: true }).action(runAllreduceRank);
  bench.command('reduction-point', { hidden: true }).action(runReductionPoint);
  bench.command('tcp-peer', { hidden: true }).action(runTcpPeer);
  bench.command('grpc-peer', { hidden: true }).action(runGrpcPeer);
  return bench;
}
