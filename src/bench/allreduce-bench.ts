import type { Compression } from '../shared/collectives/collective.js';
import type { CollectiveName } from '../shared/collectives/create-collective.js';
import { StarReductionService } from '../shared/collectives/star-reduction-service.js';
import { type RunningGrpcServer, startGrpcServer } from '../shared/transport/grpc-server.js';
import { type BandwidthRow, bandwidthRow, median } from './bandwidth.js';
import { BenchChild } from './bench-child.js';
import type { ParentMessage, RankMessage, RankPlan } from './bench-messages.js';
import { type GrpcRounds, measureGrpcRounds } from './grpc-reference.js';
import { measureTcpRounds, type TcpRounds } from './tcp-reference.js';

export interface AllreduceBenchOptions {
  workers: number;
  /** Buffer sizes in bytes (float32 elements), ascending. */
  sizes: number[];
  algo: CollectiveName;
  compression: Compression;
  /** Timed iterations of every size; default by size (20 up to 1 MiB, 10 up to 16 MiB, then 5). */
  iters?: number;
  chunkBytes: number;
  /** Deadline of every wait inside the collective. */
  timeoutMs: number;
  /** Bytes per raw TCP round, and rounds before and after the all-reduces. */
  tcpBytes: number;
  tcpRounds: number;
  /** Flags for `node` in every process this starts (GRADIENT_PROCESS_NODE_FLAGS as training uses them). */
  nodeFlags: readonly string[];
}

export interface AllreduceReport {
  workers: number;
  algo: CollectiveName;
  compression: Compression;
  chunkBytes: number;
  nodeFlags: readonly string[];
  /** Median of the raw TCP stream rounds, measured before and after the all-reduces. */
  tcpReferenceMBps: number;
  /** The same with both directions at once (per direction): a 2-rank ring's traffic. */
  tcpDuplexMBps: number;
  tcpRounds: TcpRounds;
  /** grpc-js alone (no encoding, no work on arrival), one stream and both ways: the ceiling. */
  grpcStreamMBps: number;
  grpcDuplexMBps: number;
  grpcRounds: GrpcRounds;
  results: (BandwidthRow & {
    iterations: number;
    warmup: number;
    /** Each timed iteration's slowest rank, in ms. */
    iterationMs: number[];
    /** Median over iterations of the ranks' mean CPU time (all threads) per all-reduce. */
    cpuMs: number;
  })[];
}

/**
 * `bench allreduce`: raw TCP and bare grpc-js rounds, then `workers` rank processes (the CLI's
 * hidden `bench allreduce-rank`) that all-reduce every size over real gRPC on
 * 127.0.0.1 and verify every result, then the reference rounds again. In star mode this
 * process is the reduction point, as the coordinator is in training. Any rank's
 * failure (a wrong result included) kills the others and rejects.
 */
export async function runAllreduceBench(opts: AllreduceBenchOptions): Promise<AllreduceReport> {
  const before = await measureTcpRounds(opts.tcpBytes, opts.tcpRounds, opts.nodeFlags);
  const grpcBefore = await measureGrpcRounds(opts.tcpBytes, opts.tcpRounds, opts.nodeFlags);
  const iters = opts.sizes.map((b) => opts.iters ?? (b <= 1 << 20 ? 20 : b <= 16 << 20 ? 10 : 5));
  const warmup = opts.sizes.map((b) => (b <= 1 << 20 ? 5 : b <= 16 << 20 ? 2 : 1));
  const { timesMs, cpuMs } = await runRanks(opts, iters, warmup);
  const after = await measureTcpRounds(opts.tcpBytes, opts.tcpRounds, opts.nodeFlags);
  const grpcAfter = await measureGrpcRounds(opts.tcpBytes, opts.tcpRounds, opts.nodeFlags);
  const grpcRounds = {
    streamMBps: [...grpcBefore.streamMBps, ...grpcAfter.streamMBps],
    duplexMBps: [...grpcBefore.duplexMBps, ...grpcAfter.duplexMBps],
  };
  const tcpRounds = {
    streamMBps: [...before.streamMBps, ...after.streamMBps],
    duplexMBps: [...before.duplexMBps, ...after.duplexMBps],
  };
  const tcpReferenceMBps = median(tcpRounds.streamMBps);
  return {
    workers: opts.workers,
    algo: opts.algo,
    compression: opts.compression,
    chunkBytes: opts.chunkBytes,
    nodeFlags: opts.nodeFlags,
    tcpReferenceMBps,
    tcpDuplexMBps: median(tcpRounds.duplexMBps),
    tcpRounds,
    grpcStreamMBps: median(grpcRounds.streamMBps),
    grpcDuplexMBps: median(grpcRounds.duplexMBps),
    grpcRounds,
    results: opts.sizes.map((bytes, i) => {
      const perRank = timesMs.map((sizes) => sizes[i]);
      return {
        ...bandwidthRow(bytes, perRank, tcpReferenceMBps),
        iterations: iters[i],
        warmup: warmup[i],
        iterationMs: perRank[0].map((_, k) => Math.max(...perRank.map((t) => t[k]))),
        cpuMs: median(
          cpuMs[0][i].map((_, k) => cpuMs.reduce((s, sizes) => s + sizes[i][k], 0) / opts.workers),
        ),
      };
    }),
  };
}

/** timesMs[rank][size][iteration] and the same for CPU time, from the rank processes. */
async function runRanks(
  opts: AllreduceBenchOptions,
  iters: number[],
  warmup: number[],
): Promise<{ timesMs: number[][][]; cpuMs: number[][][] }> {
  let reduction: RunningGrpcServer | undefined;
  const ranks = Array.from(
    { length: opts.workers },
    (_, r) =>
      new BenchChild<RankMessage, ParentMessage>(
        `rank ${r}`,
        ['bench', 'allreduce-rank'],
        opts.nodeFlags,
      ),
  );
  const next = async (rank: number, timeoutMs: number, what: string) => {
    const m = await ranks[rank].next(timeoutMs, what);
    if (m.type === 'failed') throw new Error(m.message);
    return m;
  };
  try {
    const ports = await Promise.all(
      ranks.map(async (_, r) => {
        const m = await next(r, 60_000, 'its gRPC port');
        if (m.type !== 'listening') throw new Error(`rank ${r} sent ${m.type} before its port`);
        return m.port;
      }),
    );
    let reductionAddress: string | undefined;
    if (opts.algo === 'star') {
      const service = new StarReductionService({ timeoutMs: opts.timeoutMs / 2 });
      reduction = await startGrpcServer({ host: '127.0.0.1', services: [service] });
      service.startGeneration(1, opts.workers);
      reductionAddress = `127.0.0.1:${reduction.port}`;
    }
    const plan: Omit<RankPlan, 'rank'> = {
      worldSize: opts.workers,
      algo: opts.algo,
      compression: opts.compression,
      chunkBytes: opts.chunkBytes,
      timeoutMs: opts.timeoutMs,
      peerAddresses: ports.map((p) => `127.0.0.1:${p}`),
      reductionAddress,
      sizes: opts.sizes,
      iters,
      warmup,
    };
    for (const [rank, child] of ranks.entries())
      child.send({ type: 'run', plan: { ...plan, rank } });
    const times = ranks.map((): number[][] => []);
    const cpu = ranks.map((): number[][] => []);
    // All ranks report each size; a failure anywhere stops the wait at once.
    const collect = (rank: number) => async () => {
      for (const [i, bytes] of opts.sizes.entries()) {
        const deadline = (warmup[i] + iters[i] + 1) * opts.timeoutMs;
        const m = await next(rank, deadline, `its times for ${bytes} bytes`);
        if (m.type !== 'size' || m.bytes !== bytes) throw new Error(`rank ${rank} sent ${m.type}`);
        times[rank].push(m.timesMs);
        cpu[rank].push(m.cpuMs);
      }
      const done = await next(rank, opts.timeoutMs, 'the end');
      if (done.type !== 'done') throw new Error(`rank ${rank} sent ${done.type} at the end`);
    };
    await Promise.all(ranks.map((_, r) => collect(r)()));
    await Promise.all(ranks.map((child) => child.exited));
    return { timesMs: times, cpuMs: cpu };
  } finally {
    for (const child of ranks) child.kill();
    await reduction?.shutdown(100);
  }
}
