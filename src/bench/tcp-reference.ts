import { connect, createServer, type Socket } from 'node:net';
import { BenchChild } from './bench-child.js';

/** Raw TCP between two processes on this host: each round's rate in MB/s (10^6 bytes/s). */
export interface TcpRounds {
  /** One stream, one direction: the reference that busbw is compared with. */
  streamMBps: number[];
  /** Both directions at once (what each rank of a 2-rank ring does): per direction. */
  duplexMBps: number[];
}

const WRITE_BYTES = 4 * 1024 * 1024;

type PeerMessage =
  | { type: 'listening'; port: number }
  | { type: 'received' }
  | { type: 'failed'; message: string };
type PeerCommand = { type: 'round'; untilBytes: number; sendBytes: number };

/**
 * Measures raw TCP on 127.0.0.1 between this process and a child (`bench
 * tcp-peer`): `rounds` rounds of `bytes` sent in large writes that wait for
 * 'drain' (backpressure), timed until the child has received everything; then as
 * many rounds with both ends sending `bytes` at once. The child is gone when this returns.
 */
export async function measureTcpRounds(
  bytes: number,
  rounds: number,
  nodeFlags: readonly string[] = [],
): Promise<TcpRounds> {
  const peer = new BenchChild<PeerMessage, PeerCommand>(
    'the TCP peer',
    ['bench', 'tcp-peer'],
    nodeFlags,
  );
  try {
    const hello = await peer.next(30_000, 'its port');
    if (hello.type !== 'listening') throw new Error(`the TCP peer: ${describe(hello)}`);
    const socket = connect(hello.port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    socket.setNoDelay(true);
    let received = 0;
    socket.on('data', (d: Buffer) => {
      received += d.length;
    });
    let sent = 0;
    const round = async (duplex: boolean) => {
      const until = received + (duplex ? bytes : 0);
      sent += bytes;
      peer.send({ type: 'round', untilBytes: sent, sendBytes: duplex ? bytes : 0 });
      const start = performance.now();
      await pump(socket, bytes);
      const ack = await peer.next(120_000, 'the end of a round');
      if (ack.type !== 'received') throw new Error(`the TCP peer: ${describe(ack)}`);
      while (received < until) await new Promise((resolve) => socket.once('data', resolve));
      return bytes / ((performance.now() - start) / 1000) / 1e6;
    };
    const stream: number[] = [];
    const duplex: number[] = [];
    for (let r = 0; r < rounds; r++) stream.push(await round(false));
    for (let r = 0; r < rounds; r++) duplex.push(await round(true));
    socket.destroy();
    return { streamMBps: stream, duplexMBps: duplex };
  } finally {
    peer.kill();
    await peer.exited;
  }
}

/** The child side (`bench tcp-peer`): counts what arrives, sends when asked, acks over IPC. */
export async function runTcpPeer(): Promise<void> {
  if (!process.send) throw new Error('bench tcp-peer runs only as a child of bench allreduce');
  const tell = (m: PeerMessage) => process.send?.(m);
  process.on('disconnect', () => process.exit(0));
  let received = 0;
  let target = Number.POSITIVE_INFINITY;
  let socket: Socket | undefined;
  const server = createServer((s) => {
    socket = s;
    s.setNoDelay(true);
    s.on('data', (d: Buffer) => {
      received += d.length;
      if (received >= target) {
        target = Number.POSITIVE_INFINITY;
        tell({ type: 'received' });
      }
    });
  });
  process.on('message', (m: PeerCommand) => {
    target = m.untilBytes;
    if (m.sendBytes > 0 && socket) {
      pump(socket, m.sendBytes).catch((e: Error) => tell({ type: 'failed', message: e.message }));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  tell({ type: 'listening', port: typeof address === 'object' && address ? address.port : 0 });
}

/** Writes `bytes` in WRITE_BYTES writes, waiting for 'drain' whenever the socket is full. */
async function pump(socket: Socket, bytes: number): Promise<void> {
  const block = Buffer.alloc(WRITE_BYTES, 0x5a);
  for (let left = bytes; left > 0; left -= block.length) {
    const part = left >= block.length ? block : block.subarray(0, left);
    if (!socket.write(part)) await new Promise((resolve) => socket.once('drain', resolve));
  }
}

function describe(m: PeerMessage): string {
  return m.type === 'failed' ? m.message : `unexpected message ${m.type}`;
}
