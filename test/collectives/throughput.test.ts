// A sanity print, not an assertion: all-reduce of 64 MB between two ranks in this
// process over real gRPC on loopback (both ranks share one thread here, so this is
// a floor; multi-process benchmarks come later).
import { it } from 'vitest';
import type { Collective } from '../../src/shared/collectives/collective.js';
import { createCollective } from '../../src/shared/collectives/create-collective.js';
import { StarReductionService } from '../../src/shared/collectives/star-reduction-service.js';
import { startGrpcServer } from '../../src/shared/transport/grpc-server.js';
import { PeerService } from '../../src/shared/transport/peer-service.js';

const BYTES = 64 * 1024 * 1024;
const REPEATS = 3;

async function measure(label: string, collectives: Collective[], compression: 'none' | 'bf16') {
  const buffers = collectives.map(() => new Float32Array(BYTES / 4).fill(1));
  await Promise.all(
    collectives.map((c, r) => c.allReduceSum(buffers[r].subarray(0, 1 << 20), { compression })),
  );
  const sentBefore = collectives[0].stats.bytesSent;
  const start = performance.now();
  for (let i = 0; i < REPEATS; i++) {
    await Promise.all(collectives.map((c, r) => c.allReduceSum(buffers[r], { compression })));
  }
  const seconds = (performance.now() - start) / 1000 / REPEATS;
  const sent = (collectives[0].stats.bytesSent - sentBefore) / REPEATS;
  console.log(
    `${label} ${compression}: 64 MB all-reduce, N=2, in one process: ${(seconds * 1000).toFixed(0)} ms, ` +
      `${(BYTES / seconds / 1e9).toFixed(2)} GB/s of gradient, ${(sent / seconds / 1e9).toFixed(2)} GB/s sent per rank`,
  );
}

it('prints the all-reduce throughput of 64 MB with two ranks', async () => {
  const services = [new PeerService(), new PeerService()];
  const reduction = new StarReductionService({ timeoutMs: 30_000 });
  const servers = await Promise.all(
    [[services[0], reduction], [services[1]]].map((s) =>
      startGrpcServer({ host: '127.0.0.1', services: s }),
    ),
  );
  reduction.startGeneration(1, 2);
  const peerAddresses = servers.map((s) => `127.0.0.1:${s.port}`);
  const setup = (rank: number) => ({ rank, worldSize: 2, generation: 1, timeoutMs: 30_000 });
  const ring = await Promise.all(
    services.map((peerService, rank) =>
      createCollective('ring', { ...setup(rank), peerAddresses, peerService }),
    ),
  );
  const star = await Promise.all(
    [0, 1].map((rank) =>
      createCollective('star', { ...setup(rank), reductionAddress: peerAddresses[0] }),
    ),
  );
  try {
    await measure('ring', ring, 'none');
    await measure('ring', ring, 'bf16');
    await measure('star', star, 'none');
  } finally {
    await Promise.all([...ring, ...star].map((c) => c.close()));
    await Promise.all(servers.map((s) => s.shutdown(100)));
  }
});
