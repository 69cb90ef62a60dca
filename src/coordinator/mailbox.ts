/**
 * Replies keyed by a number (a step, an evaluation id) that may arrive before or after
 * someone waits for them. One value per key; after fail() every pending and later take()
 * rejects with that error.
 */
export class Mailbox<T> {
  private readonly items = new Map<number, T>();
  private readonly waiters = new Map<
    number,
    { resolve: (v: T) => void; reject: (e: Error) => void }
  >();
  private failure: Error | undefined;

  /** Delivers `value` for `key`; false when `key` already had one (the sender broke the protocol). */
  put(key: number, value: T): boolean {
    if (this.failure) return true;
    const waiter = this.waiters.get(key);
    if (waiter) {
      this.waiters.delete(key);
      waiter.resolve(value);
      return true;
    }
    if (this.items.has(key)) return false;
    this.items.set(key, value);
    return true;
  }

  /** The value for `key`, now or once it arrives. No deadline here: the caller's group has it. */
  take(key: number): Promise<T> {
    if (this.failure) return Promise.reject(this.failure);
    const value = this.items.get(key);
    if (value !== undefined) {
      this.items.delete(key);
      return Promise.resolve(value);
    }
    return new Promise<T>((resolve, reject) => this.waiters.set(key, { resolve, reject }));
  }

  fail(error: Error): void {
    if (this.failure) return;
    this.failure = error;
    for (const waiter of this.waiters.values()) waiter.reject(error);
    this.waiters.clear();
    this.items.clear();
  }
}
