// Hand-written clients for the refusal tests: they send exactly what a test says,
// not what our transports would send.
import type { ServiceError, StatusObject } from '@grpc/grpc-js';

interface RawStream<Req> {
  write(message: Req): boolean;
  end(): void;
  on(event: 'status', listener: (status: StatusObject) => void): unknown;
  on(event: 'error', listener: (error: ServiceError) => void): unknown;
  on(event: 'data', listener: (message: unknown) => void): unknown;
}

/**
 * Writes `messages` on `call` and resolves with the status the server ends the
 * call with (and the messages it sent before), or rejects after `ms`.
 */
export function statusAfter<Req>(
  call: RawStream<Req>,
  messages: Req[],
  ms = 5000,
): Promise<StatusObject & { received: unknown[] }> {
  const received: unknown[] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no status within ${ms} ms`)), ms);
    call.on('data', (m) => received.push(m));
    call.on('error', () => {});
    call.on('status', (status) => {
      clearTimeout(timer);
      resolve({ ...status, received });
    });
    for (const m of messages) call.write(m);
  });
}
