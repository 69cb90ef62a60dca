import type { Compression } from '../shared/collectives/collective.js';
import type { CollectiveName } from '../shared/collectives/create-collective.js';
import { type BandwidthRow, bandwidthRow, median } from './bandwidth.js';
import { BenchChild } from './bench-child.js';
import { type BenchHost, LOOPBACK } from './bench-host.js';
import type { ParentMessage, RankMessage, RankPlan } from './bench-messages.js';
import { EmulatedNetwork } from './emulated-network.js';
import { measureGloo } from './gloo-reference.js';
import { type GrpcRounds, measureGrpcRounds } from './grpc-reference.js';
import { type LinkRate, linkMBps } from './link-rate.js';
import type { ReductionPointCommand, ReductionPointMessage } from './reduction-point.js';
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
  /** Every process on its own host of an EmulatedNetwork with links of this rate (default: loopback). */
  link?: LinkRate;
  /** PyTorch's gloo all-reduces the same sizes right after ours (checked with checkGlooPython). */
  gloo?: { python: string; torch: string };
}

/** The emulated links a report was measured on. */
export interface LinkReport {
  rate: string;
  bitsPerSec: number;
  /** What the link carries at most, in MB/s: the ceiling of the TCP reference. */
  MBps: number;
}

export interface AllreduceReport {
  workers: number;
  algo: CollectiveName;
  compression: Compression;
  chunkBytes: number;
  nodeFlags: readonly string[];
  /** Absent on loopback. */
  link?: LinkReport;
  /** Median of the raw TCP stream rounds, measured before and after the all-reduces. */
  tcpReferenceMBps: number;
  /** The same with both directions at once (per direction): a 2-rank ring's traffic. */
  tcpDuplexMBps: number;
  tcpRounds: TcpRounds;
  /** grpc-js alone (no encoding, no work on arrival), one stream and both ways: the ceiling. */
  grpcStreamMBps: number;
  grpcDuplexMBps: number;
  grpcRounds: GrpcRounds;
  /** With --gloo: PyTorch's gloo on the same sizes, measured right after ours. */
  gloo?: { python: string; torch: string; results: (BandwidthRow & { iterationMs: number[] })[] };
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
 * hidden `bench allreduce-rank`) that all-reduce every size over real gRPC and verify every
 * result, with `gloo` PyTorch's gloo on the same sizes right after, then the reference rounds
 * again. In star mode a further process (`bench
 * reduction-point`) is the reduction point, as the coordinator is in training. Every
 * process runs on 127.0.0.1, or with `link` on its own host of an EmulatedNetwork (ranks
 * on hosts 0..N-1, the reduction point on host N, the reference peers on hosts 0 and 1),
 * removed when this returns. Any rank's failure (a wrong result included) kills the
 * others and rejects.
 */
export async function runAllreduceBench(opts: AllreduceBenchOptions): Promise<AllreduceReport> {
  const hostCount = opts.workers + (opts.algo === 'star' ? 1 : 0);
  const network = opts.link && new EmulatedNetwork(hostCount, opts.link);
  try {
    return await measure(opts, network?.hosts ?? Array(hostCount).fill(LOOPBACK));
  } finally {
    network?.destroy();
  }
}

async function measure(opts: AllreduceBenchOptions, hosts: BenchHost[]): Promise<AllreduceReport> {
  const pair: [BenchHost, BenchHost] = [hosts[0], hosts[1]];
  const tcp = () => measureTcpRounds(opts.tcpBytes, opts.tcpRounds, opts.nodeFlags, pair);
  const grpc = () => measureGrpcRounds(opts.tcpBytes, opts.tcpRounds, opts.nodeFlags, pair);
  const before = await tcp();
  const grpcBefore = await grpc();
  const iters = opts.sizes.map((b) => opts.iters ?? (b <= 1 << 20 ? 20 : b <= 16 << 20 ? 10 : 5));
  const warmup = opts.sizes.map((b) => (b <= 1 << 20 ? 5 : b <= 16 << 20 ? 2 : 1));
  const { timesMs, cpuMs } = await runRanks(opts, hosts, iters, warmup);
  const gloo =
    opts.gloo &&
    (await measureGloo(opts.gloo.python, opts.gloo.torch, opts.workers, opts.sizes, iters, warmup));
  const after = await tcp();
  const grpcAfter = await grpc();
  const grpcRounds = {
    streamMBps: [...grpcBefore.streamMBps, ...grpcAfter.streamMBps],
    duplexMBps: [...grpcBefore.duplexMBps, ...grpcAfter.duplexMBps],
  };
  const tcpRounds = {
    streamMBps: [...before.streamMBps, ...after.streamMBps],
    duplexMBps: [...before.duplexMBps, ...after.duplexMBps],
  };
  const tcpReferenceMBps = median(tcpRounds.streamMBps);
  // One size's figures from each rank's times, and each iteration's slowest rank.
  const row = (bytes: number, perRank: number[][]) => ({
    ...bandwidthRow(bytes, perRank, tcpReferenceMBps),
    iterationMs: perRank[0].map((_, k) => Math.max(...perRank.map((t) => t[k]))),
  });
  return {
    workers: opts.workers,
    algo: opts.algo,
    compression: opts.compression,
    chunkBytes: opts.chunkBytes,
    nodeFlags: opts.nodeFlags,
    link: opts.link && {
      rate: opts.link.text,
      bitsPerSec: opts.link.bitsPerSec,
      MBps: linkMBps(opts.link),
    },
    tcpReferenceMBps,
    tcpDuplexMBps: median(tcpRounds.duplexMBps),
    tcpRounds,
    grpcStreamMBps: median(grpcRounds.streamMBps),
    grpcDuplexMBps: median(grpcRounds.duplexMBps),
    grpcRounds,
    gloo: gloo && {
      python: gloo.python,
      torch: gloo.torch,
      results: opts.sizes.map((bytes, i) =>
        row(
          bytes,
          gloo.timesMs.map((sizes) => sizes[i]),
        ),
      ),
    },
    results: opts.sizes.map((bytes, i) => {
      return {
        ...row(
          bytes,
          timesMs.map((sizes) => sizes[i]),
        ),
        iterations: iters[i],
        warmup: warmup[i],
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
  hosts: BenchHost[],
  iters: number[],
  warmup: number[],
): Promise<{ timesMs: number[][][]; cpuMs: number[][][] }> {
  let reduction: BenchChild<ReductionPointMessage, ReductionPointCommand> | undefined;
  const ranks = Array.from(
    { length: opts.workers },
    (_, r) =>
      new BenchChild<RankMessage, ParentMessage>(
        `rank ${r}`,
        ['bench', 'allreduce-rank'],
        opts.nodeFlags,
        hosts[r],
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
      const host = hosts[opts.workers];
      reduction = new BenchChild(
        'the reduction point',
        ['bench', 'reduction-point'],
        opts.nodeFlags,
        host,
      );
      reduction.send({ type: 'serve', worldSize: opts.workers, timeoutMs: opts.timeoutMs });
      const m = await reduction.next(60_000, 'its gRPC port');
      if (m.type !== 'listening') throw new Error(`the reduction point: ${m.message}`);
      reductionAddress = `${host.address}:${m.port}`;
    }
    const plan: Omit<RankPlan, 'rank'> = {
      worldSize: opts.workers,
      algo: opts.algo,
      compression: opts.compression,
      chunkBytes: opts.chunkBytes,
      timeoutMs: opts.timeoutMs,
      peerAddresses: ports.map((p, r) => `${hosts[r].address}:${p}`),
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
    for (const child of [...ranks, reduction]) child?.kill();
    await Promise.all([...ranks, reduction].map((child) => child?.exited));
  }
}
