// createCollective returns once the whole generation is connected, so a rank that
// starts late costs no operation deadline; a rank that never comes is named.
import { afterEach, describe, expect, it } from 'vitest';
import type { Collective } from '../../src/shared/collectives/collective.js';
import {
  type CollectiveName,
  createCollective,
  isCollectiveName,
} from '../../src/shared/collectives/create-collective.js';
import { StarReductionService } from '../../src/shared/collectives/star-reduction-service.js';
import { UserError } from '../../src/shared/errors.js';
import { TransportError } from '../../src/shared/transport/errors.js';
import { type RunningGrpcServer, startGrpcServer } from '../../src/shared/transport/grpc-server.js';
import { PeerService } from '../../src/shared/transport/peer-service.js';
import { timeRejection } from './worlds.js';

const TIMEOUT_MS = 300;
let servers: RunningGrpcServer[] = [];
let joined: Promise<Collective>[] = [];

afterEach(async () => {
  const settled = await Promise.allSettled(joined);
  for (const s of settled) if (s.status === 'fulfilled') await s.value.close();
  await Promise.all(servers.map((s) => s.shutdown(100)));
  [servers, joined] = [[], []];
});

/** Three ranks of `name`; `join(rank)` starts that rank's createCollective. */
async function world(name: CollectiveName, connectTimeoutMs: number) {
  const services = [0, 1, 2].map(() => new PeerService(connectTimeoutMs));
  // As the coordinator sets it up: the reduction point, which knows which rank is missing,
  // gives up well before the ranks do, so that its verdict (naming the rank) reaches them
  // first even on a loaded machine.
  const reduction = new StarReductionService({
    timeoutMs: TIMEOUT_MS,
    connectTimeoutMs: connectTimeoutMs / 2,
  });
  servers = await Promise.all(
    services.map((s, rank) =>
      startGrpcServer({ host: '127.0.0.1', services: rank === 0 ? [s, reduction] : [s] }),
    ),
  );
  reduction.startGeneration(1, 3);
  const peerAddresses = servers.map((s) => `127.0.0.1:${s.port}`);
  return (rank: number) => {
    const collective = createCollective(name, {
      rank,
      worldSize: 3,
      generation: 1,
      timeoutMs: TIMEOUT_MS,
      connectTimeoutMs,
      peerAddresses,
      peerService: services[rank],
      reductionAddress: peerAddresses[0],
    });
    joined.push(collective);
    return collective;
  };
}

describe.each(['ring', 'star'] as const)('createCollective(%s)', (name) => {
  it('waits for a rank that starts late, beyond the operation deadline', async () => {
    const join = await world(name, 5000);
    const early = [join(0), join(1)];
    await new Promise((r) => setTimeout(r, 3 * TIMEOUT_MS));
    const collectives = await Promise.all([...early, join(2)]);
    const buffers = collectives.map((c) => Float32Array.of(c.rank + 1));
    await Promise.all(collectives.map((c, r) => c.allReduceSum(buffers[r])));
    for (const b of buffers) expect(b[0]).toBe(6);
  });

  it('rejects within the connect deadline, naming a rank that never comes', async () => {
    const join = await world(name, 1000);
    const results = await Promise.all([join(0), join(1)].map(timeRejection));
    for (const [ms, error] of results) {
      expect(error).toBeInstanceOf(TransportError);
      expect(error.message).toMatch(/rank 2\b/);
      expect(ms).toBeLessThan(1000 + 1500);
    }
  });
});

it('knows the collective names and refuses a bad membership', async () => {
  expect(isCollectiveName('ring') && isCollectiveName('star') && !isCollectiveName('tree')).toBe(
    true,
  );
  await expect(
    createCollective('ring', { rank: 3, worldSize: 3, generation: 1, timeoutMs: 100 }),
  ).rejects.toThrow(UserError);
  await expect(
    createCollective('ring', { rank: 0, worldSize: 2, generation: 1, timeoutMs: 100 }),
  ).rejects.toThrow(/PeerService/);
});
