// A TCP proxy on loopback that records what the server sends: how the hostile-client tests
// learn, as an eavesdropper on a plain-TCP link would, the credentials a coordinator issued.
import { createConnection, createServer, type Server, type Socket } from 'node:net';

export class RecordingProxy {
  private readonly received: Buffer[] = [];
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  /** Listens on a free loopback port and forwards every connection to 127.0.0.1:`targetPort`. */
  static async start(targetPort: number): Promise<RecordingProxy> {
    let proxy: RecordingProxy | undefined;
    const server = createServer((client) => {
      const upstream = createConnection({ host: '127.0.0.1', port: targetPort });
      for (const s of [client, upstream]) {
        proxy?.sockets.add(s);
        s.on('error', () => {
          client.destroy();
          upstream.destroy();
        });
        s.on('close', () => proxy?.sockets.delete(s));
      }
      upstream.on('data', (data: Buffer) => proxy?.received.push(Buffer.from(data)));
      client.pipe(upstream);
      upstream.pipe(client);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('no port');
    proxy = new RecordingProxy(server, address.port);
    return proxy;
  }

  /**
   * The credentials the server sent so far: every run of exactly 43 base64url characters (a
   * 256-bit secret) in its bytes. Protobuf carries strings as they are, and gRPC compresses
   * nothing by default, so JoinResponse.credential and Membership.credential are there.
   */
  credentials(): string[] {
    const text = Buffer.concat(this.received).toString('latin1');
    return [...new Set(text.match(/(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])/g))];
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
