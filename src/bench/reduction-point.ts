import { StarReductionService } from '../shared/collectives/star-reduction-service.js';
import { startGrpcServer } from '../shared/transport/grpc-server.js';
import { benchAddress } from './bench-host.js';

/** What `bench allreduce` tells its star reduction point. */
export type ReductionPointCommand = { type: 'serve'; worldSize: number; timeoutMs: number };
export type ReductionPointMessage =
  | { type: 'listening'; port: number }
  | { type: 'failed'; message: string };

/**
 * The reduction point of `bench allreduce --algo star` (the hidden `bench reduction-point`),
 * in its own process as the coordinator is in training: serves one generation of
 * `worldSize` ranks on its host's address until the parent goes away or kills it.
 */
export async function runReductionPoint(): Promise<void> {
  if (!process.send)
    throw new Error('bench reduction-point runs only as a child of bench allreduce');
  const tell = (m: ReductionPointMessage) => process.send?.(m);
  const order = await new Promise<ReductionPointCommand>((resolve) =>
    process.once('message', resolve),
  );
  // The ranks give up at timeoutMs; the reduction point before them, as in the coordinator.
  const service = new StarReductionService({ timeoutMs: order.timeoutMs / 2 });
  try {
    const server = await startGrpcServer({ host: benchAddress(), services: [service] });
    service.startGeneration(1, order.worldSize);
    process.once('disconnect', () => void server.shutdown(100).then(() => process.exit(0)));
    tell({ type: 'listening', port: server.port });
  } catch (error) {
    tell({ type: 'failed', message: (error as Error).message });
    process.exitCode = 1;
    process.disconnect();
  }
}
