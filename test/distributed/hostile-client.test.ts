// A hostile client against a real run (coordinator and 2 workers as processes, a join token
// set): plain @grpc/grpc-js with the .proto files, none of this project's client code. Without
// a credential, with a wrong one, with the join token where a credential is due, with
// credentials another run issued, and with this run's coordinator credentials on the ring, it
// gets UNAUTHENTICATED from every method and no data; with this run's valid generation
// credential (eavesdropped from plain TCP), a second stream as a rank and a message over the
// size limit are refused. The run finishes with the weights of an undisturbed run, and neither
// the token nor any issued credential is in a log line, the run folder, /metrics or the
// dashboard's state, or a process's command line.
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { readdir, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RecordingProxy } from '../helpers/recording-proxy.js';
import { ensureBuilt, finalWeights, startCli } from './cli-runs.js';
import { listeningPort } from './fake-worker.js';
import {
  attempt,
  chunk,
  type Outcome,
  PROTOCOL_VERSION,
  peerHello,
  services,
} from './hostile-calls.js';

const TOKEN = `hostile-test-token-${process.pid}-${Date.now()}`;
const STEPS = 60;

interface Run {
  out: string;
  coordinatorPort: number;
  /** host:port of each rank's PeerService. */
  peers: string[];
  /** The credentials the coordinator sent each worker (eavesdropped). */
  sniffed: string[][];
  logs: () => string;
  exits: Promise<(number | null)[]>;
  children: ChildProcessWithoutNullStreams[];
  proxies: RecordingProxy[];
  httpPort: number;
}

const runs: Run[] = [];

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** `tfjs-ddp coordinator` and two `tfjs-ddp worker`s, each worker through a recording proxy. */
async function startRun(name: string): Promise<Run> {
  const out = join(tmpdir(), `ddp-hostile-${process.pid}-${name}`);
  await rm(out, { recursive: true, force: true });
  const httpPort = await freePort();
  const env = { TFJS_DDP_TOKEN: TOKEN };
  let logs = '';
  const coordinator = startCli(
    [
      ...['coordinator', '--world-size', '2', '--port', '0', '--bind-host', '127.0.0.1'],
      ...['--model', 'lenet5', '--dataset', 'synthetic', '--steps', String(STEPS)],
      ...['--batch-size', '4', '--backend', 'wasm', '--data-from', 'coordinator', '--trace'],
      ...['--http-port', String(httpPort), '--out', out, '--json'],
    ],
    { env },
  );
  const children = [coordinator];
  const coordinatorPort = await listeningPort(coordinator);
  const proxies = await Promise.all([0, 1].map(() => RecordingProxy.start(coordinatorPort)));
  for (const proxy of proxies) {
    children.push(
      startCli(
        [
          ...['worker', '--coordinator', `127.0.0.1:${proxy.port}`, '--peer-port', '0'],
          ...['--bind-host', '127.0.0.1', '--advertise-host', '127.0.0.1', '--backend', 'wasm'],
        ],
        { env },
      ),
    );
  }
  const peers: string[] = [];
  for (const child of children) {
    child.stdout.on('data', (d) => (logs += d));
    child.stderr.on('data', (d) => {
      logs += d;
      for (const m of String(d).matchAll(/as rank (\d) of 2; peers reach it at ([\d.:]+)/g)) {
        peers[Number(m[1])] = m[2];
      }
    });
  }
  const exits = Promise.all(
    children.map((c) => new Promise<number | null>((resolve) => c.on('close', resolve))),
  );
  // Until the Membership (with the generation's credential) has reached both workers.
  const sniffed = () => proxies.map((p) => p.credentials());
  for (let i = 0; i < 600 && (sniffed().some((c) => c.length < 2) || peers.length < 2); i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const run = {
    out,
    coordinatorPort,
    peers,
    sniffed: sniffed(),
    logs: () => logs,
    exits,
    children,
    proxies,
    httpPort,
  };
  runs.push(run);
  return run;
}

let reference: Run;
let attacked: Run;
const outcomes: { what: string; outcome: Outcome }[] = [];
let metricsBodies = '';
let cmdlines = '';

beforeAll(async () => {
  await ensureBuilt();
  reference = await startRun('reference');
  await reference.exits;
  attacked = await startRun('attacked');
  const { make } = services();
  const coordinatorAddress = `127.0.0.1:${attacked.coordinatorPort}`;
  const coordinator = make('CoordinatorService', coordinatorAddress);
  const reduction = make('ReductionService', coordinatorAddress);
  const peers = attacked.peers.map((address) => make('PeerService', address));
  const [own0, own1] = attacked.sniffed;
  const generation = own0.find((c) => own1.includes(c)) ?? '';
  const admissions = [...own0, ...own1].filter((c) => c !== generation);
  const elsewhere = reference.sniffed.flat();
  const strangers = [undefined, '', 'guess', ...elsewhere];
  const note = async (what: string, outcome: Promise<Outcome>) =>
    outcomes.push({ what, outcome: await outcome });
  const join = {
    protocol_version: PROTOCOL_VERSION,
    model_name: 'lenet5',
    peer_address: '127.0.0.1:1',
    worker_id: 'intruder',
  };
  for (const [i, credential] of strangers.entries()) {
    const as = `credential #${i}`;
    await note(`Join, ${as}`, attempt(coordinator, 'join', credential, [join]));
  }
  for (const [i, credential] of [...strangers, TOKEN, generation].entries()) {
    const as = `credential #${i}`;
    await note(
      `Control, ${as}`,
      attempt(coordinator, 'control', credential, [{ hello: { session_id: 'x', rank: 0 } }]),
    );
    await note(
      `FetchSamples, ${as}`,
      attempt(coordinator, 'fetchSamples', credential, [{ split: 'SPLIT_TRAIN', indices: [0, 1] }]),
    );
    await note(
      `FetchCheckpoint, ${as}`,
      attempt(coordinator, 'fetchCheckpoint', credential, [{ rank: 0, session_id: 'x' }]),
    );
  }
  for (const [i, credential] of [...strangers, TOKEN, ...admissions].entries()) {
    const as = `credential #${i}`;
    const reduceHello = {
      hello: { protocol_version: PROTOCOL_VERSION, generation: 1, world_size: 2, rank: 0 },
    };
    await note(
      `Reduce, ${as}`,
      attempt(reduction, 'reduce', credential, [reduceHello, chunk(0, 8)]),
    );
    for (const [rank, peer] of peers.entries()) {
      const from = 1 - rank;
      await note(
        `Exchange into rank ${rank}, ${as}`,
        attempt(peer, 'exchange', credential, [peerHello(from, rank), chunk(from, 8)]),
      );
    }
  }
  // With the valid generation credential: a second stream as rank 0, then a chunk of the wrong
  // length; and a message over the 64 MiB limit.
  await note(
    'Exchange with the valid credential, as a rank that has its stream',
    attempt(peers[1], 'exchange', generation, [peerHello(0, 1), chunk(0, 8, 5)]),
  );
  await note(
    'Exchange with the valid credential, over the size limit',
    attempt(peers[1], 'exchange', generation, [chunk(0, 8, 65 * 1024 * 1024)]),
  );
  const bearer = { headers: { authorization: `Bearer ${TOKEN}` } };
  for (const path of ['/metrics', '/api/state']) {
    const res = await fetch(`http://127.0.0.1:${attacked.httpPort}${path}`, bearer);
    metricsBodies += `${res.status} ${await res.text()}\n`;
  }
  for (const child of attacked.children) {
    cmdlines += (await readFile(`/proc/${child.pid}/cmdline`, 'latin1').catch(() => '')) + '\n';
  }
  outcomes.push({
    what: 'the run was still training after the attacks',
    outcome: {
      code: attacked.children.every((c) => c.exitCode === null) ? status.OK : status.UNKNOWN,
      details: '',
      received: 0,
    },
  });
  coordinator.close();
  reduction.close();
  for (const p of peers) p.close();
}, 600_000);

afterAll(async () => {
  for (const run of runs) {
    for (const child of run.children) if (child.exitCode === null) child.kill('SIGKILL');
    await Promise.all(run.proxies.map((p) => p.close()));
    await rm(run.out, { recursive: true, force: true });
  }
});

describe('a hostile client against a run with a join token', () => {
  it('eavesdropped the credentials it needs for the test: one per worker and the generation’s', () => {
    for (const run of [reference, attacked]) {
      expect(run.sniffed.map((c) => c.length)).toEqual([2, 2]);
      expect(new Set(run.sniffed.flat()).size).toBe(3);
    }
  });

  it('gets UNAUTHENTICATED and no data from every method without a valid credential', () => {
    const unauthenticated = outcomes.filter(({ what }) => what.includes('credential #'));
    expect(unauthenticated.length).toBeGreaterThan(50);
    for (const { what, outcome } of unauthenticated) {
      expect([what, status[outcome.code], outcome.received]).toEqual([what, 'UNAUTHENTICATED', 0]);
      expect(outcome.details, what).not.toMatch(/rank \d|generation \d/);
    }
  });

  it('with the valid generation credential, cannot take a rank’s place nor send over the limit', () => {
    const valid = Object.fromEntries(
      outcomes.filter(({ what }) => what.includes('valid')).map((o) => [o.what, o.outcome]),
    );
    expect(
      status[valid['Exchange with the valid credential, as a rank that has its stream'].code],
    ).toBe('ALREADY_EXISTS');
    expect(status[valid['Exchange with the valid credential, over the size limit'].code]).toBe(
      'RESOURCE_EXHAUSTED',
    );
    expect(outcomes.at(-1)?.outcome.code).toBe(status.OK);
  });

  it('leaves the run unharmed: it completes with the weights of the undisturbed run', async () => {
    expect(await attacked.exits, attacked.logs().slice(-3000)).toEqual([0, 0, 0]);
    const [a, b] = await Promise.all([finalWeights(attacked.out), finalWeights(reference.out)]);
    expect(Buffer.from(a.buffer).equals(Buffer.from(b.buffer))).toBe(true);
  }, 120_000);

  it('writes neither the token nor a credential into logs, run folders, /metrics or command lines', async () => {
    await attacked.exits;
    const secrets = [TOKEN, ...reference.sniffed.flat(), ...attacked.sniffed.flat()];
    expect(metricsBodies.split('\n').filter((l) => l.startsWith('200 ')).length).toBe(2);
    const places: [string, Buffer][] = [
      ['logs', Buffer.from(reference.logs() + attacked.logs())],
      ['/metrics and /api/state', Buffer.from(metricsBodies)],
      ['command lines', Buffer.from(cmdlines)],
    ];
    for (const run of [reference, attacked]) {
      for (const file of await readdir(run.out, { recursive: true, withFileTypes: true })) {
        if (!file.isFile()) continue;
        const path = join(file.parentPath, file.name);
        places.push([path, await readFile(path)]);
      }
    }
    expect(places.map(([p]) => p)).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/trace\.json$/),
        expect.stringMatching(/metrics\.jsonl$/),
      ]),
    );
    for (const [where, content] of places) {
      for (const secret of secrets) expect(content.includes(secret), `${where}`).toBe(false);
    }
  });
});
