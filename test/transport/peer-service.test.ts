// The workers' PeerService refuses streams that cannot belong to its generation,
// with the status the proto promises, and keeps serving the ring.
import { credentials, status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Encoding } from '../../src/gen/tfjs_ddp/v1/collective.js';
import { type ExchangeRequest, PeerServiceClient } from '../../src/gen/tfjs_ddp/v1/peer.js';
import type { Collective } from '../../src/shared/collectives/collective.js';
import { createCollective } from '../../src/shared/collectives/create-collective.js';
import { type RunningGrpcServer, startGrpcServer } from '../../src/shared/transport/grpc-server.js';
import { channelOptions, PROTOCOL_VERSION } from '../../src/shared/transport/grpc-settings.js';
import { PeerService } from '../../src/shared/transport/peer-service.js';
import { statusAfter } from './raw-call.js';

let servers: RunningGrpcServer[];
let collectives: Collective[];
let raw: PeerServiceClient;

const hello = (
  fields: Partial<{
    protocolVersion: number;
    generation: number;
    worldSize: number;
    rank: number;
    peerRank: number;
  }>,
): ExchangeRequest => ({
  kind: {
    $case: 'hello',
    value: {
      protocolVersion: PROTOCOL_VERSION,
      generation: 1,
      worldSize: 2,
      rank: 1,
      peerRank: 0,
      ...fields,
    },
  },
});

beforeAll(async () => {
  const services = [new PeerService(500), new PeerService(500)];
  servers = await Promise.all(
    services.map((s) => startGrpcServer({ host: '127.0.0.1', services: [s] })),
  );
  const peerAddresses = servers.map((s) => `127.0.0.1:${s.port}`);
  collectives = await Promise.all(
    services.map((peerService, rank) =>
      createCollective('ring', {
        rank,
        worldSize: 2,
        generation: 1,
        timeoutMs: 2000,
        peerAddresses,
        peerService,
      }),
    ),
  );
  raw = new PeerServiceClient(peerAddresses[0], credentials.createInsecure(), channelOptions());
});

afterAll(async () => {
  raw.close();
  await Promise.all(collectives.map((c) => c.close()));
  await Promise.all(servers.map((s) => s.shutdown(100)));
});

describe('PeerService refuses', () => {
  it.each([
    [
      'a first message that is not a hello',
      { kind: { $case: 'abort', value: { rank: 1, reason: 'x' } } } as ExchangeRequest,
      status.INVALID_ARGUMENT,
      /first message must be a PeerHello/,
    ],
    [
      'another protocol version',
      hello({ protocolVersion: 99 }),
      status.FAILED_PRECONDITION,
      /protocol version 99/,
    ],
    [
      'a generation that is over',
      hello({ generation: 0 }),
      status.FAILED_PRECONDITION,
      /generation 0 is over/,
    ],
    ['another world size', hello({ worldSize: 3 }), status.FAILED_PRECONDITION, /world size 3/],
    [
      'an unknown rank',
      hello({ rank: 5 }),
      status.INVALID_ARGUMENT,
      /rank 5 is not a peer of rank 0/,
    ],
    [
      'a caller that dialled the wrong rank',
      hello({ peerRank: 1 }),
      status.INVALID_ARGUMENT,
      /wanted rank 1, but this worker is rank 0/,
    ],
    [
      'a second stream from the same rank',
      hello({}),
      status.ALREADY_EXISTS,
      /rank 1 already has a stream/,
    ],
  ])('%s', async (_what, message, code, details) => {
    const result = await statusAfter(raw.exchange(), [message]);
    expect(status[result.code]).toBe(status[code]);
    expect(result.details).toMatch(details);
  });

  it('a stream that sends no hello within its deadline', async () => {
    const result = await statusAfter(raw.exchange(), []);
    expect(status[result.code]).toBe('DEADLINE_EXCEEDED');
  });

  it('a message over the receive limit, with RESOURCE_EXHAUSTED', async () => {
    const small = new PeerService(500);
    const server = await startGrpcServer({
      host: '127.0.0.1',
      services: [small],
      settings: { maxMessageBytes: 1024 * 1024 },
    });
    const client = new PeerServiceClient(
      `127.0.0.1:${server.port}`,
      credentials.createInsecure(),
      channelOptions(),
    );
    try {
      const chunk = {
        generation: 1,
        sequence: 0,
        op: 1,
        phase: 1,
        step: 0,
        chunkIndex: 0,
        senderRank: 1,
        totalElements: 600_000,
        offset: 0,
        elementCount: 600_000,
        encoding: Encoding.ENCODING_FLOAT32_LE,
        bucket: 0,
        rootRank: 0,
        payload: new Uint8Array(2_400_000),
        padding: new Uint8Array(0),
      };
      const result = await statusAfter(client.exchange(), [
        { kind: { $case: 'chunk', value: chunk } },
      ]);
      expect(status[result.code]).toBe('RESOURCE_EXHAUSTED');
      // The server still answers.
      const after = await statusAfter(client.exchange(), [
        hello({ generation: 0, protocolVersion: 99 }),
      ]);
      expect(status[after.code]).toBe('FAILED_PRECONDITION');
    } finally {
      client.close();
      await server.shutdown(100);
    }
  });
});

it('keeps serving the ring after refusing streams', async () => {
  const buffers = [Float32Array.of(1, 2, 3), Float32Array.of(10, 20, 30)];
  await Promise.all(collectives.map((c, r) => c.allReduceSum(buffers[r])));
  for (const b of buffers) expect(Array.from(b)).toEqual([11, 22, 33]);
});
