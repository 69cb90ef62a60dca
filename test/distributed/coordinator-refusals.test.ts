// A real `tfjs-ddp coordinator` process refuses joins and messages that cannot belong to its
// run with the promised gRPC status and a message saying what differs, and keeps serving;
// when the world does not form within --join-timeout it exits with a clear error.
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { type AddressInfo, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join as joinPath } from 'node:path';
import { type ServiceError, status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CoordinatorServiceClient, Split } from '../../src/gen/tfjs_ddp/v1/coordinator.js';
import { PROTOCOL_VERSION } from '../../src/shared/transport/grpc-settings.js';
import { statusAfter } from '../transport/raw-call.js';
import { ensureBuilt, errorLines, startCli } from './cli-runs.js';
import {
  coordinatorClient,
  credentialMetadata,
  healthStatus,
  join,
  joinRequest,
  listeningPort,
  modelFingerprints,
} from './fake-worker.js';

const TOKEN = 's3cret';
/**
 * The refusal tests share one coordinator that must outlive them however slow the machine is
 * (its join timeout is far away; afterAll ends it); the timeout itself is tested on a second one.
 */
const LONG_JOIN_TIMEOUT_S = 600;
const SHORT_JOIN_TIMEOUT_S = 2;
let work: string;
let coordinator: ChildProcessWithoutNullStreams;
let port: number;
let client: CoordinatorServiceClient;
let architecture: string;
let session0: string;
/** The credential Join issued to rank 0. */
let credential0: string;
let coordinatorStderr = '';
/** What the coordinator logged so far (JSON lines). */
const coordinatorLog = () => coordinatorStderr;

/** A real coordinator of a 2-worker lenet5 run whose world never forms unless a test joins. */
function startCoordinator(joinTimeoutS: number, out: string): ChildProcessWithoutNullStreams {
  return startCli(
    [
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
      '2',
      '--batch-size',
      '4',
      '--backend',
      'cpu',
      '--join-timeout',
      String(joinTimeoutS),
      '--out',
      out,
    ],
    { env: { TFJS_DDP_TOKEN: TOKEN } },
  );
}

beforeAll(async () => {
  await ensureBuilt();
  work = await mkdtemp(joinPath(tmpdir(), 'ddp-refusals-'));
  architecture = (await modelFingerprints('lenet5')).architecture;
  coordinator = startCoordinator(LONG_JOIN_TIMEOUT_S, joinPath(work, 'refusals'));
  coordinator.stderr.on('data', (d) => (coordinatorStderr += d));
  port = await listeningPort(coordinator);
  client = coordinatorClient(port);
}, 120_000);

afterAll(async () => {
  client?.close();
  for (const peer of peers) peer.close();
  if (coordinator?.exitCode === null) coordinator.kill('SIGKILL');
  if (work) await rm(work, { recursive: true, force: true });
});

const good = (fields = {}) => joinRequest({ architectureFingerprint: architecture, ...fields });

/**
 * The addresses of live servers standing in for the workers' peer servers: a join refused for
 * want of a rank probes the peer address of each worker that joined but opened no Control
 * stream, and frees the rank of one whose address does not answer.
 */
const peers: Server[] = [];
async function livePeer(): Promise<{ address: string; close(): Promise<void> }> {
  const server = createServer().listen(0, '127.0.0.1');
  peers.push(server);
  await once(server, 'listening');
  return {
    address: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: async () => {
      server.close();
      await once(server, 'close');
    },
  };
}

function refusal(error: ServiceError | undefined): [string, string] {
  return [status[error?.code ?? status.OK], error?.details ?? ''];
}

describe('Join', () => {
  it('refuses a wrong or missing token with UNAUTHENTICATED, before anything else', async () => {
    const wrong = await join(client, good({ modelName: 'vgg16' }), 'guess');
    expect(refusal(wrong.error)).toEqual([
      'UNAUTHENTICATED',
      expect.stringMatching(/^the tfjs-ddp-credential metadata holds no valid credential/),
    ]);
    const missing = await join(client, good({ modelName: 'vgg16' }));
    expect(refusal(missing.error)).toEqual([
      'UNAUTHENTICATED',
      expect.stringMatching(/^this call needs a credential of this run .*--token or --token-file/),
    ]);
  });

  it('refuses another protocol version, model or architecture with FAILED_PRECONDITION saying what differs', async () => {
    const version = await join(client, good({ protocolVersion: PROTOCOL_VERSION + 1 }), TOKEN);
    expect(refusal(version.error)).toEqual([
      'FAILED_PRECONDITION',
      expect.stringMatching(
        `protocol version differs: the worker speaks version ${PROTOCOL_VERSION + 1}, the coordinator ${PROTOCOL_VERSION} `,
      ),
    ]);
    const model = await join(client, good({ modelName: 'baseline' }), TOKEN);
    expect(refusal(model.error)).toEqual([
      'FAILED_PRECONDITION',
      'model differs: the worker has baseline, the coordinator trains lenet5',
    ]);
    const fingerprint = await join(
      client,
      good({ architectureFingerprint: 'f'.repeat(64) }),
      TOKEN,
    );
    expect(refusal(fingerprint.error)).toEqual([
      'FAILED_PRECONDITION',
      expect.stringMatching(
        /^architecture fingerprint of lenet5 differs: the worker's is ffffffffffff…/,
      ),
    ]);
  });

  it('refuses a message over the size limit with RESOURCE_EXHAUSTED', async () => {
    const huge = await join(client, good({ workerId: 'x'.repeat(65 * 1024 * 1024) }), TOKEN);
    expect(huge.error?.code).toBe(status.RESOURCE_EXHAUSTED);
  });

  it('admits a worker with its rank and the run configuration, and refuses the same worker twice', async () => {
    const first = await join(
      client,
      good({ workerId: 'worker-a', peerAddress: (await livePeer()).address }),
      TOKEN,
    );
    expect(first.response).toMatchObject({
      rank: 0,
      worldSize: 2,
      config: { modelName: 'lenet5' },
    });
    session0 = first.response?.sessionId ?? '';
    credential0 = first.response?.credential ?? '';
    expect(credential0).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(credential0).not.toBe(TOKEN);
    const elsewhere = (await livePeer()).address;
    const again = await join(client, good({ workerId: 'worker-a', peerAddress: elsewhere }), TOKEN);
    expect(refusal(again.error)).toEqual([
      'ALREADY_EXISTS',
      'worker id worker-a has already joined (as rank 0)',
    ]);
  });
});

describe('Control, FetchSamples and FetchCheckpoint', () => {
  it('refuses every call without the credential Join issued, with UNAUTHENTICATED and nothing else', async () => {
    for (const metadata of [credentialMetadata(undefined), credentialMetadata(TOKEN)]) {
      const control = await statusAfter(client.control(metadata), [
        { kind: { $case: 'hello', value: { rank: 0, sessionId: session0 } } },
      ]);
      expect([status[control.code], control.received]).toEqual(['UNAUTHENTICATED', []]);
    }
  });

  it('refuses a control stream for an unknown rank, a wrong session, or without a hello', async () => {
    const as0 = () => client.control(credentialMetadata(credential0));
    const unknown = await statusAfter(as0(), [
      { kind: { $case: 'hello', value: { rank: 7, sessionId: session0 } } },
    ]);
    expect([status[unknown.code], unknown.details]).toEqual([
      'INVALID_ARGUMENT',
      'rank 7 is not a rank of this run (join first; ranks admitted: 0)',
    ]);
    const stolen = await statusAfter(as0(), [
      { kind: { $case: 'hello', value: { rank: 0, sessionId: 'not-the-session' } } },
    ]);
    expect(status[stolen.code]).toBe('PERMISSION_DENIED');
    const rude = await statusAfter(as0(), [
      { kind: { $case: 'heartbeat', value: { step: 0, activity: 'x' } } },
    ]);
    expect(status[rude.code]).toBe('INVALID_ARGUMENT');
  });

  it('serves samples to joined workers only, and refuses bad requests with INVALID_ARGUMENT', async () => {
    const fetch = (indices: number[], credential = 'stranger') =>
      new Promise<{ error?: ServiceError; pixels?: Uint8Array }>((resolve) =>
        client.fetchSamples(
          { split: Split.SPLIT_TRAIN, indices },
          credentialMetadata(credential),
          (error, answer) => resolve(error ? { error } : { pixels: answer.pixels }),
        ),
      );
    expect(refusal((await fetch([0])).error)[0]).toBe('UNAUTHENTICATED');
    expect(refusal((await fetch([0, 2000], credential0)).error)).toEqual([
      'INVALID_ARGUMENT',
      'sample 2000 is out of range: the training split has 2000',
    ]);
    expect(refusal((await fetch(new Array(9000).fill(0), credential0)).error)[0]).toBe(
      'INVALID_ARGUMENT',
    );
    expect((await fetch([0, 1999], credential0)).pixels?.length).toBe(2 * 3072);
  });

  it('answers FetchCheckpoint with NOT_FOUND when the run does not resume', async () => {
    const call = client.fetchCheckpoint(
      { rank: 0, sessionId: session0 },
      credentialMetadata(credential0),
    );
    const code = await new Promise<number>((resolve) => {
      call.on('error', (e: ServiceError) => resolve(e.code));
      call.on('data', () => undefined);
    });
    expect(status[code]).toBe('NOT_FOUND');
  });

  it('refuses a join once every rank is taken, with RESOURCE_EXHAUSTED, unless a holder died since its join', async () => {
    // worker-b's process dies after its Join, before its Control stream: its server closes.
    const b = await livePeer();
    const c = await livePeer();
    expect(
      (await join(client, good({ workerId: 'worker-b', peerAddress: b.address }), TOKEN)).response
        ?.rank,
    ).toBe(1);
    const joinC = () => join(client, good({ workerId: 'worker-c', peerAddress: c.address }), TOKEN);
    expect(refusal((await joinC()).error)).toEqual([
      'RESOURCE_EXHAUSTED',
      'the world is full: all 2 ranks are taken',
    ]);
    await b.close();
    expect((await joinC()).response?.rank).toBe(1);
    // The line may reach this process after the answer.
    await expect
      .poll(coordinatorLog)
      .toContain(
        `rank 1 (worker-b) is gone since joining: nothing listens on ${b.address} (ECONNREFUSED); its rank is free again`,
      );
    // worker-a and worker-c answer: a fourth is refused.
    const d = await livePeer();
    const joinD = await join(client, good({ workerId: 'worker-d', peerAddress: d.address }), TOKEN);
    expect(refusal(joinD.error)[0]).toBe('RESOURCE_EXHAUSTED');
    // worker-c's container restarts in place: same address, another process and worker id.
    const again = await join(
      client,
      good({ workerId: 'worker-c2', peerAddress: c.address, requestedRank: 1 }),
      TOKEN,
    );
    expect(again.response?.rank).toBe(1);
    // The line may reach this process after the answer.
    await expect
      .poll(coordinatorLog)
      .toContain(
        `rank 1 (worker-c) is gone since joining: ${c.address} is the address of the worker joining now; its rank is free again`,
      );
  });

  it('kept serving through all of it (health SERVING)', async () => {
    expect(await healthStatus(port, '')).toBe('SERVING');
    expect(await healthStatus(port, 'tfjs_ddp.v1.CoordinatorService')).toBe('SERVING');
  });
});

describe('--join-timeout', () => {
  it('stops the coordinator with a clear error when the world does not form', async () => {
    const lonely = startCoordinator(SHORT_JOIN_TIMEOUT_S, joinPath(work, 'lonely'));
    let stderr = '';
    lonely.stderr.on('data', (d) => (stderr += d));
    const code = await new Promise<number | null>((resolve) => lonely.on('close', resolve));
    expect(code).toBe(3);
    expect(errorLines(stderr).at(-1)).toBe(
      `only 0 of 2 workers joined within the --join-timeout of ${SHORT_JOIN_TIMEOUT_S} s`,
    );
  }, 120_000);
});
