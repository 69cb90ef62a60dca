import type { Collective } from '../shared/collectives/collective.js';
import { createCollective } from '../shared/collectives/create-collective.js';
import { startGrpcServer } from '../shared/transport/grpc-server.js';
import { PeerService } from '../shared/transport/peer-service.js';
import { benchAddress } from './bench-host.js';
import type { ParentMessage, RankMessage, RankPlan } from './bench-messages.js';
import { checkReduction, fillPattern } from './reduce-pattern.js';

/**
 * One rank of `bench allreduce`, in a process the parent started (the hidden
 * `bench allreduce-rank` command): starts its gRPC server on its host's address, waits for the plan on
 * the IPC channel, joins the collective, and for every size runs the warm-up and
 * timed all-reduces. Before each one every rank fills its buffer with its own
 * pattern and meets the others at a barrier, so that a time measures the
 * all-reduce, not a slow start; after each one every element is checked. A wrong
 * result (or any error) is reported as 'failed' and ends the process with code 1.
 * The process also ends when the parent goes away.
 */
export async function runAllreduceRank(): Promise<void> {
  const send = (m: RankMessage) =>
    new Promise<void>((resolve) => process.send?.(m, undefined, undefined, () => resolve()));
  if (!process.send)
    throw new Error('bench allreduce-rank runs only as a child of bench allreduce');
  const orphaned = () => process.exit(1);
  process.on('disconnect', orphaned);
  const planned = new Promise<RankPlan>((resolve) =>
    process.once('message', (m: ParentMessage) => resolve(m.plan)),
  );
  const peerService = new PeerService();
  const server = await startGrpcServer({ host: benchAddress(), services: [peerService] });
  let collective: Collective | undefined;
  try {
    await send({ type: 'listening', port: server.port });
    const plan = await planned;
    collective = await createCollective(plan.algo, {
      rank: plan.rank,
      worldSize: plan.worldSize,
      generation: 1,
      timeoutMs: plan.timeoutMs,
      chunkBytes: plan.chunkBytes,
      peerAddresses: plan.peerAddresses,
      peerService,
      reductionAddress: plan.reductionAddress,
    });
    const buffer = new Float32Array(Math.max(...plan.sizes) / 4);
    let round = 0;
    for (const [i, bytes] of plan.sizes.entries()) {
      const data = buffer.subarray(0, bytes / 4);
      const timesMs: number[] = [];
      const cpuMs: number[] = [];
      for (let it = 0; it < plan.warmup[i] + plan.iters[i]; it++, round++) {
        fillPattern(data, plan.rank, round);
        await collective.barrier();
        const cpu = process.cpuUsage();
        const start = performance.now();
        await collective.allReduceSum(data, { compression: plan.compression });
        const ms = performance.now() - start;
        const { user, system } = process.cpuUsage(cpu);
        const wrong = checkReduction(data, plan.worldSize, round, plan.compression);
        if (wrong) {
          throw new Error(
            `rank ${plan.rank}: the all-reduce of ${bytes} bytes returned a wrong result: ` +
              `${wrong.wrongCount} of ${data.length} elements differ, the first at index ` +
              `${wrong.index} (${wrong.actual} instead of ${wrong.expected})`,
          );
        }
        if (it >= plan.warmup[i]) {
          timesMs.push(ms);
          cpuMs.push((user + system) / 1000);
        }
      }
      await send({ type: 'size', bytes, timesMs, cpuMs });
    }
    await collective.barrier();
    await send({ type: 'done' });
  } catch (error) {
    await send({ type: 'failed', message: (error as Error).message });
    process.exitCode = 1;
  } finally {
    await collective?.close();
    await server.shutdown(100);
    process.off('disconnect', orphaned);
    process.disconnect();
  }
}
