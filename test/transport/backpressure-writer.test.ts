// BackpressureWriter over a real grpc-js stream: it stops when write() returns
// false, so a reader that stalls costs bounded memory and a deadline error, and a
// slow reader gets everything in order.
import { credentials, Server, ServerCredentials, type ServerDuplexStream } from '@grpc/grpc-js';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { Encoding } from '../../src/gen/tfjs_ddp/v1/collective.js';
import {
  type ExchangeRequest,
  type ExchangeResponse,
  PeerServiceClient,
  PeerServiceService,
} from '../../src/gen/tfjs_ddp/v1/peer.js';
import { BackpressureWriter } from '../../src/shared/transport/backpressure-writer.js';
import { DeadlineExceededError } from '../../src/shared/transport/errors.js';
import { channelOptions, serverOptions } from '../../src/shared/transport/grpc-settings.js';

const MIB = 1024 * 1024;
let server: Server;
let client: PeerServiceClient;
let accepted: Promise<ServerDuplexStream<ExchangeRequest, ExchangeResponse>>;

beforeEach(async () => {
  server = new Server(serverOptions());
  let take: (call: ServerDuplexStream<ExchangeRequest, ExchangeResponse>) => void = () => {};
  accepted = new Promise((resolve) => {
    take = resolve;
  });
  server.addService(PeerServiceService, {
    exchange: (call: ServerDuplexStream<ExchangeRequest, ExchangeResponse>) => {
      call.pause();
      take(call);
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (e, p) =>
      e ? reject(e) : resolve(p),
    ),
  );
  client = new PeerServiceClient(
    `127.0.0.1:${port}`,
    credentials.createInsecure(),
    channelOptions(),
  );
});

afterEach(() => {
  client.close();
  server.forceShutdown();
});

const message = (index: number, bytes = MIB): ExchangeRequest => ({
  kind: {
    $case: 'chunk',
    value: {
      generation: 1,
      sequence: 0,
      op: 1,
      phase: 1,
      step: 0,
      chunkIndex: index,
      senderRank: 0,
      totalElements: bytes / 4,
      offset: 0,
      elementCount: bytes / 4,
      encoding: Encoding.ENCODING_FLOAT32_LE,
      bucket: 0,
      rootRank: 0,
      payload: new Uint8Array(bytes),
      padding: new Uint8Array(0),
    },
  },
});

/** A stream from the client, a writer on it, and the server's side of it (paused). */
async function openStream() {
  const call = client.exchange();
  call.on('error', () => {});
  const writer = new BackpressureWriter(call, 'rank 0', 'rank 1');
  return { call, writer, reader: await accepted };
}

it('stops writing to a reader that stalls and fails at the deadline, with bounded buffering', async () => {
  const { call, writer } = await openStream();
  let written = 0;
  let failure: unknown;
  const start = performance.now();
  for (let i = 0; i < 500 && !failure; i++) {
    await writer.write(message(i), 300).then(
      () => written++,
      (e) => (failure = e),
    );
  }
  expect(failure).toBeInstanceOf(DeadlineExceededError);
  expect((failure as Error).message).toMatch(
    /rank 0 timed out after 300 ms waiting for rank 1 to read/,
  );
  expect(performance.now() - start).toBeLessThan(2000);
  // The stream window (16 MiB) plus grpc-js' 16-message buffer, not 500 MiB.
  expect(written).toBeLessThan(48);
  // Every later write fails at once with the same error.
  await expect(writer.write(message(0), 300)).rejects.toBe(failure);
  call.cancel();
});

it('delivers everything in order to a slow reader', async () => {
  const { call, writer, reader } = await openStream();
  const seen: number[] = [];
  const count = 64;
  const all = new Promise<void>((resolve) => {
    reader.on('data', (m: ExchangeRequest) => {
      if (m.kind?.$case === 'chunk') seen.push(m.kind.value.chunkIndex);
      if (seen.length === count) resolve();
    });
  });
  setTimeout(() => reader.resume(), 200);
  await Promise.all(Array.from({ length: count }, (_, i) => writer.write(message(i), 2000)));
  await all;
  expect(seen).toEqual(Array.from({ length: count }, (_, i) => i));
  call.end();
});

it('flushed() waits until the messages have left, and fails at the deadline while they cannot', async () => {
  const { call, writer, reader } = await openStream();
  reader.pause();
  // More than the paused reader's 64 KiB window (fewer than the stream's 16 buffered
  // messages), in messages small enough that grpc-js would keep them for retries and call
  // them written at once (see channelOptions).
  const count = 12;
  for (let i = 0; i < count; i++) await writer.write(message(i, 16 * 1024), 2000);
  await expect(writer.flushed(300)).rejects.toThrow(
    /rank 0 timed out after 300 ms waiting for its messages to rank 1 to leave/,
  );
  call.cancel();
});

it('flushed() resolves once a slow reader has taken the messages in', async () => {
  const { call, writer, reader } = await openStream();
  reader.on('data', () => {});
  reader.pause();
  const count = 8;
  for (let i = 0; i < count; i++) await writer.write(message(i), 2000);
  let flushed = false;
  const done = writer.flushed(5000).then(() => {
    flushed = true;
  });
  await new Promise((r) => setTimeout(r, 200));
  expect(flushed).toBe(false);
  reader.resume();
  await done;
  expect(flushed).toBe(true);
  call.end();
});
