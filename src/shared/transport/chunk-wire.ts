import { Chunk } from '../../gen/tfjs_ddp/v1/collective.js';

/** A message of our streams: a oneof `kind` whose field 2 is always the Chunk. */
interface KindMessage {
  kind?: { $case: string; value: unknown };
}

const EMPTY = new Uint8Array(0);
const CHUNK_FIELD_TAG = (2 << 3) | 2;
const PAYLOAD_TAG = (14 << 3) | 2;
const PADDING_TAG = (15 << 3) | 2;
// grpc-js gives the receiver a fresh buffer holding the 5-byte frame header and the
// message, and decodes the message from offset 5.
const FRAME_HEADER_BYTES = 5;

interface Encoding {
  bytes: Buffer;
  /** Set for a buffer from the pool: it goes back once grpc-js has copied it. */
  pooled: boolean;
}

/** Wire bytes of the messages made by chunkMessage(), until the stream serializes them. */
const encoded = new WeakMap<object, Encoding>();

/**
 * Encode buffers of messages written once to a grpc-js *server* stream (see
 * chunkMessage). grpc-js' ServerInterceptingCall.serializeMessage calls the
 * serializer and copies what it returns into a new frame buffer within the same
 * synchronous call, so the serializer's buffer is free again by the next
 * microtask. Reusing it spares an allocation per chunk: allocations of buffers
 * are what drives V8's garbage collections here ("external memory pressure").
 * Client streams may keep a serialized message (while the call starts, for
 * retries), so their messages are never pooled.
 */
const pool: ArrayBuffer[] = [];
/** A stream queues up to 16 messages (grpc-js' object-mode high-water mark) before 'drain'. */
const POOLED_BUFFERS = 24;
/** Room for the header, whose varints grow with offsets and sequence numbers. */
const HEADER_SLACK = 64;

function allocate(size: number, pooled: boolean): Buffer {
  if (!pooled) return Buffer.allocUnsafe(size);
  const i = pool.findIndex((b) => b.byteLength >= size && b.byteLength <= 2 * size + HEADER_SLACK);
  if (i < 0) return Buffer.allocUnsafeSlow(size + HEADER_SLACK).subarray(0, size);
  return Buffer.from(pool.splice(i, 1)[0], 0, size);
}

function release(bytes: Buffer): void {
  if (pool.length < POOLED_BUFFERS) pool.push(bytes.buffer as ArrayBuffer);
}

/**
 * Wraps a generated serializer so that chunk messages are written with one copy
 * of the payload (the generated code makes four) and with the payload 4-byte
 * aligned in the received frame (through Chunk.padding), so that float32 data can
 * be read in place. Messages made by chunkMessage() go out as encoded then. The
 * bytes decode with the generated decoder like any other encoding of the message.
 */
export function chunkSerializer<T extends KindMessage>(
  fallback: (value: T) => Buffer,
): (value: T) => Buffer {
  return (value) => {
    const encoding = encoded.get(value);
    if (encoding?.pooled) {
      encoded.delete(value);
      queueMicrotask(() => release(encoding.bytes));
    }
    if (encoding) return encoding.bytes;
    return value.kind?.$case === 'chunk'
      ? encodeChunkField(value.kind.value as Chunk, false)
      : fallback(value);
  };
}

/**
 * The stream message (oneof field `chunk`) carrying `chunk`, encoded now: the
 * payload is copied before this returns, so the caller may change it at once,
 * even though the stream may serialize the message much later (grpc-js queues
 * writes). Write it to a stream whose serializer is a chunkSerializer.
 *
 * `once: 'server'`: the message is written exactly once, to a grpc-js server
 * stream; its encoding then comes from a pool of buffers and returns to it after
 * serialization. Otherwise the encoding is shared by every stream the message is
 * written to.
 */
export function chunkMessage(
  chunk: Chunk,
  once?: 'server',
): { kind: { $case: 'chunk'; value: Chunk } } {
  const message = { kind: { $case: 'chunk' as const, value: chunk } };
  const pooled = once === 'server';
  encoded.set(message, { bytes: encodeChunkField(chunk, pooled), pooled });
  return message;
}

function encodeChunkField(chunk: Chunk, pooled: boolean): Buffer {
  const header = Chunk.encode({ ...chunk, payload: EMPTY, padding: EMPTY }).finish();
  const n = chunk.payload.byteLength;
  for (let pad = 0; ; pad++) {
    const innerLength = header.length + 2 + pad + 1 + varintSize(n) + n;
    const payloadAt = 1 + varintSize(innerLength) + header.length + 2 + pad + 1 + varintSize(n);
    if ((FRAME_HEADER_BYTES + payloadAt) % 4 !== 0) continue;
    const out = allocate(payloadAt + n, pooled);
    let at = 0;
    out[at++] = CHUNK_FIELD_TAG;
    at = writeVarint(out, at, innerLength);
    out.set(header, at);
    at += header.length;
    out[at++] = PADDING_TAG;
    out[at++] = pad;
    out.fill(0, at, at + pad);
    at += pad;
    out[at++] = PAYLOAD_TAG;
    at = writeVarint(out, at, n);
    out.set(chunk.payload, at);
    return out;
  }
}

function varintSize(value: number): number {
  let size = 1;
  for (let v = value; v >= 0x80; v = Math.floor(v / 128)) size++;
  return size;
}

function writeVarint(out: Buffer, at: number, value: number): number {
  let v = value;
  while (v >= 0x80) {
    out[at++] = (v % 128) | 0x80;
    v = Math.floor(v / 128);
  }
  out[at++] = v;
  return at;
}
