import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { UserError } from '../shared/errors.js';
import { GRADIENT_PROCESS_NODE_FLAGS } from '../shared/transport/grpc-settings.js';
import { cliEntry, commandOn, killWithParent } from './bench-child.js';
import type { BenchHost } from './bench-host.js';
import { EmulatedNetwork } from './emulated-network.js';
import type { LinkRate } from './link-rate.js';

/** The coordinator's port on its own emulated host (nothing else listens there). */
const COORDINATOR_PORT = 7070;

/** One distributed training run on an emulated network. */
export interface EmulatedTrainingRun {
  /** `train` flags of the run, without --workers, --out, --json. */
  trainFlags: string[];
  workers: number;
  /** What the workers need of `trainFlags`: --backend, and --data when given. */
  backend: string;
  dataDir?: string;
  model: string;
  runDir: string;
  link: LinkRate;
  timeoutMs: number;
}

/**
 * What `train --workers N` does, with every process on its own host of an EmulatedNetwork:
 * `tfjs-ddp coordinator` on host 0 and `tfjs-ddp worker` rank r on host r + 1 (as across
 * machines: a join token, the ring between the workers' addresses, the star through the
 * coordinator's). Resolves when all exit 0; the coordinator writes `runDir` and its log goes
 * to `<runDir>.log`, worker r's to `<runDir>.worker-r.log`. The first process to fail, or the
 * timeout, stops the others and rejects with the end of that process's log. The network and
 * whatever still runs in it are gone when this returns.
 */
export async function trainOnEmulatedNetwork(run: EmulatedTrainingRun): Promise<void> {
  await mkdir(run.runDir, { recursive: true });
  const network = new EmulatedNetwork(run.workers + 1, run.link);
  const [coordinatorHost, ...workerHosts] = network.hosts;
  // The token travels in the environment; the user's token or TLS files must not compete.
  const env = {
    ...process.env,
    LOG_FORMAT: 'json',
    TFJS_DDP_TOKEN: randomBytes(16).toString('hex'),
    TFJS_DDP_TOKEN_FILE: '',
    TFJS_DDP_TLS_CERT: '',
    TFJS_DDP_TLS_KEY: '',
    TFJS_DDP_TLS_CA: '',
  };
  const coordinatorArgs = [
    ...['coordinator', ...run.trainFlags, '--world-size', String(run.workers)],
    ...['--bind-host', coordinatorHost.address, '--port', String(COORDINATOR_PORT)],
    ...['--out', run.runDir, '--json'],
  ];
  const processes = [
    start('the coordinator', coordinatorHost, coordinatorArgs, `${run.runDir}.log`, env),
    ...workerHosts.map((host, rank) => {
      const args = [
        ...['worker', '--coordinator', `${coordinatorHost.address}:${COORDINATOR_PORT}`],
        ...['--bind-host', host.address, '--advertise-host', host.address, '--peer-port', '0'],
        ...['--rank', String(rank), '--model', run.model, '--backend', run.backend],
        ...(run.dataDir === undefined ? [] : ['--data', run.dataDir]),
      ];
      return start(`worker ${rank}`, host, args, `${run.runDir}.worker-${rank}.log`, env);
    }),
  ];
  const timer = setTimeout(() => {
    for (const p of processes) p.child.kill('SIGTERM');
  }, run.timeoutMs);
  try {
    // The first failure stops the wait: the others are killed below.
    await Promise.all(processes.map((p) => p.done));
  } finally {
    clearTimeout(timer);
    for (const p of processes) if (p.child.exitCode === null) p.child.kill('SIGKILL');
    network.destroy();
  }
}

interface Started {
  child: ChildProcess;
  /** Resolves on exit 0; rejects with the end of the log otherwise. */
  done: Promise<void>;
}

function start(
  label: string,
  host: BenchHost,
  args: string[],
  logPath: string,
  env: NodeJS.ProcessEnv,
): Started {
  const logFd = openSync(logPath, 'w');
  const [command, argv] = commandOn(host, [...GRADIENT_PROCESS_NODE_FLAGS, cliEntry(), ...args]);
  const child = spawn(command, argv, { stdio: ['ignore', logFd, logFd], env });
  closeSync(logFd);
  killWithParent(child);
  const done = new Promise<void>((resolve, reject) => {
    child.once('exit', (code, signal) => {
      if (code === 0) return resolve();
      const tail = readFileSync(logPath, 'utf8').trim().split('\n').slice(-5).join('\n');
      const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
      reject(
        new UserError(
          `${label} of an emulated-network run ${how}; the end of ${logPath}:\n${tail}`,
        ),
      );
    });
  });
  return { child, done };
}
