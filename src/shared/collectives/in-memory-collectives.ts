import { PeerAbortedError } from '../transport/errors.js';
import { createInMemoryRing, InMemoryTransport } from '../transport/in-memory-transport.js';
import type { Collective, CollectiveTuning } from './collective.js';
import type { CollectiveName } from './create-collective.js';
import { RingCollective } from './ring-collective.js';
import { StarCollective } from './star-collective.js';
import { StarReducer } from './star-reducer.js';

export interface InMemoryWorld {
  /** One collective per rank, indexed by rank. */
  readonly collectives: Collective[];
  /** Their transports (close one to make its rank leave, as a dead process would). */
  readonly transports: InMemoryTransport[];
}

/**
 * All ranks of a collective in this process, linked by in-memory transports
 * (for star, through an in-process StarReducer). For unit tests of the
 * algorithms and of code that uses a Collective, and for the world of one of
 * `train` without --workers (whose operations complete at once). `reducerTimeoutMs` is the star
 * reduction point's deadline (default `tuning.timeoutMs`).
 */
export function createInMemoryCollectives(
  name: CollectiveName,
  worldSize: number,
  tuning: CollectiveTuning,
  opts: { generation?: number; reducerTimeoutMs?: number } = {},
): InMemoryWorld {
  const generation = opts.generation ?? 1;
  const transports =
    name === 'ring'
      ? createInMemoryRing(worldSize, generation)
      : createInMemoryStar(worldSize, generation, opts.reducerTimeoutMs ?? tuning.timeoutMs);
  const Kind = name === 'ring' ? RingCollective : StarCollective;
  const collectives = transports.map(
    (transport, rank) => new Kind({ rank, worldSize, generation }, transport, tuning),
  );
  return { collectives, transports };
}

function createInMemoryStar(
  worldSize: number,
  generation: number,
  timeoutMs: number,
): InMemoryTransport[] {
  const reducer = new StarReducer(generation, worldSize, timeoutMs);
  return Array.from({ length: worldSize }, (_, rank) => {
    const transport = new InMemoryTransport({
      rank,
      generation,
      sendsTo: 'the coordinator',
      receivesFrom: 'the coordinator',
      senderRank: undefined,
    });
    reducer.attach(rank, {
      send: (chunk) => {
        setImmediate(() => transport.arrive(chunk));
        return Promise.resolve();
      },
      abort: (error) => setImmediate(() => transport.peerAborted(error.message)),
    });
    transport.wire({
      deliver: (chunk) => reducer.contribute(rank, chunk),
      abort: (reason) =>
        reducer.fail(new PeerAbortedError(`rank ${rank} gave up: ${reason}`), rank),
      close: () => reducer.detach(rank),
    });
    return transport;
  });
}
