// The server helper registers the standard health service and server reflection,
// so Kubernetes gRPC probes and grpcurl work against every tfjs-ddp server.
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import {
  credentials,
  type GrpcObject,
  loadPackageDefinition,
  type ServiceClientConstructor,
} from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { protoPath as healthProto } from 'grpc-health-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { StarReductionService } from '../../src/shared/collectives/star-reduction-service.js';
import { UserError } from '../../src/shared/errors.js';
import { type RunningGrpcServer, startGrpcServer } from '../../src/shared/transport/grpc-server.js';
import { PeerService } from '../../src/shared/transport/peer-service.js';

const require = createRequire(import.meta.url);
const reflectionProto = `${dirname(require.resolve('@grpc/reflection'))}/../proto/grpc/reflection/v1/reflection.proto`;

function serviceClient(protoFile: string, path: string[], address: string) {
  let node = loadPackageDefinition(
    loadSync(protoFile, { keepCase: true, enums: String }),
  ) as GrpcObject;
  for (const name of path.slice(0, -1)) node = node[name] as GrpcObject;
  const Client = node[path[path.length - 1]] as ServiceClientConstructor;
  return new Client(address, credentials.createInsecure());
}

let server: RunningGrpcServer;
let address: string;

beforeAll(async () => {
  server = await startGrpcServer({
    host: '127.0.0.1',
    services: [new PeerService(), new StarReductionService({ timeoutMs: 1000 })],
  });
  address = `127.0.0.1:${server.port}`;
});

afterAll(() => server.shutdown(100));

it('answers the standard health check for the server and each service', async () => {
  const health = serviceClient(healthProto, ['grpc', 'health', 'v1', 'Health'], address);
  const check = (service: string) =>
    new Promise<{ status?: string; code?: number }>((resolve) =>
      health.Check({ service }, (err: { code: number } | null, res: { status: string }) =>
        resolve(err ? { code: err.code } : { status: res.status }),
      ),
    );
  expect(await check('')).toEqual({ status: 'SERVING' });
  expect(await check('tfjs_ddp.v1.PeerService')).toEqual({ status: 'SERVING' });
  expect(await check('tfjs_ddp.v1.ReductionService')).toEqual({ status: 'SERVING' });
  expect(await check('no.such.Service')).toEqual({ code: 5 /* NOT_FOUND */ });
  health.close();
});

it('lists its services and serves their descriptors through reflection', async () => {
  const reflection = serviceClient(
    reflectionProto,
    ['grpc', 'reflection', 'v1', 'ServerReflection'],
    address,
  );
  const call = reflection.ServerReflectionInfo();
  const responses: Record<string, unknown>[] = [];
  const done = new Promise<void>((resolve) => {
    call.on('data', (r: Record<string, unknown>) => {
      responses.push(r);
      if (responses.length === 2) resolve();
    });
  });
  call.write({ list_services: '*' });
  call.write({ file_containing_symbol: 'tfjs_ddp.v1.PeerService' });
  await done;
  call.end();
  reflection.close();
  const listed = (
    responses[0].list_services_response as { service: { name: string }[] }
  ).service.map((s) => s.name);
  // Only what this server serves: no CoordinatorService here.
  expect(listed.sort()).toEqual([
    'grpc.health.v1.Health',
    'tfjs_ddp.v1.PeerService',
    'tfjs_ddp.v1.ReductionService',
  ]);
  const files = (responses[1].file_descriptor_response as { file_descriptor_proto: Buffer[] })
    .file_descriptor_proto;
  expect(files.length).toBeGreaterThan(0);
  expect(Buffer.concat(files).toString('latin1')).toContain('PeerService');
});

it('reports a port it cannot bind as a UserError naming the address', async () => {
  await expect(
    startGrpcServer({ host: '127.0.0.1', port: server.port, services: [] }),
  ).rejects.toThrow(UserError);
  await expect(
    startGrpcServer({ host: '127.0.0.1', port: server.port, services: [] }),
  ).rejects.toThrow(`127.0.0.1:${server.port}`);
});
