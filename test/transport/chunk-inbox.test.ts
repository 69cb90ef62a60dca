// The receiving half every transport shares: demultiplexing by sequence,
// validation of what arrives, deadlines, and the chain of waits in a ring.
import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { type Chunk, CollectiveOp, Encoding, Phase } from '../../src/gen/tfjs_ddp/v1/collective.js';
import { ChunkInbox } from '../../src/shared/transport/chunk-inbox.js';
import {
  DeadlineExceededError,
  PeerLostError,
  ProtocolError,
} from '../../src/shared/transport/errors.js';
import type { ChunkExpectation } from '../../src/shared/transport/transport.js';

const expectation = (
  sequence: number,
  fields: Partial<ChunkExpectation> = {},
): ChunkExpectation => ({
  sequence,
  op: CollectiveOp.COLLECTIVE_OP_ALL_REDUCE_SUM,
  phase: Phase.PHASE_REDUCE_SCATTER,
  step: 0,
  chunkIndex: 0,
  totalElements: 4,
  offset: 0,
  elementCount: 4,
  encoding: Encoding.ENCODING_FLOAT32_LE,
  bucket: 0,
  rootRank: 0,
  ...fields,
});

const chunk = (sequence: number, fields: Partial<Chunk> = {}): Chunk => ({
  ...expectation(sequence),
  generation: 3,
  senderRank: 1,
  payload: new Uint8Array(16),
  padding: new Uint8Array(0),
  ...fields,
});

function inbox(onStall?: (rank: number) => void) {
  const stats = { bytesSent: 0, bytesReceived: 0, chunksSent: 0, chunksReceived: 0 };
  return {
    stats,
    inbox: new ChunkInbox({
      rank: 2,
      peer: 'rank 1',
      generation: 3,
      senderRank: 1,
      stats,
      onStall,
    }),
  };
}

describe('ChunkInbox', () => {
  it('hands out chunks per operation, whatever order the operations arrive in', async () => {
    const { inbox: box, stats } = inbox();
    box.push(chunk(1, { chunkIndex: 0 }));
    box.push(chunk(0));
    box.push(chunk(1, { chunkIndex: 1, offset: 4, totalElements: 8 }));
    expect((await box.receive(expectation(0), 100)).sequence).toBe(0);
    expect((await box.receive(expectation(1), 100)).chunkIndex).toBe(0);
    const later = box.receive(expectation(1, { chunkIndex: 1, offset: 4, totalElements: 8 }), 100);
    expect((await later).chunkIndex).toBe(1);
    expect(stats).toMatchObject({ chunksReceived: 3, bytesReceived: 48 });
  });

  it.each([
    [
      'another generation',
      { generation: 4 },
      status.FAILED_PRECONDITION,
      /generation 4.*rank 2 is at generation 3/,
    ],
    ['another sender', { senderRank: 0 }, status.INVALID_ARGUMENT, /labelled as from rank 0/],
    [
      'a payload of the wrong size',
      { payload: new Uint8Array(15) },
      status.INVALID_ARGUMENT,
      /15 payload bytes \(expected 16\)/,
    ],
    [
      'an unknown encoding',
      { encoding: 9 as Encoding },
      status.INVALID_ARGUMENT,
      /unknown encoding 9/,
    ],
    [
      'a span past the end',
      { offset: 2 },
      status.INVALID_ARGUMENT,
      /ends past the operation's length/,
    ],
  ])('refuses a chunk with %s', (_what, fields, code, message) => {
    const { inbox: box } = inbox();
    let error: ProtocolError | undefined;
    try {
      box.push(chunk(0, fields));
    } catch (e) {
      error = e as ProtocolError;
    }
    expect(error).toBeInstanceOf(ProtocolError);
    expect(error?.code).toBe(code);
    expect(error?.message).toMatch(message);
  });

  it('rejects at once a chunk that differs from what the operation expects, naming both', async () => {
    const { inbox: box } = inbox();
    box.push(chunk(0, { totalElements: 5, elementCount: 4 }));
    await expect(box.receive(expectation(0), 1000)).rejects.toThrow(
      /rank 1 sent .*5 elements.* but rank 2 expected .*4 elements.*differs in totalElements/,
    );
  });

  it('times out naming the peer, the phase and the chunk', async () => {
    const { inbox: box } = inbox();
    const error = await box
      .receive(expectation(7, { step: 1, chunkIndex: 2, offset: 0 }), 50)
      .catch((e) => e);
    expect(error).toBeInstanceOf(DeadlineExceededError);
    expect(error.message).toBe(
      'rank 2 timed out after 50 ms waiting for rank 1 to send reduce-scatter step 1, chunk 2 [0, 4) float32 of all-reduce #7 (bucket 0, 4 elements)',
    );
  });

  it('tells the next rank it is stalled and names the end of the chain on timeout', async () => {
    const stalls: number[] = [];
    const { inbox: box } = inbox((rank) => stalls.push(rank));
    const waiting = box.receive(expectation(0), 200).then(
      () => new Error('resolved'),
      (e: Error) => e,
    );
    await new Promise((r) => setTimeout(r, 80));
    expect(stalls).toEqual([1]);
    box.upstreamWaiting(0);
    expect(stalls).toEqual([1, 0]);
    expect((await waiting).message).toMatch(
      /waiting for rank 1 \(rank 1 was itself waiting for rank 0\)/,
    );
  });

  it('after a clean end still delivers what arrived, then reports the peer gone', async () => {
    const { inbox: box } = inbox();
    box.push(chunk(0));
    box.end(new PeerLostError('rank 1 closed its stream'));
    await expect(box.receive(expectation(0), 100)).resolves.toMatchObject({ sequence: 0 });
    await expect(box.receive(expectation(1), 100)).rejects.toThrow('rank 1 closed its stream');
  });

  it('after a failure rejects every pending and later receive with it', async () => {
    const { inbox: box } = inbox();
    const pending = box.receive(expectation(0), 1000);
    box.fail(new PeerLostError('gone'));
    await expect(pending).rejects.toThrow('gone');
    await expect(box.receive(expectation(1), 1000)).rejects.toThrow('gone');
  });
});
