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

/**
 * Wraps a generated serializer so that chunk messages are written with one copy
 * of the payload (the generated code makes four) and with the payload 4-byte
 * aligned in the received frame (through Chunk.padding), so that float32 data can
 * be read in place. The bytes decode with the generated decoder like any other
 * encoding of the message.
 */
export function chunkSerializer<T extends KindMessage>(
  fallback: (value: T) => Buffer,
): (value: T) => Buffer {
  return (value) =>
    value.kind?.$case === 'chunk' ? encodeChunkField(value.kind.value as Chunk) : fallback(value);
}

function encodeChunkField(chunk: Chunk): Buffer {
  const header = Chunk.encode({ ...chunk, payload: EMPTY, padding: EMPTY }).finish();
  const n = chunk.payload.byteLength;
  for (let pad = 0; ; pad++) {
    const innerLength = header.length + 2 + pad + 1 + varintSize(n) + n;
    const payloadAt = 1 + varintSize(innerLength) + header.length + 2 + pad + 1 + varintSize(n);
    if ((FRAME_HEADER_BYTES + payloadAt) % 4 !== 0) continue;
    const out = Buffer.allocUnsafe(payloadAt + n);
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
