import type {
  AllReduceOptions,
  Collective,
  CollectiveMembership,
} from '../../shared/collectives/collective.js';
import type { TransportStats } from '../../shared/transport/transport.js';
import type { Listeners, SentRequest, SharedValues } from './messages.js';

/** How a ThreadCollective reaches its thread (TransportThread.request). */
export type SendRequest = (request: SentRequest, listeners: Listeners) => Promise<unknown>;

/**
 * One generation's collective, run by the transport thread: each call becomes a request, in call
 * order (the thread starts them in the order they arrive, which keeps the collective's sequence
 * numbers). A Float32Array over a SharedArrayBuffer travels as it is, with no copy (the
 * gradient); any other is copied into shared memory and back.
 */
export class ThreadCollective implements Collective {
  readonly rank: number;
  readonly worldSize: number;
  readonly generation: number;
  private current: TransportStats;

  constructor(
    private readonly send: SendRequest,
    private readonly handle: number,
    membership: CollectiveMembership,
    stats: TransportStats,
  ) {
    this.rank = membership.rank;
    this.worldSize = membership.worldSize;
    this.generation = membership.generation;
    this.current = stats;
  }

  get stats(): TransportStats {
    return this.current;
  }

  allReduceSum(data: Float32Array, opts: AllReduceOptions = {}): Promise<void> {
    return this.withShared(data, (values, listeners) =>
      this.send(
        {
          kind: 'allReduceSum',
          collective: this.handle,
          values,
          compression: opts.compression,
          bucket: opts.bucket,
        },
        { ...listeners, peersReady: opts.onPeersReady },
      ),
    );
  }

  broadcast(data: Float32Array, root: number): Promise<void> {
    return this.withShared(data, (values, listeners) =>
      this.send({ kind: 'broadcast', collective: this.handle, values, root }, listeners),
    );
  }

  async barrier(): Promise<void> {
    await this.send({ kind: 'barrier', collective: this.handle }, this.listeners());
  }

  async close(): Promise<void> {
    await this.send({ kind: 'close', collective: this.handle }, this.listeners())
      // A thread that is gone has closed everything already.
      .catch(() => undefined);
  }

  private listeners(): Listeners {
    return { stats: (stats) => (this.current = stats) };
  }

  /** Runs `op` on `data` in shared memory, copying it there and back unless it is shared already. */
  private async withShared(
    data: Float32Array,
    op: (values: SharedValues, listeners: Listeners) => Promise<unknown>,
  ): Promise<void> {
    if (data.buffer instanceof SharedArrayBuffer) {
      await op(
        { buffer: data.buffer, byteOffset: data.byteOffset, length: data.length },
        this.listeners(),
      );
      return;
    }
    const shared = new Float32Array(new SharedArrayBuffer(data.byteLength));
    shared.set(data);
    await op({ buffer: shared.buffer, byteOffset: 0, length: data.length }, this.listeners());
    data.set(shared);
  }
}
