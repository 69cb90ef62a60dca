import type { Command } from 'commander';
import { addAllreduceCommand } from '../bench/allreduce-cli.js';
import { runAllreduceRank } from '../bench/allreduce-rank.js';
import { runGrpcPeer } from '../bench/grpc-reference.js';
import { addPredictCommand } from '../bench/predict-cli.js';
import { addScalingCommand } from '../bench/scaling-cli.js';
import { runTcpPeer } from '../bench/tcp-reference.js';

/**
 * `tfjs-ddp bench allreduce | scaling | predict` (issue 4; the compute benchmark is
 * bench/compute.ts). The hidden `allreduce-rank`, `tcp-peer` and `grpc-peer` are the processes
 * `bench allreduce` starts.
 */
export function registerBenchCommand(program: Command): void {
  const bench = program
    .command('bench')
    .description('benchmarks: all-reduce bandwidth, scaling efficiency, predictions');
  addAllreduceCommand(bench);
  addScalingCommand(bench);
  addPredictCommand(bench);
  bench.command('allreduce-rank', { hidden: true }).action(runAllreduceRank);
  bench.command('tcp-peer', { hidden: true }).action(runTcpPeer);
  bench.command('grpc-peer', { hidden: true }).action(runGrpcPeer);
}
