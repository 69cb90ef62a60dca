// The one-copy chunk serializer writes what the generated decoders read, with the
// payload aligned in the frame grpc-js hands to the receiver.
import { credentials, Server, ServerCredentials, type ServerDuplexStream } from '@grpc/grpc-js';
import { expect, it } from 'vitest';
import { type Chunk, Encoding } from '../../src/gen/tfjs_ddp/v1/collective.js';
import {
  type ExchangeRequest,
  ExchangeResponse,
  PeerServiceClient,
  PeerServiceService,
} from '../../src/gen/tfjs_ddp/v1/peer.js';
import { chunkMessage, chunkSerializer } from '../../src/shared/transport/chunk-wire.js';
import { channelOptions } from '../../src/shared/transport/grpc-settings.js';

const serialize = chunkSerializer(PeerServiceService.exchange.responseSerialize);

function chunk(bytes: number, fields: Partial<Chunk> = {}): Chunk {
  return {
    generation: 2 ** 40,
    sequence: 300,
    op: 1,
    phase: 2,
    step: 5,
    chunkIndex: 70_000,
    senderRank: 3,
    totalElements: 4_000_000_000,
    offset: 123_456,
    elementCount: bytes / 4,
    encoding: Encoding.ENCODING_FLOAT32_LE,
    bucket: 7,
    rootRank: 0,
    payload: Uint8Array.from({ length: bytes }, (_, i) => i % 251),
    padding: new Uint8Array(0),
    ...fields,
  };
}

it.each([0, 4, 124, 128, 16_384, 1 << 20])(
  'round-trips a chunk of %i payload bytes, aligned in the frame',
  (bytes) => {
    for (const fields of [
      {},
      { generation: 1, sequence: 0, chunkIndex: 0, offset: 0, totalElements: 1 },
    ]) {
      const original = chunk(bytes, fields);
      const wire = serialize({ kind: { $case: 'chunk', value: original } });
      const frame = Buffer.concat([Buffer.alloc(5), wire]).subarray(5);
      const decoded = ExchangeResponse.decode(frame);
      expect(decoded.kind?.$case).toBe('chunk');
      const value = decoded.kind?.value as Chunk;
      expect({ ...value, payload: undefined, padding: undefined }).toEqual({
        ...original,
        payload: undefined,
        padding: undefined,
      });
      expect(Buffer.from(value.payload).equals(Buffer.from(original.payload))).toBe(true);
      expect(value.payload.byteOffset % 4).toBe(0);
    }
  },
);

it('leaves other messages to the generated serializer', () => {
  const hello: ExchangeResponse = {
    kind: {
      $case: 'hello',
      value: { protocolVersion: 1, generation: 1, worldSize: 2, rank: 0, peerRank: 1 },
    },
  };
  expect(serialize(hello).equals(Buffer.from(ExchangeResponse.encode(hello).finish()))).toBe(true);
});

it('arrives aligned through a real grpc-js stream', async () => {
  const server = new Server();
  server.addService(
    { exchange: { ...PeerServiceService.exchange, responseSerialize: serialize } },
    {
      exchange: (call: ServerDuplexStream<ExchangeRequest, ExchangeResponse>) => {
        for (const bytes of [4, 400, 40_000, 4_000_000])
          call.write({ kind: { $case: 'chunk', value: chunk(bytes) } });
        call.end();
      },
    },
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (e, p) =>
      e ? reject(e) : resolve(p),
    ),
  );
  const client = new PeerServiceClient(
    `127.0.0.1:${port}`,
    credentials.createInsecure(),
    channelOptions(),
  );
  const offsets: number[] = [];
  await new Promise<void>((resolve) => {
    const call = client.exchange();
    call.on('data', (m: ExchangeResponse) => {
      if (m.kind?.$case === 'chunk') offsets.push(m.kind.value.payload.byteOffset % 4);
    });
    call.on('end', resolve);
    call.end();
  });
  client.close();
  server.forceShutdown();
  expect(offsets).toEqual([0, 0, 0, 0]);
});

it('reuses pooled encodings only after grpc-js copied them: many quick writes arrive intact', async () => {
  const server = new Server();
  const count = 40;
  const payloadOf = (i: number) => Uint8Array.from({ length: 65_536 }, (_, k) => (k * 7 + i) % 251);
  server.addService(
    { exchange: { ...PeerServiceService.exchange, responseSerialize: serialize } },
    {
      exchange: async (call: ServerDuplexStream<ExchangeRequest, ExchangeResponse>) => {
        // In bursts: within one, messages queue unserialized in the stream; between
        // them, released encodings are taken again for the next burst's messages.
        for (let i = 0; i < count; i++) {
          const payload = payloadOf(i);
          call.write(chunkMessage(chunk(payload.length, { chunkIndex: i, payload }), 'server'));
          payload.fill(0); // the caller may reuse its buffer once chunkMessage returned
          if (i % 4 === 3) await new Promise((resolve) => setImmediate(resolve));
        }
        call.end();
      },
    },
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (e, p) =>
      e ? reject(e) : resolve(p),
    ),
  );
  const client = new PeerServiceClient(
    `127.0.0.1:${port}`,
    credentials.createInsecure(),
    channelOptions(),
  );
  const wrong: number[] = [];
  const received: number[] = [];
  await new Promise<void>((resolve) => {
    const call = client.exchange();
    call.on('data', (m: ExchangeResponse) => {
      if (m.kind?.$case !== 'chunk') return;
      const { chunkIndex, payload } = m.kind.value;
      received.push(chunkIndex);
      if (!Buffer.from(payload).equals(Buffer.from(payloadOf(chunkIndex)))) wrong.push(chunkIndex);
    });
    call.on('end', resolve);
    call.end();
  });
  client.close();
  server.forceShutdown();
  expect(received).toEqual(Array.from({ length: count }, (_, i) => i));
  expect(wrong).toEqual([]);
});
