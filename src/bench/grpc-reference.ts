import {
  credentials,
  makeGenericClientConstructor,
  Server,
  ServerCredentials,
  type ServerWritableStream,
} from '@grpc/grpc-js';
import { channelOptions, serverOptions } from '../shared/transport/grpc-settings.js';
import { BenchChild } from './bench-child.js';
import { type BenchHost, benchAddress, LOOPBACK } from './bench-host.js';

/** grpc-js alone between two processes, each round's rate in MB/s (10^6 bytes/s). */
export interface GrpcRounds {
  /** One server stream, one direction. */
  streamMBps: number[];
  /** Each process streaming to the other at once, per direction: a 2-rank ring's traffic. */
  duplexMBps: number[];
}

const MESSAGE_BYTES = 1024 * 1024;
const identity = (b: Buffer) => b;
/** A server-streaming method that sends the requested number of bytes in 1 MiB messages. */
const PULL = {
  pull: {
    path: '/tfjs_ddp.bench.Bytes/Pull',
    requestStream: false,
    responseStream: true,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  },
};
const PullClient = makeGenericClientConstructor(PULL, 'Bytes');

type PeerMessage =
  | { type: 'listening'; port: number }
  | { type: 'pulled' }
  | { type: 'failed'; message: string };
type PeerCommand = { type: 'pull'; address: string; port: number; bytes: number };

/**
 * The ceiling of any all-reduce over grpc-js here: the same channel and server
 * options as the transport, messages that need no encoding (identity serializers,
 * one reused 1 MiB buffer) and no work on arrival, between two child processes
 * (`bench grpc-peer`, started like the ranks, on `hosts`): `rounds` rounds of `bytes` one
 * way, then as many with each pulling from the other at once.
 */
export async function measureGrpcRounds(
  bytes: number,
  rounds: number,
  nodeFlags: readonly string[] = [],
  hosts: readonly [BenchHost, BenchHost] = [LOOPBACK, LOOPBACK],
): Promise<GrpcRounds> {
  const peers = hosts.map(
    (host, i) =>
      new BenchChild<PeerMessage, PeerCommand>(
        `gRPC peer ${i}`,
        ['bench', 'grpc-peer'],
        nodeFlags,
        host,
      ),
  );
  try {
    const ports = await Promise.all(
      peers.map(async (peer) => {
        const hello = await peer.next(30_000, 'its port');
        if (hello.type !== 'listening') throw new Error(`${peer.label}: ${describe(hello)}`);
        return hello.port;
      }),
    );
    const round = async (duplex: boolean) => {
      const pulling = duplex ? [0, 1] : [0];
      const start = performance.now();
      for (const i of pulling)
        peers[i].send({ type: 'pull', address: hosts[1 - i].address, port: ports[1 - i], bytes });
      for (const i of pulling) {
        const done = await peers[i].next(120_000, 'the end of a round');
        if (done.type !== 'pulled') throw new Error(`${peers[i].label}: ${describe(done)}`);
      }
      return bytes / ((performance.now() - start) / 1000) / 1e6;
    };
    const streamMBps: number[] = [];
    const duplexMBps: number[] = [];
    for (let r = 0; r < rounds; r++) streamMBps.push(await round(false));
    for (let r = 0; r < rounds; r++) duplexMBps.push(await round(true));
    return { streamMBps, duplexMBps };
  } finally {
    for (const peer of peers) peer.kill();
    await Promise.all(peers.map((peer) => peer.exited));
  }
}

/** The child side (`bench grpc-peer`): serves bytes, and pulls from the other peer when asked. */
export async function runGrpcPeer(): Promise<void> {
  if (!process.send) throw new Error('bench grpc-peer runs only as a child of bench allreduce');
  const tell = (m: PeerMessage) => process.send?.(m);
  process.on('disconnect', () => process.exit(0));
  const { port } = await serveBytes();
  process.on('message', (m: PeerCommand) => {
    pull(m.address, m.port, m.bytes).then(
      () => tell({ type: 'pulled' }),
      (e: Error) => tell({ type: 'failed', message: e.message }),
    );
  });
  tell({ type: 'listening', port });
}

async function serveBytes(): Promise<{ server: Server; port: number }> {
  const server = new Server(serverOptions());
  const block = Buffer.alloc(MESSAGE_BYTES, 0x5a);
  server.addService(PULL, {
    pull: async (call: ServerWritableStream<Buffer, Buffer>) => {
      for (let left = call.request.readUInt32LE(0); left > 0; left -= block.length) {
        const part = left >= block.length ? block : block.subarray(0, left);
        if (!call.write(part)) await new Promise((resolve) => call.once('drain', resolve));
      }
      call.end();
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${benchAddress()}:0`, ServerCredentials.createInsecure(), (e, p) =>
      e ? reject(e) : resolve(p),
    ),
  );
  return { server, port };
}

function pull(address: string, port: number, bytes: number): Promise<void> {
  const client = new PullClient(
    `${address}:${port}`,
    credentials.createInsecure(),
    channelOptions(),
  );
  const request = Buffer.alloc(4);
  request.writeUInt32LE(bytes, 0);
  return new Promise<void>((resolve, reject) => {
    let received = 0;
    const call = client.pull(request);
    call.on('data', (b: Buffer) => {
      received += b.length;
    });
    call.on('error', reject);
    call.on('end', () => {
      client.close();
      if (received === bytes) resolve();
      else reject(new Error(`received ${received} of ${bytes} bytes`));
    });
  });
}

function describe(m: PeerMessage): string {
  return m.type === 'failed' ? m.message : `unexpected message ${m.type}`;
}
