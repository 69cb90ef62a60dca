// The coordinator's ReductionService refuses streams and chunks that cannot belong
// to its generation with the promised status, tells the other ranks who broke the
// operation, and keeps serving.
import { credentials, status } from '@grpc/grpc-js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type Chunk, CollectiveOp, Encoding, Phase } from '../../src/gen/tfjs_ddp/v1/collective.js';
import { type ReduceRequest, ReductionServiceClient } from '../../src/gen/tfjs_ddp/v1/reduction.js';
import type { Collective } from '../../src/shared/collectives/collective.js';
import { createCollective } from '../../src/shared/collectives/create-collective.js';
import { StarCollective } from '../../src/shared/collectives/star-collective.js';
import { StarReductionService } from '../../src/shared/collectives/star-reduction-service.js';
import { TransportError } from '../../src/shared/transport/errors.js';
import { type RunningGrpcServer, startGrpcServer } from '../../src/shared/transport/grpc-server.js';
import { channelOptions, PROTOCOL_VERSION } from '../../src/shared/transport/grpc-settings.js';
import { GrpcStarTransport } from '../../src/shared/transport/grpc-star-transport.js';
import { statusAfter } from './raw-call.js';

const MAX_MESSAGE = 1024 * 1024;
let server: RunningGrpcServer;
let reduction: StarReductionService;
let raw: ReductionServiceClient;
let address: string;

const hello = (rank: number, generation = 1, worldSize = 2): ReduceRequest => ({
  kind: {
    $case: 'hello',
    value: { protocolVersion: PROTOCOL_VERSION, generation, worldSize, rank },
  },
});

const chunk = (rank: number, total: number, fields: Partial<Chunk> = {}): ReduceRequest => ({
  kind: {
    $case: 'chunk',
    value: {
      generation: 1,
      sequence: 0,
      op: CollectiveOp.COLLECTIVE_OP_ALL_REDUCE_SUM,
      phase: Phase.PHASE_CONTRIBUTE,
      step: 0,
      chunkIndex: 0,
      senderRank: rank,
      totalElements: total,
      offset: 0,
      elementCount: total,
      encoding: Encoding.ENCODING_FLOAT32_LE,
      bucket: 0,
      rootRank: 0,
      payload: new Uint8Array(total * 4),
      padding: new Uint8Array(0),
      ...fields,
    },
  },
});

function worker(rank: number, generation = 1): Promise<Collective> {
  return createCollective('star', {
    rank,
    worldSize: 2,
    generation,
    timeoutMs: 2000,
    reductionAddress: address,
  });
}

beforeEach(async () => {
  reduction = new StarReductionService({ timeoutMs: 1000, helloTimeoutMs: 500 });
  server = await startGrpcServer({
    host: '127.0.0.1',
    services: [reduction],
    settings: { maxMessageBytes: MAX_MESSAGE },
  });
  address = `127.0.0.1:${server.port}`;
  reduction.startGeneration(1, 2);
  raw = new ReductionServiceClient(address, credentials.createInsecure(), channelOptions());
});

afterEach(async () => {
  raw.close();
  await server.shutdown(100);
});

async function expectServing(generation: number): Promise<void> {
  reduction.startGeneration(generation, 2);
  const [a, b] = await Promise.all([worker(0, generation), worker(1, generation)]);
  const buffers = [Float32Array.of(1, 2), Float32Array.of(3, 4)];
  await Promise.all([a.allReduceSum(buffers[0]), b.allReduceSum(buffers[1])]);
  expect(Array.from(buffers[1])).toEqual([4, 6]);
  await Promise.all([a.close(), b.close()]);
}

describe('ReductionService refuses', () => {
  it.each([
    [
      'a first message that is not a hello',
      [chunk(0, 1)],
      'INVALID_ARGUMENT',
      /first message must be a ReductionHello/,
    ],
    ['an unknown rank', [hello(7)], 'INVALID_ARGUMENT', /rank 7 is not a rank of generation 1/],
    [
      'another generation',
      [hello(0, 5)],
      'FAILED_PRECONDITION',
      /generation 5 of 2 ranks is not the coordinator's generation 1/,
    ],
    [
      'a chunk whose payload does not match its length',
      [hello(0), chunk(0, 4, { payload: new Uint8Array(15) })],
      'INVALID_ARGUMENT',
      /15 payload bytes \(expected 16\)/,
    ],
    [
      'a chunk of another generation',
      [hello(0), chunk(0, 4, { generation: 2 })],
      'FAILED_PRECONDITION',
      /chunk of generation 2/,
    ],
    [
      'a chunk labelled with another rank',
      [hello(0), chunk(1, 4)],
      'INVALID_ARGUMENT',
      /labelled as from rank 1/,
    ],
    [
      'an oversized message, with RESOURCE_EXHAUSTED',
      [hello(0), chunk(0, MAX_MESSAGE / 4 + 10)],
      'RESOURCE_EXHAUSTED',
      /./,
    ],
  ])('%s, and keeps serving', async (_what, messages, code, details) => {
    const result = await statusAfter(raw.reduce(), messages as ReduceRequest[]);
    expect(status[result.code]).toBe(code);
    expect(result.details).toMatch(details);
    await expectServing(2);
  });

  it('a second stream for the same rank', async () => {
    const first = raw.reduce();
    first.on('error', () => {});
    first.write(hello(0));
    await new Promise((r) => first.once('data', r));
    const result = await statusAfter(raw.reduce(), [hello(0)]);
    expect(status[result.code]).toBe('ALREADY_EXISTS');
    first.cancel();
  });

  it('a length that differs from another rank, naming both, and fails that operation for all', async () => {
    // Built by hand: createCollective would wait in its start-up barrier for rank 1.
    const link = { rank: 0, worldSize: 2, generation: 1, timeoutMs: 2000, address };
    const honest = new StarCollective(link, await GrpcStarTransport.connect(link), {
      timeoutMs: 2000,
      chunkBytes: 1024,
    });
    const rejected = honest.allReduceSum(new Float32Array(8)).then(
      () => new Error('resolved'),
      (e: Error) => e,
    );
    const result = await statusAfter(raw.reduce(), [hello(1), chunk(1, 10)]);
    expect(status[result.code]).toBe('INVALID_ARGUMENT');
    expect(result.details).toMatch(/rank 1 sent .* 10 elements.* but rank 0 started .* 8 elements/);
    const error = await rejected;
    expect(error).toBeInstanceOf(TransportError);
    expect(error.message).toMatch(/rank 1 sent/);
    await honest.close();
    await expectServing(2);
  });
});
