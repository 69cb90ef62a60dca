/**
 * The transport thread's entry point (see TransportThread): it owns this worker's peer gRPC
 * server and every collective, so chunks are read, summed and sent while the main thread's
 * backward pass blocks its own event loop.
 */
import { performance } from 'node:perf_hooks';
import { parentPort, workerData } from 'node:worker_threads';
import { credentials, ServerCredentials } from '@grpc/grpc-js';
import type { Collective } from '../../shared/collectives/collective.js';
import { createCollective } from '../../shared/collectives/create-collective.js';
import {
  CallAuthenticator,
  GenerationCredential,
} from '../../shared/distributed/call-authenticator.js';
import { tlsCredentials } from '../../shared/distributed/security.js';
import { startGrpcServer } from '../../shared/transport/grpc-server.js';
import { PeerService } from '../../shared/transport/peer-service.js';
import {
  type Reply,
  type Request,
  type SharedValues,
  sendError,
  type ThreadStart,
} from './messages.js';

if (!parentPort) throw new Error('thread-main.ts runs as a worker thread (TransportThread) only');
const port = parentPort;
const start = workerData as ThreadStart;

const peerService = new PeerService(start.joinTimeoutMs);
// Only the ring neighbours of the current generation may open a stream here.
const generationCredential = new GenerationCredential();
// Mutual TLS when the worker has it, built here from its PEM text.
const tls = start.tls
  ? tlsCredentials(start.tls)
  : { server: ServerCredentials.createInsecure(), channel: credentials.createInsecure() };
const reply = (message: Reply) => port.postMessage(message);
const server = await startGrpcServer({
  host: start.bindHost,
  port: start.peerPort,
  services: [peerService],
  // The ring's clients ping; this server need not.
  settings: { keepaliveTimeMs: 3_600_000 },
  credentials: tls.server,
  authenticator: new CallAuthenticator({
    [peerService.serviceName]: generationCredential.accepted,
  }),
}).catch((error: unknown) => {
  reply({ kind: 'startFailed', error: sendError(error) });
  port.close();
  return undefined;
});

const collectives = new Map<number, Collective>();
let nextCollective = 1;

const view = (v: SharedValues) => new Float32Array(v.buffer, v.byteOffset, v.length);

/** Runs one request; its outcome goes back as 'done' or 'failed' with the collective's stats. */
async function serve(request: Exclude<Request, { kind: 'adopt' | 'forgetGenerations' }>) {
  const collective = 'collective' in request ? collectives.get(request.collective) : undefined;
  try {
    switch (request.kind) {
      case 'create': {
        const created = await createCollective(request.name, {
          ...request.setup,
          peerService,
          credentials: tls.channel,
        });
        const handle = nextCollective++;
        collectives.set(handle, created);
        return reply({ kind: 'done', id: request.id, stats: { ...created.stats }, handle });
      }
      case 'shutdown':
        await Promise.all([...collectives.values()].map((c) => c.close()));
        await server?.shutdown(500);
        reply({ kind: 'done', id: request.id });
        port.close();
        return;
    }
    if (!collective) throw new Error(`no collective ${request.collective} in the transport thread`);
    switch (request.kind) {
      case 'allReduceSum':
        await collective.allReduceSum(view(request.values), {
          compression: request.compression,
          bucket: request.bucket,
          onPeersReady: () =>
            reply({
              kind: 'peersReady',
              id: request.id,
              atMs: performance.timeOrigin + performance.now(),
            }),
        });
        break;
      case 'broadcast':
        await collective.broadcast(view(request.values), request.root);
        break;
      case 'barrier':
        await collective.barrier();
        break;
      case 'close':
        // Kept in the map: a later call gets the closed collective's own error.
        await collective.close();
        break;
    }
    reply({ kind: 'done', id: request.id, stats: { ...collective.stats } });
  } catch (error) {
    reply({
      kind: 'failed',
      id: request.id,
      error: sendError(error),
      stats: collective ? { ...collective.stats } : undefined,
    });
  }
}

if (server) {
  port.on('message', (request: Request) => {
    if (request.kind === 'adopt') generationCredential.adopt(request.credential);
    else if (request.kind === 'forgetGenerations') peerService.forgetGenerations();
    // Requests start in the order they arrive: the order of the collective's operations.
    else void serve(request);
  });
  reply({ kind: 'listening', port: server.port });
}
