// A real coordinator and a real worker list, through gRPC server reflection and the health
// service, exactly the services they serve: each listed service answers its calls, each
// service of the protocol left out answers UNIMPLEMENTED (as a listed one used to).
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import {
  Client,
  credentials,
  type GrpcObject,
  loadPackageDefinition,
  type ServiceClientConstructor,
  type ServiceError,
  status,
} from '@grpc/grpc-js';
import { loadSync, type MethodDefinition, type ServiceDefinition } from '@grpc/proto-loader';
import { protoPath as healthProto } from 'grpc-health-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, ROOT, startCli } from '../cli/run-cli.js';

const require = createRequire(import.meta.url);
const reflectionProto = join(
  dirname(require.resolve('@grpc/reflection')),
  '../proto/grpc/reflection/v1/reflection.proto',
);
const protocol = loadSync(
  ['coordinator.proto', 'peer.proto', 'reduction.proto'].map((f) => join('tfjs_ddp/v1', f)),
  { includeDirs: [join(ROOT, 'proto')] },
);
// Messages and enums carry a 'format'; services are maps of methods.
const PROTOCOL_SERVICES = Object.keys(protocol).filter((name) => !('format' in protocol[name]));

let coordinator: ChildProcessWithoutNullStreams;
let worker: ChildProcessWithoutNullStreams;
let coordinatorPort: number;
let workerPort: number;

/** Resolves with the first match of `pattern` in the JSON log lines' messages on stderr. */
function logMatch(
  child: ChildProcessWithoutNullStreams,
  pattern: RegExp,
): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let log = '';
    createInterface({ input: child.stderr }).on('line', (line) => {
      log += `${line}\n`;
      const match = line.startsWith('{') ? pattern.exec(JSON.parse(line).msg) : null;
      if (match) resolve(match);
    });
    child.once('close', (code) => reject(new Error(`exited (${code}) before ${pattern}:\n${log}`)));
  });
}

beforeAll(async () => {
  await ensureBuilt();
  // A world of two with one worker: both wait for the second, their servers up.
  coordinator = startCli([
    'coordinator',
    '--world-size',
    '2',
    '--port',
    '0',
    '--bind-host',
    '127.0.0.1',
    '--model',
    'lenet5',
    '--dataset',
    'synthetic',
    '--steps',
    '1',
    '--backend',
    'cpu',
    '--join-timeout',
    '120',
  ]);
  coordinatorPort = Number((await logMatch(coordinator, /listening on [^:]+:(\d+)/))[1]);
  worker = startCli([
    'worker',
    '--coordinator',
    `127.0.0.1:${coordinatorPort}`,
    '--peer-port',
    '0',
    '--bind-host',
    '127.0.0.1',
    '--advertise-host',
    '127.0.0.1',
    '--backend',
    'cpu',
    '--model',
    'lenet5',
  ]);
  workerPort = Number((await logMatch(worker, /peers reach it at [^:]+:(\d+)/))[1]);
}, 240_000);

afterAll(async () => {
  for (const child of [worker, coordinator]) {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await once(child, 'close');
    }
  }
});

function client(proto: string, path: string[], port: number) {
  let node = loadPackageDefinition(
    loadSync(proto, { keepCase: true, enums: String }),
  ) as GrpcObject;
  for (const name of path.slice(0, -1)) node = node[name] as GrpcObject;
  const Constructor = node[path.at(-1) as string] as ServiceClientConstructor;
  return new Constructor(`127.0.0.1:${port}`, credentials.createInsecure());
}

/** The service names the server at `port` lists through reflection (grpc.reflection.v1). */
async function reflectedServices(port: number): Promise<string[]> {
  const reflection = client(
    reflectionProto,
    ['grpc', 'reflection', 'v1', 'ServerReflection'],
    port,
  );
  const call = reflection.ServerReflectionInfo();
  const answered = once(call, 'data');
  call.write({ list_services: '*' });
  const [response] = (await answered) as [
    { list_services_response: { service: { name: string }[] } },
  ];
  call.end();
  reflection.close();
  return response.list_services_response.service.map((s) => s.name).sort();
}

function healthOf(port: number, service: string): Promise<string> {
  const health = client(healthProto, ['grpc', 'health', 'v1', 'Health'], port);
  return new Promise((resolve) =>
    health.Check({ service }, (err: ServiceError | null, res: { status: string }) => {
      health.close();
      resolve(err ? status[err.code] : res.status);
    }),
  );
}

/**
 * The status code of a call of the first method of `service` with an empty message (or an
 * empty stream) and a 3 s deadline: UNIMPLEMENTED when the server does not serve it.
 */
function firstMethodStatus(port: number, service: string): Promise<string> {
  const definition = protocol[service] as ServiceDefinition;
  const method = Object.values(definition)[0] as MethodDefinition<object, object>;
  const raw = new Client(`127.0.0.1:${port}`, credentials.createInsecure());
  const bytes = (b: Buffer) => b;
  const options = { deadline: Date.now() + 3000 };
  return new Promise((resolve) => {
    const done = (err: ServiceError | null) => {
      raw.close();
      resolve(status[err?.code ?? status.OK]);
    };
    if (!method.requestStream && !method.responseStream) {
      raw.makeUnaryRequest(method.path, bytes, bytes, Buffer.alloc(0), options, done);
      return;
    }
    const call = method.requestStream
      ? method.responseStream
        ? raw.makeBidiStreamRequest(method.path, bytes, bytes, options)
        : raw.makeClientStreamRequest(method.path, bytes, bytes, options, done)
      : raw.makeServerStreamRequest(method.path, bytes, bytes, Buffer.alloc(0), options);
    call.on('data', () => undefined);
    call.on('error', () => undefined);
    call.on('status', (s: { code: number }) => {
      raw.close();
      resolve(status[s.code]);
    });
    if ('end' in call && method.requestStream) call.end();
  });
}

describe.each([
  [
    'coordinator',
    () => coordinatorPort,
    ['tfjs_ddp.v1.CoordinatorService', 'tfjs_ddp.v1.ReductionService'],
  ],
  ['worker', () => workerPort, ['tfjs_ddp.v1.PeerService']],
])('a real %s', (_role, port, serves) => {
  it('lists through reflection only the services it serves, with health', async () => {
    expect(await reflectedServices(port())).toEqual(['grpc.health.v1.Health', ...serves].sort());
  });

  it('reports SERVING for each of them, and NOT_FOUND for the rest of the protocol', async () => {
    expect(await healthOf(port(), '')).toBe('SERVING');
    for (const service of PROTOCOL_SERVICES) {
      expect([service, await healthOf(port(), service)]).toEqual([
        service,
        serves.includes(service) ? 'SERVING' : 'NOT_FOUND',
      ]);
    }
  });

  it('answers calls to what it lists, and UNIMPLEMENTED to the rest of the protocol', async () => {
    expect(PROTOCOL_SERVICES.length).toBe(3);
    for (const service of PROTOCOL_SERVICES) {
      const code = await firstMethodStatus(port(), service);
      expect([service, code === 'UNIMPLEMENTED']).toEqual([service, !serves.includes(service)]);
    }
  });
});
