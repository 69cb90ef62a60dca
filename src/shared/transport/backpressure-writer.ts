import { DeadlineExceededError } from './errors.js';

/** The part of a Node writable (object-mode) stream the writer uses. */
export interface MessageSink<T> {
  /** `written` runs once the message has left the stream (grpc-js: handed to the HTTP/2 session). */
  write(message: T, written: (error?: Error | null) => void): boolean;
  once(event: 'drain', listener: () => void): unknown;
  removeListener(event: 'drain', listener: () => void): unknown;
}

/**
 * Writes messages to a stream in call order, respecting its backpressure: when
 * write() returns false the next message waits for 'drain' (grpc-js buffers
 * without limit otherwise), each wait bounded by its deadline. flushed() tells
 * when everything written has left the process.
 */
export class BackpressureWriter<T> {
  private tail: Promise<void> = Promise.resolve();
  private failure: Error | undefined;
  private rejectDrain: ((error: Error) => void) | undefined;
  /** Messages handed to the stream whose `written` callback has not run yet. */
  private unflushed = 0;
  private readonly flushWaiters = new Set<(error?: Error) => void>();

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

  /**
   * Resolves once every message accepted so far has left the stream's buffers.
   * Node writes a stream's data to the socket from the event loop, so a process
   * that is about to block its loop (a training step on a CPU backend) must wait
   * for this first: otherwise its last messages sit in the process until the step
   * ends, and the peer waiting for them waits that long too. Rejects with
   * DeadlineExceededError after `timeoutMs` (the reader stopped reading), or with
   * the stream's failure.
   */
  flushed(timeoutMs: number): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.unflushed === 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const done = (error?: Error) => {
        clearTimeout(timer);
        this.flushWaiters.delete(done);
        if (error) reject(error);
        else resolve();
      };
      const timer = setTimeout(() => {
        const error = new DeadlineExceededError(
          `${this.self} timed out after ${timeoutMs} ms waiting for its messages to ${this.peer} to leave: ${this.peer} stopped reading`,
        );
        this.failure ??= error;
        done(error);
      }, timeoutMs);
      this.flushWaiters.add(done);
    });
  }

  /** Fails the pending and all later writes with `error` (the first failure wins). */
  fail(error: Error): void {
    this.failure ??= error;
    this.rejectDrain?.(this.failure);
    for (const waiter of [...this.flushWaiters]) waiter(this.failure);
  }

  private onWritten(): void {
    this.unflushed -= 1;
    if (this.unflushed > 0) return;
    for (const waiter of [...this.flushWaiters]) waiter();
  }

  private writeNow(message: T, timeoutMs: number): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    this.unflushed += 1;
    // A write that fails reports it on the stream's 'error' event as well: the
    // failure reaches the caller from there.
    if (this.sink.write(message, () => this.onWritten())) return Promise.resolve();
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
