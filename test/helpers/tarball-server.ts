import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import * as tar from 'tar';
import { writeSyntheticCifar } from './synthetic-cifar.js';

/**
 * Packs a synthetic CIFAR-10 folder the way the official archive is packed
 * (`cifar-10-batches-bin/` inside a .tar.gz) under `work`, and returns its bytes and MD5.
 */
export async function makeCifarTarball(
  work: string,
  opts: { perBatch: number; withTest?: boolean; folder?: string },
): Promise<{ bytes: Buffer; md5: string }> {
  await writeSyntheticCifar(join(work, opts.folder ?? 'cifar-10-batches-bin'), opts);
  const file = join(work, 'cifar-10-binary.tar.gz');
  await tar.c({ gzip: true, file, cwd: work }, [opts.folder ?? 'cifar-10-batches-bin']);
  const bytes = await readFile(file);
  return { bytes, md5: createHash('md5').update(bytes).digest('hex') };
}

/** What the test server does with a request: its path picks a behaviour. */
export type Handler = (res: ServerResponse) => void;

/**
 * An HTTP server on 127.0.0.1 (ephemeral port) that answers each path with its handler
 * (404 otherwise) and counts requests. Call `close()` when done.
 */
export async function startServer(routes: Record<string, Handler>) {
  const requests: string[] = [];
  const server = createServer((req, res) => {
    requests.push(req.url ?? '');
    const handler = routes[req.url ?? ''];
    if (handler) handler(res);
    else res.writeHead(404).end('not found');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: (path: string) => `http://127.0.0.1:${port}${path}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
