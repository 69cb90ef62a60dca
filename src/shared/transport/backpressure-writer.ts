import { DeadlineExceededError } from './errors.js';

/** The part of a Node writable (object-mode) stream the writer uses. */
export interface MessageSink<T> {
  write(message: T): boolean;
  once(event: 'drain', listener: () => void): unknown;
  removeListener(event: 'drain', listener: () => void): unknown;
}

/**
 * Writes messages to a stream in call order, respecting its backpressure: when
 * write() returns false the next message waits for 'drain' (grpc-js buffers
 * without limit otherwise), each wait bounded by its deadline.
 */
export class BackpressureWriter<T> {
  private tail: Promise<void> = Promise.resolve();
  private failure: Error | undefined;
  private rejectDrain: ((error: Error) => void) | undefined;

  /** @param self and @param peer name the writer and the reader in messages ("rank 1") */
  constructor(
    private readonly sink: MessageSink<T>,
    private readonly self: string,
    private readonly peer: string,
  ) {}

  /**
   * Resolves once the stream accepted `message` and has room for the next one.
   * Rejects with DeadlineExceededError when the stream stays full for `timeoutMs`
   * (the reader stalled); after any failure every write rejects with it.
   */
  write(message: T, timeoutMs: number): Promise<void> {
    const result = this.tail.then(() => this.writeNow(message, timeoutMs));
    this.tail = result.catch(() => undefined);
    return result;
  }

  /** Fails the pending and all later writes with `error` (the first failure wins). */
  fail(error: Error): void {
    this.failure ??= error;
    this.rejectDrain?.(this.failure);
  }

  private writeNow(message: T, timeoutMs: number): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.sink.write(message)) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const done = (error?: Error) => {
        clearTimeout(timer);
        this.sink.removeListener('drain', onDrain);
        this.rejectDrain = undefined;
        if (error) reject(error);
        else resolve();
      };
      const onDrain = () => done();
      const timer = setTimeout(() => {
        const error = new DeadlineExceededError(
          `${this.self} timed out after ${timeoutMs} ms waiting for ${this.peer} to read: the stream stayed full`,
        );
        this.failure ??= error;
        done(error);
      }, timeoutMs);
      this.rejectDrain = done;
      this.sink.once('drain', onDrain);
    });
  }
}
