// What the coordinator does with what replicas report, driven by fake workers over real gRPC:
// weights that differ (at the start, or after step K) stop the run naming the workers and
// the step; a gradient of the wrong length reaching the star reduction point is refused with
// INVALID_ARGUMENT while the server keeps serving. No test hook: the fakes send these messages.
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, status } from '@grpc/grpc-js';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CollectiveOp, Encoding, Phase } from '../../src/gen/tfjs_ddp/v1/collective.js';
import { Split } from '../../src/gen/tfjs_ddp/v1/coordinator.js';
import { type ReduceRequest, ReductionServiceClient } from '../../src/gen/tfjs_ddp/v1/reduction.js';
import { PROTOCOL_VERSION } from '../../src/shared/transport/grpc-settings.js';
import { statusAfter } from '../transport/raw-call.js';
import { ensureBuilt, errorLines, startCli } from './cli-runs.js';
import {
  coordinatorClient,
  credentialMetadata,
  healthStatus,
  joinFakes,
  listeningPort,
  modelFingerprints,
} from './fake-worker.js';

let fingerprints: { architecture: string; weights: string };
const started: ChildProcessWithoutNullStreams[] = [];
const folders: string[] = [];

beforeAll(async () => {
  await ensureBuilt();
  fingerprints = await modelFingerprints('lenet5');
}, 120_000);

afterEach(async () => {
  for (const c of started.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
  for (const f of folders.splice(0)) await rm(f, { recursive: true, force: true });
});

async function startCoordinator(extra: string[]) {
  const out = await mkdtemp(join(tmpdir(), 'ddp-replica-checks-'));
  folders.push(out);
  const child = startCli([
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
    '6',
    '--batch-size',
    '4',
    '--backend',
    'cpu',
    '--step-timeout',
    '20',
    '--out',
    out,
    ...extra,
  ]);
  started.push(child);
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) =>
    child.on('close', (code) => resolve(code)),
  );
  const port = await listeningPort(child);
  return { port, exited, stderr: () => stderr, client: coordinatorClient(port) };
}

const A = 'a'.repeat(64);
const B = 'b'.repeat(64);

describe('fingerprints', () => {
  it('replicas that diverge stop the run, naming the workers and the step', async () => {
    const c = await startCoordinator(['--fingerprint-every', '2']);
    const fakes = await joinFakes(c.client, fingerprints.architecture, 2);
    const stops = fakes.map((f) =>
      f.serve((step) => (step === 0 ? fingerprints.weights : f.rank === 0 ? A : B)),
    );
    const expected =
      'the replicas diverged: after step 2, rank 0 holds aaaaaaaaaaaa…, rank 1 holds bbbbbbbbbbbb…';
    expect(await Promise.all(stops)).toEqual([expected, expected]);
    expect(await c.exited).toBe(3);
    expect(errorLines(c.stderr()).at(-1)).toBe(expected);
    c.client.close();
  });

  it('replicas that do not start from the coordinator\u2019s weights are refused before step 1', async () => {
    const c = await startCoordinator([]);
    const fakes = await joinFakes(c.client, fingerprints.architecture, 2);
    const stops = fakes.map((f) => f.serve(() => (f.rank === 1 ? B : fingerprints.weights)));
    const [stop] = await Promise.all(stops);
    expect(stop).toBe(
      `the replicas do not start from the same weights: rank 1 holds bbbbbbbbbbbb…; the coordinator's copy is ${fingerprints.weights.slice(0, 12)}… (matched by rank 0)`,
    );
    expect(await c.exited).toBe(3);
    c.client.close();
  });
});

describe('the star reduction point', () => {
  it('refuses a gradient whose length differs from the other rank\u2019s and keeps serving', async () => {
    const c = await startCoordinator(['--allreduce', 'star']);
    const fakes = await joinFakes(c.client, fingerprints.architecture, 2);
    // Both fakes wait for their Membership: the coordinator then runs generation 1, whose
    // streams carry the credential the Membership brings.
    let generationCredential = '';
    for (const f of fakes) {
      const membership = await f.next();
      if (membership.$case !== 'membership') throw new Error(`got ${membership.$case}`);
      generationCredential = membership.value.credential;
    }
    const reduce = () => reduction.reduce(credentialMetadata(generationCredential));
    const reduction = new ReductionServiceClient(
      `127.0.0.1:${c.port}`,
      credentials.createInsecure(),
    );
    const hello = (rank: number): ReduceRequest => ({
      kind: {
        $case: 'hello',
        value: { protocolVersion: PROTOCOL_VERSION, generation: 1, worldSize: 2, rank },
      },
    });
    const chunk = (rank: number, elements: number): ReduceRequest => ({
      kind: {
        $case: 'chunk',
        value: {
          generation: 1,
          sequence: 0,
          op: CollectiveOp.COLLECTIVE_OP_ALL_REDUCE_SUM,
          phase: Phase.PHASE_CONTRIBUTE,
          step: 0,
          chunkIndex: 0,
          senderRank: rank,
          totalElements: elements,
          offset: 0,
          elementCount: elements,
          encoding: Encoding.ENCODING_FLOAT32_LE,
          bucket: 0,
          rootRank: 0,
          payload: new Uint8Array(elements * 4),
          padding: new Uint8Array(0),
        },
      },
    });
    const first = statusAfter(reduce(), [hello(0), chunk(0, 10)]);
    await new Promise((r) => setTimeout(r, 300));
    const second = await statusAfter(reduce(), [hello(1), chunk(1, 11)]);
    expect(status[second.code]).toBe('INVALID_ARGUMENT');
    expect(second.details).toMatch(/rank 1 sent .* but rank 0 started .*differs in totalElements/);
    expect(status[(await first).code]).toBe('ABORTED');

    expect(await healthStatus(c.port, '')).toBe('SERVING');
    const samples = await new Promise<number>((resolve, reject) =>
      c.client.fetchSamples(
        { split: Split.SPLIT_VAL, indices: [0, 1, 2] },
        credentialMetadata(fakes[0].credential),
        (error, answer) => (error ? reject(error) : resolve(answer.labels.length)),
      ),
    );
    expect(samples).toBe(3);
    reduction.close();
    c.client.close();
  });
});
