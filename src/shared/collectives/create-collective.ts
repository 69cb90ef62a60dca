import type { ChannelCredentials } from '@grpc/grpc-js';
import { UserError } from '../errors.js';
import { GrpcRingTransport } from '../transport/grpc-ring-transport.js';
import type { GrpcSettings } from '../transport/grpc-settings.js';
import { GrpcStarTransport } from '../transport/grpc-star-transport.js';
import { createInMemoryRing } from '../transport/in-memory-transport.js';
import type { PeerService } from '../transport/peer-service.js';
import { type Collective, DEFAULT_CHUNK_BYTES } from './collective.js';
import { RingCollective } from './ring-collective.js';
import type { SequencedCollective } from './sequenced-collective.js';
import { StarCollective } from './star-collective.js';
import { loadWasmCodec } from './wasm-codec.js';

export const COLLECTIVE_NAMES = ['ring', 'star'] as const;
export type CollectiveName = (typeof COLLECTIVE_NAMES)[number];

export function isCollectiveName(s: string): s is CollectiveName {
  return (COLLECTIVE_NAMES as readonly string[]).includes(s);
}

export interface CollectiveSetup {
  rank: number;
  worldSize: number;
  generation: number;
  /** Deadline of every wait in an operation, in milliseconds. */
  timeoutMs: number;
  /** Deadline for reaching the peers (they may still be starting); default timeoutMs. */
  connectTimeoutMs?: number;
  /** Largest chunk payload; default 1 MiB. */
  chunkBytes?: number;
  /** ring: host:port of every rank's PeerService, indexed by rank. */
  peerAddresses?: readonly string[];
  /** ring: this process's PeerService, registered on its running server. */
  peerService?: PeerService;
  /** star: host:port of the coordinator's ReductionService. */
  reductionAddress?: string;
  settings?: Partial<GrpcSettings>;
  credentials?: ChannelCredentials;
  /** The generation's credential (Membership.credential), sent on every stream. */
  credential?: string;
}

/**
 * Builds the collective `name` for one generation and connects it over gRPC:
 * 'ring' to both ring neighbours, 'star' to the coordinator's reduction point.
 * It resolves once every rank of the generation is connected (a barrier, the
 * operation #0 of the generation). A world of one rank connects nothing. Every
 * rank must call this at about the same time; it rejects when the peers are not
 * all there within `setup.connectTimeoutMs`. The caller closes the collective
 * when the generation ends.
 */
export async function createCollective(
  name: CollectiveName,
  setup: CollectiveSetup,
): Promise<Collective> {
  const { rank, worldSize, generation, timeoutMs } = setup;
  if (!Number.isInteger(worldSize) || worldSize < 1) {
    throw new UserError(`world size must be a positive integer, not ${worldSize}`);
  }
  if (!Number.isInteger(rank) || rank < 0 || rank >= worldSize) {
    throw new UserError(`rank ${rank} is not in 0..${worldSize - 1}`);
  }
  await loadWasmCodec();
  const membership = { rank, worldSize, generation };
  const tuning = { timeoutMs, chunkBytes: setup.chunkBytes ?? DEFAULT_CHUNK_BYTES };
  if (worldSize === 1) {
    return new RingCollective(membership, createInMemoryRing(1, generation)[0], tuning);
  }
  const connectTimeoutMs = setup.connectTimeoutMs ?? timeoutMs;
  const link = {
    ...membership,
    timeoutMs: connectTimeoutMs,
    settings: setup.settings,
    credentials: setup.credentials,
    credential: setup.credential,
  };
  if (name === 'ring') {
    const { peerAddresses, peerService } = setup;
    if (!peerService || peerAddresses?.length !== worldSize) {
      throw new UserError(
        `the ring all-reduce needs this worker's PeerService and ${worldSize} peer addresses`,
      );
    }
    const transport = await GrpcRingTransport.connect({ ...link, peerAddresses, peerService });
    return whenReady(new RingCollective(membership, transport, tuning), connectTimeoutMs);
  }
  if (!setup.reductionAddress) {
    throw new UserError('the star all-reduce needs the address of the coordinator');
  }
  const transport = await GrpcStarTransport.connect({ ...link, address: setup.reductionAddress });
  return whenReady(new StarCollective(membership, transport, tuning), connectTimeoutMs);
}

/** The collective once every rank is connected (see SequencedCollective.ready); closed on failure. */
async function whenReady<C extends SequencedCollective>(
  collective: C,
  timeoutMs: number,
): Promise<C> {
  try {
    await collective.ready(timeoutMs);
    return collective;
  } catch (error) {
    await collective.close();
    throw error;
  }
}
