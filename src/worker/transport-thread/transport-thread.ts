import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import type { Collective } from '../../shared/collectives/collective.js';
import {
  type CollectiveName,
  createCollective,
} from '../../shared/collectives/create-collective.js';
import type { TransportStats } from '../../shared/transport/transport.js';
import {
  type Listeners,
  type Reply,
  type Request,
  reviveError,
  type SentRequest,
  type ThreadCollectiveSetup,
  type ThreadStart,
} from './messages.js';
import { ThreadCollective } from './thread-collective.js';

/** A request in flight: how its reply settles it. */
interface Pending extends Listeners {
  resolve(reply: Extract<Reply, { kind: 'done' }>): void;
  reject(error: Error): void;
}

/**
 * This worker's transport, in a worker thread of its own (thread-main.ts): its peer gRPC server
 * and the collectives of every generation. tfjs kernels hold the main thread for a whole
 * backward pass; from here the ring's chunks keep moving meanwhile, so a bucket all-reduces while
 * the gradients of earlier layers are still being computed. Operations take their values in
 * shared memory (ThreadCollective), with no copy when the caller's array is already shared.
 */
export class TransportThread {
  /** The port the peer server listens on. */
  readonly port: number;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  /** Why the thread ended before it was shut down (every later call rejects with it). */
  private failure: Error | undefined;

  private constructor(
    private readonly thread: Worker,
    port: number,
  ) {
    this.port = port;
    thread.on('message', (reply: Reply) => this.settle(reply));
    thread.on('error', (error) => this.fail(error));
    thread.on('exit', (code) =>
      this.fail(new Error(`the transport thread exited with code ${code}`)),
    );
  }

  /**
   * Starts the thread and its peer server; rejects with the server's error (a port in use).
   * `entry` is the thread's compiled module (tests running this file from its TypeScript source
   * name dist's).
   */
  static start(
    start: ThreadStart,
    entry = new URL('./thread-main.js', import.meta.url),
  ): Promise<TransportThread> {
    const thread = new Worker(entry, { workerData: start });
    return new Promise((resolve, reject) => {
      const first = (reply: Reply) => {
        thread.off('error', reject);
        if (reply.kind === 'listening') resolve(new TransportThread(thread, reply.port));
        else if (reply.kind === 'startFailed') reject(reviveError(reply.error));
      };
      thread.once('message', first);
      thread.once('error', reject);
    });
  }

  /** The credential the coordinator's Membership announced: the peer server admits it only. */
  adopt(credential: string): void {
    this.thread.postMessage({ kind: 'adopt', credential } satisfies Request);
  }

  /** The coordinator is gone: streams of its generations are refused from now on. */
  forgetGenerations(): void {
    this.thread.postMessage({ kind: 'forgetGenerations' } satisfies Request);
  }

  /**
   * createCollective, in the thread: resolves once every rank of the generation is connected.
   * A world of one connects nothing and receives nothing: its collective stays on this thread,
   * where each operation returns at once instead of making a round trip to the thread.
   */
  async createCollective(name: CollectiveName, setup: ThreadCollectiveSetup): Promise<Collective> {
    if (setup.worldSize === 1) return createCollective(name, setup);
    const { handle, stats } = await this.request({ kind: 'create', name, setup });
    return new ThreadCollective(
      (request, listeners) => this.request(request, listeners),
      handle as number,
      setup,
      stats as TransportStats,
    );
  }

  /** Closes every collective and the peer server, and ends the thread. */
  async shutdown(): Promise<void> {
    if (this.failure) return;
    await this.request({ kind: 'shutdown' }).catch(() => undefined);
    this.failure = new Error('the transport thread was shut down');
    await this.thread.terminate();
  }

  /**
   * Ends the thread at once, without a goodbye: its links drop as a killed process's would (its
   * peers see them lost). Pending and later calls reject.
   */
  async terminate(): Promise<void> {
    this.fail(new Error('the transport thread was terminated'));
    await this.thread.terminate();
  }

  /** Sends `request` and resolves with its 'done' reply (rejects with its error). */
  request(
    request: SentRequest,
    listeners: Listeners = {},
  ): Promise<Extract<Reply, { kind: 'done' }>> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { ...listeners, resolve, reject });
      this.thread.postMessage({ ...request, id } as Request);
    });
  }

  private settle(reply: Reply): void {
    if (!('id' in reply)) return;
    const pending = this.pending.get(reply.id);
    if (!pending) return;
    if (reply.kind === 'peersReady') {
      pending.peersReady?.(reply.atMs - performance.timeOrigin);
      return;
    }
    this.pending.delete(reply.id);
    if (reply.stats) pending.stats?.(reply.stats);
    if (reply.kind === 'done') pending.resolve(reply);
    else pending.reject(reviveError(reply.error));
  }

  private fail(error: Error): void {
    this.failure ??= error;
    for (const pending of this.pending.values()) pending.reject(this.failure);
    this.pending.clear();
  }
}
