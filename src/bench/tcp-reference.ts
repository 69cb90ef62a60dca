import { connect, createServer, type Socket } from 'node:net';
import { BenchChild } from './bench-child.js';
import { type BenchHost, benchAddress, LOOPBACK } from './bench-host.js';

/** Raw TCP between two processes: each round's rate in MB/s (10^6 bytes/s). */
export interface TcpRounds {
  /** One stream, one direction: the reference that busbw is compared with. */
  streamMBps: number[];
  /** Both directions at once (what each rank of a 2-rank ring does): per direction. */
  duplexMBps: number[];
}

const WRITE_BYTES = 4 * 1024 * 1024;

type PeerMessage =
  | { type: 'listening'; port: number }
  | { type: 'connected' }
  /** When this peer began to send a round / had received all of it (clock: wallClockMs). */
  | { type: 'started'; atMs: number }
  | { type: 'received'; atMs: number }
  | { type: 'failed'; message: string };
type PeerCommand =
  | { type: 'connect'; address: string; port: number }
  /** Send `sendBytes` now; say 'received' once `untilBytes` have arrived in all (0: none expected). */
  | { type: 'round'; untilBytes: number; sendBytes: number };

/**
 * Measures raw TCP between two child processes (`bench tcp-peer`) on `hosts` (loopback
 * by default; two hosts of an EmulatedNetwork to measure its links): `rounds` rounds
 * in which one sends `bytes` to the other in large writes that wait for 'drain'
 * (backpressure), timed from the sender's first write until the receiver has everything;
 * then as many rounds with both sending `bytes` at once. The peers take the times
 * themselves, so that the delivery of the orders and acks, which waits for a core on a
 * busy machine, does not count. The children are gone when this returns.
 */
export async function measureTcpRounds(
  bytes: number,
  rounds: number,
  nodeFlags: readonly string[] = [],
  hosts: readonly [BenchHost, BenchHost] = [LOOPBACK, LOOPBACK],
): Promise<TcpRounds> {
  const peers = hosts.map(
    (host, i) =>
      new BenchChild<PeerMessage, PeerCommand>(
        `TCP peer ${i}`,
        ['bench', 'tcp-peer'],
        nodeFlags,
        host,
      ),
  );
  const expect = async (peer: BenchChild<PeerMessage, PeerCommand>, type: string, what: string) => {
    const m = await peer.next(120_000, what);
    if (m.type !== type) throw new Error(`${peer.label}: ${describe(m)}`);
    return m;
  };
  try {
    const [server] = await Promise.all(peers.map((p) => expect(p, 'listening', 'its port')));
    const port = (server as { port: number }).port;
    peers[1].send({ type: 'connect', address: hosts[0].address, port });
    await expect(peers[1], 'connected', 'its connection');
    const received = [0, 0];
    const round = async (duplex: boolean) => {
      const senders = duplex ? [0, 1] : [1];
      for (const [i, peer] of peers.entries()) {
        const receives = senders.includes(1 - i);
        if (receives) received[i] += bytes;
        peer.send({
          type: 'round',
          untilBytes: receives ? received[i] : 0,
          sendBytes: senders.includes(i) ? bytes : 0,
        });
      }
      // A peer says 'started' before 'received' (runTcpPeer sends first).
      const starts = await Promise.all(
        senders.map((s) => expect(peers[s], 'started', 'the start of a round')),
      );
      const ends = await Promise.all(
        senders.map((s) => expect(peers[1 - s], 'received', 'the end of a round')),
      );
      const ms = Math.max(...ends.map(atMs)) - Math.min(...starts.map(atMs));
      return bytes / (ms / 1000) / 1e6;
    };
    const stream: number[] = [];
    const duplex: number[] = [];
    for (let r = 0; r < rounds; r++) stream.push(await round(false));
    for (let r = 0; r < rounds; r++) duplex.push(await round(true));
    return { streamMBps: stream, duplexMBps: duplex };
  } finally {
    for (const peer of peers) peer.kill();
    await Promise.all(peers.map((peer) => peer.exited));
  }
}

/**
 * The child side (`bench tcp-peer`): listens on its host's address; connects to the other
 * peer when told; counts what arrives, sends when asked, and says when a round's bytes are in.
 */
export async function runTcpPeer(): Promise<void> {
  if (!process.send) throw new Error('bench tcp-peer runs only as a child of bench allreduce');
  const tell = (m: PeerMessage) => process.send?.(m);
  process.on('disconnect', () => process.exit(0));
  let received = 0;
  let target = Number.POSITIVE_INFINITY;
  let socket: Socket | undefined;
  const arrived = (n: number) => {
    received += n;
    if (received >= target) {
      target = Number.POSITIVE_INFINITY;
      tell({ type: 'received', atMs: wallClockMs() });
    }
  };
  const use = (s: Socket) => {
    socket = s;
    s.setNoDelay(true);
    s.on('data', (d: Buffer) => arrived(d.length));
  };
  const server = createServer(use);
  process.on('message', (m: PeerCommand) => {
    if (m.type === 'connect') {
      const s = connect(m.port, m.address, () => tell({ type: 'connected' }));
      s.once('error', (e) => tell({ type: 'failed', message: e.message }));
      use(s);
      return;
    }
    if (m.sendBytes > 0) {
      if (!socket) return tell({ type: 'failed', message: 'asked to send before a connection' });
      tell({ type: 'started', atMs: wallClockMs() });
      pump(socket, m.sendBytes).catch((e: Error) => tell({ type: 'failed', message: e.message }));
    }
    // Bytes may arrive before the order that expects them.
    if (m.untilBytes > 0) {
      target = m.untilBytes;
      arrived(0);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, benchAddress(), resolve));
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

/** Milliseconds on a clock that all processes of this machine share (sub-millisecond). */
function wallClockMs(): number {
  return performance.timeOrigin + performance.now();
}

function atMs(m: PeerMessage): number {
  return (m as { atMs: number }).atMs;
}

function describe(m: PeerMessage): string {
  return m.type === 'failed' ? m.message : `unexpected message ${m.type}`;
}
