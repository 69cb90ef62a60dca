// The hostile client's calls: plain @grpc/grpc-js and @grpc/proto-loader with the .proto
// files, none of this project's client code, sending whatever a test says.
import { join } from 'node:path';
import {
  type ChannelCredentials,
  type Client,
  credentials,
  type GrpcObject,
  loadPackageDefinition,
  Metadata,
  type ServiceClientConstructor,
  status,
} from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
// The one thing taken from this project's code: the version number its hellos must carry.
import { PROTOCOL_VERSION } from '../../src/shared/transport/grpc-settings.js';
import { ROOT } from '../cli/run-cli.js';

export { PROTOCOL_VERSION };

/** The services as proto-loader makes them from the .proto files, on channels of `creds`. */
export function services(creds: ChannelCredentials = credentials.createInsecure()) {
  const definition = loadSync(
    ['tfjs_ddp/v1/coordinator.proto', 'tfjs_ddp/v1/peer.proto', 'tfjs_ddp/v1/reduction.proto'],
    { includeDirs: [join(ROOT, 'proto')], keepCase: true, enums: String, oneofs: true },
  );
  const v1 = (loadPackageDefinition(definition).tfjs_ddp as GrpcObject).v1 as GrpcObject;
  const make = (name: string, address: string) =>
    new (v1[name] as ServiceClientConstructor)(address, creds, {
      'grpc.max_send_message_length': -1,
    });
  return { make };
}

export interface Outcome {
  code: number;
  details: string;
  received: number;
}

/** One call of `method` with `credential` in the metadata (none when undefined). */
export function attempt(
  client: Client,
  method: string,
  credential: string | undefined,
  messages: object[],
): Promise<Outcome> {
  const metadata = new Metadata();
  if (credential !== undefined) metadata.set('tfjs-ddp-credential', credential);
  const c = client as unknown as Record<string, (...args: unknown[]) => StreamLike>;
  let received = 0;
  return new Promise((resolve) => {
    const timer = setTimeout(
      () => resolve({ code: -1, details: 'no answer within 10 s', received }),
      10_000,
    );
    const done = (code: number, details: string) => {
      clearTimeout(timer);
      resolve({ code, details, received });
    };
    if (method === 'join' || method === 'fetchSamples') {
      c[method].call(client, messages[0], metadata, (error: { code: number; details: string }) =>
        error ? done(error.code, error.details) : done(status.OK, 'answered'),
      );
      return;
    }
    const call =
      method === 'fetchCheckpoint'
        ? c[method].call(client, messages[0], metadata)
        : c[method].call(client, metadata);
    call.on('data', () => received++);
    call.on('error', () => undefined);
    call.on('status', (s: { code: number; details: string }) => done(s.code, s.details));
    if (method !== 'fetchCheckpoint') for (const m of messages) call.write?.(m);
  });
}

interface StreamLike {
  on(event: string, listener: (...args: never[]) => void): unknown;
  write?(message: object): boolean;
}

export const chunk = (rank: number, elements: number, bytes = elements * 4) => ({
  chunk: {
    generation: 1,
    sequence: 1,
    op: 'COLLECTIVE_OP_ALL_REDUCE_SUM',
    phase: 'PHASE_CONTRIBUTE',
    sender_rank: rank,
    total_elements: elements,
    element_count: elements,
    encoding: 'ENCODING_FLOAT32_LE',
    payload: Buffer.alloc(bytes),
  },
});
export const peerHello = (rank: number, peerRank: number) => ({
  hello: {
    protocol_version: PROTOCOL_VERSION,
    generation: 1,
    world_size: 2,
    rank,
    peer_rank: peerRank,
  },
});
