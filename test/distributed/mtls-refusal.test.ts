// Mutual TLS refuses, on every service of the coordinator and of a worker, a client whose
// certificate another CA signed (and a client without one), while a client of the run's CA gets
// through. Certificates are made here with the openssl CLI.
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ChannelCredentials, credentials, status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, startCli } from './cli-runs.js';
import { listeningPort } from './fake-worker.js';
import { attempt, chunk, PROTOCOL_VERSION, peerHello, services } from './hostile-calls.js';

let work: string;
let openssl = true;
const children: ReturnType<typeof startCli>[] = [];

function sh(...args: string[]): void {
  execFileSync('openssl', args, { cwd: work, stdio: 'pipe' });
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ddp-mtls-'));
  await ensureBuilt();
  try {
    for (const ca of ['ca', 'other-ca']) {
      sh(
        'req',
        '-x509',
        ...EC,
        '-keyout',
        `${ca}.key`,
        '-out',
        `${ca}.crt`,
        '-days',
        '1',
        '-subj',
        `/CN=${ca}`,
      );
    }
    await writeFile(join(work, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
    for (const [name, ca] of [
      ['tls', 'ca'],
      ['intruder', 'other-ca'],
    ]) {
      sh('req', ...EC, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', '/CN=localhost');
      sh(
        ...['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`],
        ...['-CAcreateserial', '-out', `${name}.crt`, '-days', '1', '-extfile', 'san.ext'],
      );
    }
  } catch {
    openssl = false;
  }
}, 300_000);

afterAll(async () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  await rm(work, { recursive: true, force: true });
});

async function channel(key: string, cert: string | undefined): Promise<ChannelCredentials> {
  const ca = await readFile(join(work, 'ca.crt'));
  if (cert === undefined) return credentials.createSsl(ca);
  return credentials.createSsl(
    ca,
    await readFile(join(work, `${key}.key`)),
    await readFile(join(work, `${cert}.crt`)),
  );
}

describe('mutual TLS', () => {
  it.skipIf(!openssl)(
    'refuses a client of another CA, or without a certificate, on every service',
    async () => {
      const tls = {
        TFJS_DDP_TLS_CERT: join(work, 'tls.crt'),
        TFJS_DDP_TLS_KEY: join(work, 'tls.key'),
        TFJS_DDP_TLS_CA: join(work, 'ca.crt'),
        TFJS_DDP_BIND_HOST: '127.0.0.1',
      };
      const coordinator = startCli(
        [
          ...['coordinator', '--world-size', '2', '--port', '0', '--model', 'lenet5'],
          ...['--dataset', 'synthetic', '--steps', '1', '--backend', 'cpu', '--http-port', '0'],
        ],
        { env: tls },
      );
      children.push(coordinator);
      const port = await listeningPort(coordinator);
      // One worker of two: it joins and its PeerService listens, and the run waits for the other.
      const worker = startCli(
        [
          ...['worker', '--coordinator', `127.0.0.1:${port}`, '--peer-port', '0'],
          ...['--advertise-host', '127.0.0.1', '--backend', 'cpu'],
        ],
        { env: tls },
      );
      children.push(worker);
      const peer = await new Promise<string>((resolve, reject) => {
        let log = '';
        worker.stderr.on('data', (d) => {
          log += d;
          const m = /peers reach it at ([\d.:]+)/.exec(log);
          if (m) resolve(m[1]);
        });
        worker.on('close', () => reject(new Error(`the worker exited:\n${log.slice(-2000)}`)));
      });

      const calls = (creds: ChannelCredentials) => {
        const { make } = services(creds);
        const c = make('CoordinatorService', `127.0.0.1:${port}`);
        const r = make('ReductionService', `127.0.0.1:${port}`);
        const p = make('PeerService', peer);
        const reduceHello = {
          hello: { protocol_version: PROTOCOL_VERSION, generation: 1, world_size: 2, rank: 0 },
        };
        return {
          clients: [c, r, p],
          run: () =>
            Promise.all([
              attempt(c, 'join', undefined, [{ protocol_version: PROTOCOL_VERSION }]),
              attempt(c, 'control', undefined, [{ hello: { session_id: 'x', rank: 0 } }]),
              attempt(c, 'fetchSamples', undefined, [{ split: 'SPLIT_TRAIN', indices: [0] }]),
              attempt(c, 'fetchCheckpoint', undefined, [{ rank: 0, session_id: 'x' }]),
              attempt(r, 'reduce', undefined, [reduceHello, chunk(0, 8)]),
              attempt(p, 'exchange', undefined, [peerHello(1, 0), chunk(1, 8)]),
            ]),
        };
      };
      for (const creds of [await channel('intruder', 'intruder'), await channel('', undefined)]) {
        const { clients, run } = calls(creds);
        const outcomes = await run();
        for (const c of clients) c.close();
        expect(outcomes.map((o) => [status[o.code], o.received])).toEqual(
          new Array(6).fill(['UNAVAILABLE', 0]),
        );
      }
      // The run's own CA gets through TLS (to the next check: the join has no worker id).
      const { clients, run } = calls(await channel('tls', 'tls'));
      const [joined] = await run();
      for (const c of clients) c.close();
      expect(status[joined.code]).toBe('INVALID_ARGUMENT');
    },
    120_000,
  );
});
