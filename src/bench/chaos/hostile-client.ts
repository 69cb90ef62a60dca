import {
  type Client,
  credentials,
  type GrpcObject,
  loadPackageDefinition,
  Metadata,
  type ServiceClientConstructor,
  status,
} from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { PROTO_DIR } from './scenario.js';

/**
 * A client that is not the project's: plain @grpc/grpc-js with the .proto files loaded by
 * @grpc/proto-loader, sending what a stranger on the network could. Nothing here uses the
 * project's transport or generated code, so that it sends what they would refuse to build.
 */

/** What one hostile call got back. */
export interface HostileAnswer {
  call: string;
  code: number;
  /** Messages the service sent back before the status (any is a leak). */
  received: number;
}

interface Stream {
  on(event: string, listener: (...args: never[]) => void): unknown;
  write(message: object): boolean;
  end(): void;
}

/** The rank-0 chunk of an all-reduce of `elements` floats, with `bytes` of payload. */
function chunk(elements: number, bytes: number) {
  return {
    chunk: {
      generation: 1,
      sequence: 1,
      op: 'COLLECTIVE_OP_ALL_REDUCE_SUM',
      phase: 'PHASE_CONTRIBUTE',
      sender_rank: 0,
      total_elements: elements,
      element_count: elements,
      encoding: 'ENCODING_FLOAT32_LE',
      payload: Buffer.alloc(bytes),
    },
  };
}

/** Over grpc's 4 MiB receive limit, and far over the size of any lenet5 gradient bucket. */
const OVERSIZED_BYTES = 65 * 2 ** 20;

function clients(coordinator: string, peers: readonly string[]) {
  const definition = loadSync(
    ['tfjs_ddp/v1/coordinator.proto', 'tfjs_ddp/v1/peer.proto', 'tfjs_ddp/v1/reduction.proto'],
    { includeDirs: [PROTO_DIR], keepCase: true, enums: String, oneofs: true },
  );
  const v1 = (loadPackageDefinition(definition).tfjs_ddp as GrpcObject).v1 as GrpcObject;
  const make = (name: string, address: string) =>
    new (v1[name] as ServiceClientConstructor)(address, credentials.createInsecure(), {
      'grpc.max_send_message_length': -1,
    });
  return {
    coordinator: make('CoordinatorService', coordinator),
    reduction: make('ReductionService', coordinator),
    peers: peers.map((address) => make('PeerService', address)),
  };
}

/** Opens `method` (a bidirectional stream), writes `messages`, and waits for the status. */
function stream(
  client: Client,
  method: string,
  credential: string | undefined,
  messages: object[],
  call: string,
) {
  const metadata = new Metadata();
  if (credential !== undefined) metadata.set('tfjs-ddp-credential', credential);
  return new Promise<HostileAnswer>((resolve) => {
    let received = 0;
    const s = (client as unknown as Record<string, (m: Metadata) => Stream>)[method].call(
      client,
      metadata,
    );
    const timer = setTimeout(() => {
      resolve({ call, code: -1, received });
      (s as unknown as { cancel(): void }).cancel();
    }, 10_000);
    s.on('data', () => received++);
    s.on('error', () => undefined);
    s.on('status', (st: { code: number }) => {
      clearTimeout(timer);
      resolve({ call, code: st.code, received });
    });
    for (const m of messages) s.write(m);
    s.end();
  });
}

/**
 * Messages over the size limit and of the wrong length, into every worker's ring stream and the
 * coordinator's reduction stream, without a credential and with the join token (which is no
 * ring credential); then a Join over the size limit. Resolves with every call's answer.
 */
export async function hostileCalls(
  coordinator: string,
  peers: readonly string[],
  joinToken: string,
): Promise<HostileAnswer[]> {
  const c = clients(coordinator, peers);
  const hello = (peerRank: number) => ({
    hello: {
      protocol_version: 2,
      generation: 1,
      world_size: peers.length,
      rank: 0,
      peer_rank: peerRank,
    },
  });
  const calls: Promise<HostileAnswer>[] = [];
  // Wrong lengths with both credentials; oversized messages once per service (65 MiB each).
  for (const credential of [undefined, joinToken]) {
    const as = credential === undefined ? 'no credential' : 'the join token';
    for (const [rank, peer] of c.peers.entries())
      calls.push(
        stream(
          peer,
          'exchange',
          credential,
          [hello(rank), chunk(8, 5)],
          `Exchange into rank ${rank}, wrong length, ${as}`,
        ),
      );
    calls.push(
      stream(
        c.reduction,
        'reduce',
        credential,
        [
          { hello: { protocol_version: 2, generation: 1, world_size: peers.length, rank: 0 } },
          chunk(8, 5),
        ],
        `Reduce, wrong length, ${as}`,
      ),
    );
  }
  for (const [rank, peer] of c.peers.entries())
    calls.push(
      stream(
        peer,
        'exchange',
        undefined,
        [chunk(8, OVERSIZED_BYTES)],
        `Exchange into rank ${rank}, oversized`,
      ),
    );
  calls.push(
    stream(c.reduction, 'reduce', undefined, [chunk(8, OVERSIZED_BYTES)], 'Reduce, oversized'),
  );
  calls.push(
    new Promise<HostileAnswer>((resolve) => {
      const join = (c.coordinator as unknown as Record<string, (...a: unknown[]) => void>).join;
      join.call(
        c.coordinator,
        { worker_id: 'x'.repeat(OVERSIZED_BYTES) },
        new Metadata(),
        (error: { code: number } | null) =>
          resolve({
            call: 'Join, oversized, no token',
            code: error ? error.code : status.OK,
            received: error ? 0 : 1,
          }),
      );
    }),
  );
  const answers = await Promise.all(calls);
  for (const client of [c.coordinator, c.reduction, ...c.peers]) client.close();
  return answers;
}
