// The implementations the collective contract suite runs against: ring and star,
// each over real gRPC on 127.0.0.1 (port 0) and over in-memory transports.
import { expect } from 'vitest';
import type { Collective, CollectiveTuning } from '../../src/shared/collectives/collective.js';
import {
  type CollectiveName,
  createCollective,
} from '../../src/shared/collectives/create-collective.js';
import { createInMemoryCollectives } from '../../src/shared/collectives/in-memory-collectives.js';
import { StarReductionService } from '../../src/shared/collectives/star-reduction-service.js';
import { type RunningGrpcServer, startGrpcServer } from '../../src/shared/transport/grpc-server.js';
import { PeerService } from '../../src/shared/transport/peer-service.js';
import { TransportThread } from '../../src/worker/transport-thread/transport-thread.js';

/** The transport thread's compiled entry (this suite runs the TypeScript sources). */
export const THREAD_ENTRY = new URL(
  '../../dist/src/worker/transport-thread/thread-main.js',
  import.meta.url,
);

export interface World {
  readonly collectives: Collective[];
  /** Makes `rank` vanish as a dead process would (its links drop without a goodbye). */
  kill(rank: number): Promise<void>;
  close(): Promise<void>;
}

export interface Implementation {
  readonly name: string;
  readonly algorithm: CollectiveName;
  readonly grpc: boolean;
  create(worldSize: number, tuning: CollectiveTuning): Promise<World>;
}

function inMemory(algorithm: CollectiveName): Implementation {
  return {
    name: `${algorithm} over memory`,
    algorithm,
    grpc: false,
    async create(worldSize, tuning) {
      const { collectives, transports } = createInMemoryCollectives(algorithm, worldSize, tuning, {
        reducerTimeoutMs: tuning.timeoutMs / 2,
      });
      return {
        collectives,
        kill: (rank) => transports[rank].close(),
        close: async () => {
          await Promise.all(collectives.map((c) => c.close()));
        },
      };
    },
  };
}

const grpcRing: Implementation = {
  name: 'ring over gRPC',
  algorithm: 'ring',
  grpc: true,
  async create(worldSize, tuning) {
    const services = Array.from({ length: worldSize }, () => new PeerService(tuning.timeoutMs));
    const servers = await Promise.all(
      services.map((s) => startGrpcServer({ host: '127.0.0.1', services: [s] })),
    );
    const peerAddresses = servers.map((s) => `127.0.0.1:${s.port}`);
    const collectives = await Promise.all(
      services.map((peerService, rank) =>
        createCollective('ring', {
          rank,
          worldSize,
          generation: 1,
          ...tuning,
          peerAddresses,
          peerService,
        }),
      ),
    );
    return {
      collectives,
      // Dropping the server's connections is what the neighbours see of a killed process.
      kill: async (rank) => servers[rank].server.forceShutdown(),
      close: () => closeAll(collectives, servers),
    };
  },
};

const grpcStar: Implementation = {
  name: 'star over gRPC',
  algorithm: 'star',
  grpc: true,
  async create(worldSize, tuning) {
    const reduction = new StarReductionService({ timeoutMs: tuning.timeoutMs / 2 });
    const server = await startGrpcServer({ host: '127.0.0.1', services: [reduction] });
    reduction.startGeneration(1, worldSize);
    const collectives = await Promise.all(
      Array.from({ length: worldSize }, (_, rank) =>
        createCollective('star', {
          rank,
          worldSize,
          generation: 1,
          ...tuning,
          reductionAddress: `127.0.0.1:${server.port}`,
        }),
      ),
    );
    return {
      collectives,
      kill: (rank) => collectives[rank].close(),
      close: () => closeAll(collectives, [server]),
    };
  },
};

/** The ring as a worker runs it: each rank's peer server and collective in its own thread. */
const threadedRing: Implementation = {
  name: 'ring in transport threads',
  algorithm: 'ring',
  grpc: true,
  async create(worldSize, tuning) {
    const threads = await Promise.all(
      Array.from({ length: worldSize }, () =>
        TransportThread.start(
          { bindHost: '127.0.0.1', peerPort: 0, joinTimeoutMs: tuning.timeoutMs, tls: undefined },
          THREAD_ENTRY,
        ),
      ),
    );
    const peerAddresses = threads.map((t) => `127.0.0.1:${t.port}`);
    // As a worker does: the generation's credential admits the neighbours' streams.
    const credential = 'generation-1-credential';
    for (const thread of threads) thread.adopt(credential);
    const collectives = await Promise.all(
      threads.map((thread, rank) =>
        thread.createCollective('ring', {
          rank,
          worldSize,
          generation: 1,
          ...tuning,
          peerAddresses,
          credential,
        }),
      ),
    );
    return {
      collectives,
      kill: (rank) => threads[rank].terminate(),
      close: async () => {
        await Promise.all(threads.map((t) => t.shutdown()));
      },
    };
  },
};

async function closeAll(collectives: Collective[], servers: RunningGrpcServer[]): Promise<void> {
  await Promise.all(collectives.map((c) => c.close()));
  await Promise.all(servers.map((s) => s.shutdown(200)));
}

export const IMPLEMENTATIONS: readonly Implementation[] = [
  inMemory('ring'),
  inMemory('star'),
  grpcRing,
  grpcStar,
  threadedRing,
];

/** Distinct small integers per rank and element, so float32 sums are exact. */
export function rankData(rank: number, length: number): Float32Array {
  const data = new Float32Array(length);
  for (let i = 0; i < length; i++) data[i] = ((i * 7 + rank * 13) % 201) - 100;
  return data;
}

/** The elementwise sum of rankData over `worldSize` ranks. */
export function expectedSum(worldSize: number, length: number): Float32Array {
  const sum = new Float32Array(length);
  for (let r = 0; r < worldSize; r++) {
    const d = rankData(r, length);
    for (let i = 0; i < length; i++) sum[i] += d[i];
  }
  return sum;
}

/** Asserts bit-identical float32 contents (fast on MB-sized arrays, unlike toEqual). */
export function expectSameValues(actual: Float32Array, expected: Float32Array): void {
  expect(actual.length).toBe(expected.length);
  const a = Buffer.from(actual.buffer, actual.byteOffset, actual.byteLength);
  const b = Buffer.from(expected.buffer, expected.byteOffset, expected.byteLength);
  if (a.equals(b)) return;
  const i = actual.findIndex((v, k) => !Object.is(v, expected[k]));
  expect(actual[i], `element ${i} of ${actual.length}`).toBe(expected[i]);
}

/** Milliseconds `promise` took to reject, and its error (throws if it resolved). */
export async function timeRejection(promise: Promise<unknown>): Promise<[number, Error]> {
  const start = performance.now();
  try {
    await promise;
  } catch (error) {
    return [performance.now() - start, error as Error];
  }
  throw new Error('expected a rejection');
}
