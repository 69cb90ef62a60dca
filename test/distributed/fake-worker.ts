// Hand-written clients of a real coordinator process: they send exactly what a test says
// (refused joins, wrong fingerprints, malformed messages), not what our worker would send.
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import {
  type ClientDuplexStream,
  credentials,
  loadPackageDefinition,
  Metadata,
  type ServiceError,
  type StatusObject,
} from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import { protoPath as healthProto } from 'grpc-health-check';
import {
  type ControlRequest,
  type ControlResponse,
  CoordinatorServiceClient,
  type JoinRequest,
  type JoinResponse,
} from '../../src/gen/tfjs_ddp/v1/coordinator.js';
import { CREDENTIAL_METADATA } from '../../src/shared/distributed/call-authenticator.js';
import {
  architectureFingerprint,
  buildModel,
  type ModelName,
} from '../../src/shared/models/zoo.js';
import { readModelWeights } from '../../src/shared/training/weight-layout.js';
import { weightsFingerprint } from '../../src/shared/training/weights-fingerprint.js';
import { PROTOCOL_VERSION } from '../../src/shared/transport/grpc-settings.js';

export type Command = NonNullable<ControlResponse['kind']>;

/** The architecture and initial-weights fingerprints of `model` built from `seed`. */
export async function modelFingerprints(model: ModelName, seed = 0) {
  await tf.setBackend('cpu');
  const m = buildModel(model, { seed });
  const result = {
    architecture: architectureFingerprint(m),
    weights: weightsFingerprint(readModelWeights(m)),
  };
  m.dispose();
  return result;
}

/** Resolves with the port once the coordinator process logs that it listens. */
export function listeningPort(child: ChildProcessWithoutNullStreams): Promise<number> {
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stderr });
    let log = '';
    lines.on('line', (line) => {
      log += `${line}\n`;
      if (line.includes('coordinator listening'))
        resolve((JSON.parse(line) as { port: number }).port);
    });
    child.once('close', (code) =>
      reject(new Error(`the coordinator exited (${code}) before listening:\n${log.slice(-3000)}`)),
    );
  });
}

export function coordinatorClient(port: number): CoordinatorServiceClient {
  return new CoordinatorServiceClient(`127.0.0.1:${port}`, credentials.createInsecure(), {
    'grpc.max_send_message_length': -1,
  });
}

export function joinRequest(
  base: Partial<JoinRequest> & { architectureFingerprint: string },
): JoinRequest {
  return {
    protocolVersion: PROTOCOL_VERSION,
    modelName: 'lenet5',
    peerAddress: '127.0.0.1:1',
    device: { backend: 'cpu', device: 'test', hostname: 'test', pid: 1 },
    workerId: 'test-worker',
    requestedRank: undefined,
    data: undefined,
    heldReducedStep: false,
    ...base,
  };
}

/** The coordinator's answer to a Join (with `token` in its metadata): its response, or its refusal. */
export function join(
  client: CoordinatorServiceClient,
  request: JoinRequest,
  token?: string,
): Promise<{ response?: JoinResponse; error?: ServiceError }> {
  return new Promise((resolve) =>
    client.join(request, credentialMetadata(token), (error, response) =>
      resolve(error ? { error } : { response }),
    ),
  );
}

/** Call metadata with `credential` (a join token or an issued credential), written by hand. */
export function credentialMetadata(credential: string | undefined): Metadata {
  const metadata = new Metadata();
  if (credential !== undefined) metadata.set(CREDENTIAL_METADATA, credential);
  return metadata;
}

/** grpc.health.v1 status of `service` on the server at `port`. */
export function healthStatus(port: number, service: string): Promise<string> {
  const definition = loadPackageDefinition(loadSync(healthProto, { enums: String })) as unknown as {
    grpc: { health: { v1: { Health: new (a: string, c: unknown) => HealthClient } } };
  };
  const client = new definition.grpc.health.v1.Health(
    `127.0.0.1:${port}`,
    credentials.createInsecure(),
  );
  return new Promise((resolve, reject) =>
    client.check({ service }, (error, answer) => {
      client.close();
      if (error) reject(error);
      else resolve(answer.status);
    }),
  );
}

interface HealthClient {
  check(
    req: { service: string },
    cb: (e: ServiceError | null, r: { status: string }) => void,
  ): void;
  close(): void;
}

/**
 * A joined fake worker's Control stream: commands come out of next() in order; the status the
 * coordinator ends the stream with is in `ended`.
 */
export class FakeControl {
  readonly ended: Promise<StatusObject>;
  private readonly queue: Command[] = [];
  private waiter: ((c: Command) => void) | undefined;

  constructor(
    readonly call: ClientDuplexStream<ControlRequest, ControlResponse>,
    readonly rank: number,
    readonly sessionId: string,
    /** The credential Join issued to this fake. */
    readonly credential: string,
  ) {
    this.ended = new Promise((resolve) => call.on('status', resolve));
    call.on('error', () => undefined);
    call.on('data', (m: ControlResponse) => {
      if (!m.kind) return;
      if (this.waiter) {
        const w = this.waiter;
        this.waiter = undefined;
        w(m.kind);
      } else this.queue.push(m.kind);
    });
    call.write({ kind: { $case: 'hello', value: { rank, sessionId } } });
  }

  next(): Promise<Command> {
    const c = this.queue.shift();
    if (c) return Promise.resolve(c);
    return new Promise((resolve) => {
      this.waiter = resolve;
    });
  }

  send(kind: NonNullable<ControlRequest['kind']>): void {
    this.call.write({ kind });
  }

  /**
   * Answers commands like a worker that trains nothing: fingerprints from `fingerprintOf`,
   * step metrics that account for every sample. Resolves with the Stop's error.
   */
  async serve(fingerprintOf: (step: number) => string): Promise<string> {
    for (;;) {
      const c = await this.next();
      if (c.$case === 'stop') return c.value.error;
      if (c.$case === 'initializeWeights') {
        this.send({
          $case: 'fingerprint',
          value: { step: 0, fingerprint: fingerprintOf(0), generation: 1 },
        });
      } else if (c.$case === 'fingerprint') {
        this.send({
          $case: 'fingerprint',
          value: { step: c.value.step, fingerprint: fingerprintOf(c.value.step), generation: 1 },
        });
      } else if (c.$case === 'stepPlan') {
        const p = c.value;
        this.send({
          $case: 'stepMetrics',
          value: {
            step: p.step,
            epoch: p.epoch,
            loss: 2.3,
            correct: 0,
            count: p.sampleIndices.length,
            timings: undefined,
            skipped: false,
            skipReason: '',
            generation: 1,
          },
        });
      }
    }
  }
}

/** Joins `count` fake workers and opens their Control streams (with the credentials issued). */
export async function joinFakes(
  client: CoordinatorServiceClient,
  architectureFingerprint: string,
  count: number,
  token?: string,
): Promise<FakeControl[]> {
  const fakes: FakeControl[] = [];
  for (let rank = 0; rank < count; rank++) {
    const { response, error } = await join(
      client,
      joinRequest({ architectureFingerprint, workerId: `fake-${rank}`, requestedRank: rank }),
      token,
    );
    if (!response) throw error;
    const control = client.control(credentialMetadata(response.credential));
    fakes.push(new FakeControl(control, response.rank, response.sessionId, response.credential));
  }
  return fakes;
}
