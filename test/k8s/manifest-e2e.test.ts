import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { constants, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { IJob } from 'kubernetes-models/batch/v1';
import type { IContainer, ISecret, IService } from 'kubernetes-models/v1';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeCifarTarball, startServer } from '../helpers/tarball-server.js';
import { entrypoint, envOf, parseDockerfile } from './dockerfile-model.js';
import { JobController } from './job-controller.js';
import {
  type LocalCommand,
  type LocalImage,
  localCommand,
  type Started,
  start,
} from './local-pod.js';
import { jobPodFacts } from './pod-env.js';
import { find, type KObject, podOf, ROOT, readManifest, render } from './render.js';

// The cpu overlay, run on this machine: each container of the rendered manifests becomes a
// local process with exactly its command, args and environment (ConfigMap, fieldRefs,
// $(VAR) expansion) and its volumes as local folders; the image is ./Dockerfile's
// ENTRYPOINT and ENV over this checkout's build (`npm run build` first).
//
// What must differ on one host, and nothing else, is overridden (see localOverrides):
//  - cluster DNS → 127.0.0.1: the coordinator Service in TFJS_DDP_COORDINATOR, and each
//    worker's TFJS_DDP_ADVERTISE_HOST (checked first to be its pod's DNS name);
//  - ports: every pod has its own IP in a cluster, not here, so the coordinator gets a free
//    port (TFJS_DDP_PORT, and the Service port in TFJS_DDP_COORDINATOR) and each worker its
//    own (TFJS_DDP_PEER_PORT); servers bind to loopback only (TFJS_DDP_BIND_HOST);
//  - the run's length and data: TFJS_DDP_STEPS=3 instead of TFJS_DDP_EPOCHS, a validation
//    split that fits the small data set (TFJS_DDP_VAL_SIZE);
//  - the data: fetch-data downloads from a local HTTP server serving a small synthetic
//    CIFAR-10 archive, through the mirror variables TFJS_DDP_CIFAR10_URL / _MD5;
//  - the run killed twice: STEPS steps, a checkpoint every 5 (TFJS_DDP_CHECKPOINT_EVERY),
//    in a folder of its own on the runs volume (TFJS_DDP_OUT).
//
// Killing a pod is SIGKILL of its main process; what follows is the Job controller's decision
// for that exit (job-controller.ts, from the Job's podFailurePolicy and backoff limits), and a
// replacement is a new pod of the same index: the same manifest, fresh emptyDirs.

const MAIN = join(ROOT, 'dist/src/cli/main.js');
let work: string;
let objects: KObject[];
let image: LocalImage;
let server: Awaited<ReturnType<typeof startServer>>;
let archiveMd5: string;
const started: Started[] = [];

beforeAll(async () => {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run \`npm run build\` first`);
  work = await mkdtemp(join(tmpdir(), 'manifest-e2e-'));
  objects = await render('overlays/cpu');
  const dockerfile = await parseDockerfile('Dockerfile');
  image = {
    entrypoint: entrypoint(dockerfile),
    env: { NODE_ENV: envOf(dockerfile, 'NODE_ENV') ?? '' },
  };
  const tarball = await makeCifarTarball(join(work, 'archive'), { perBatch: 60 });
  archiveMd5 = tarball.md5;
  server = await startServer({ '/cifar-10-binary.tar.gz': (res) => res.end(tarball.bytes) });
  // The join token Secret, as the README has the user create it (here: the example's value).
  const [secret] = (await readManifest('secrets/join-token.example.yaml')) as (ISecret & KObject)[];
  for (const [key, value] of Object.entries(secret.stringData ?? {})) {
    await mkdir(volumeRoot('secret', secret.metadata.name), { recursive: true });
    await writeFile(join(volumeRoot('secret', secret.metadata.name), key), value);
  }
}, 60_000);

afterAll(async () => {
  for (const p of started)
    if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
  await server?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

function volumeRoot(kind: string, name: string): string {
  return join(work, 'volumes', kind, name);
}

/** Local folders for a pod's volumes: one per claim or Secret, emptyDirs per pod. */
function volumesOf(job: IJob, podName: string) {
  const volumes = podOf(job).spec.volumes ?? [];
  return (name: string) => {
    const volume = volumes.find((v) => v.name === name);
    if (volume?.persistentVolumeClaim)
      return volumeRoot('pvc', volume.persistentVolumeClaim.claimName);
    if (volume?.secret) return volumeRoot('secret', volume.secret.secretName ?? '');
    if (volume?.emptyDir) return join(work, 'pods', podName, name);
    throw new Error(`volume ${name} of ${podName}: no local stand-in for it`);
  };
}

async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as { port: number };
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

/** The local command of container `name` of pod `index` of `job`, with its volumes created. */
async function commandOf(job: IJob, index: number, container: IContainer): Promise<LocalCommand> {
  const facts = jobPodFacts(job, index);
  const volumes = volumesOf(job, facts.name);
  for (const mount of container.volumeMounts ?? [])
    await mkdir(volumes(mount.name), { recursive: true });
  return localCommand(container, { facts, spec: podOf(job).spec }, objects, image, volumes);
}

/** The local overrides listed at the top of this file; everything else is the manifests'. */
function localOverrides(
  command: LocalCommand,
  ports: { coordinator: number; peer?: number },
  podDns?: string,
) {
  const env = command.env;
  if (env.TFJS_DDP_COORDINATOR !== undefined) {
    // The coordinator Service's port (it targets the coordinator's container port).
    const [host, port] = env.TFJS_DDP_COORDINATOR.split(':');
    const service = find<IService>(objects, 'Service', host);
    expect(service.spec?.ports?.map((p) => p.port)).toContain(Number(port));
    env.TFJS_DDP_COORDINATOR = `127.0.0.1:${ports.coordinator}`;
  }
  if (env.TFJS_DDP_PORT !== undefined) env.TFJS_DDP_PORT = String(ports.coordinator);
  if (env.TFJS_DDP_ADVERTISE_HOST !== undefined) {
    expect(env.TFJS_DDP_ADVERTISE_HOST).toBe(podDns);
    env.TFJS_DDP_ADVERTISE_HOST = '127.0.0.1';
  }
  if (env.TFJS_DDP_PEER_PORT !== undefined) env.TFJS_DDP_PEER_PORT = String(ports.peer);
  env.TFJS_DDP_BIND_HOST = '127.0.0.1';
  delete env.TFJS_DDP_EPOCHS;
  env.TFJS_DDP_STEPS = '3';
  env.TFJS_DDP_VAL_SIZE = '50';
  env.TFJS_DDP_CIFAR10_URL = server.url('/cifar-10-binary.tar.gz');
  env.TFJS_DDP_CIFAR10_MD5 = archiveMd5;
  return command;
}

async function finish(run: Started, seconds: number): Promise<number | null> {
  const timeout = new Promise<'timeout'>((resolve) =>
    setTimeout(() => resolve('timeout'), seconds * 1000),
  );
  const code = await Promise.race([run.exit, timeout]);
  if (code === 'timeout') {
    run.child.kill('SIGKILL');
    throw new Error(
      `${run.name} did not finish in ${seconds} s; its output:\n${run.output().slice(-4000)}`,
    );
  }
  return code;
}

/** Rejects, with its output, if `run` exits while something else is being waited for. */
async function failOnExit(run: Started): Promise<never> {
  const code = await run.exit;
  throw new Error(`${run.name} exited early (${code}); its output:\n${run.output().slice(-4000)}`);
}

function expectSuccess(run: Started, code: number | null) {
  expect(code, `${run.name} exited ${code}; its output:\n${run.output().slice(-4000)}`).toBe(0);
}

/** A pod of a Job, started as local processes: its init containers to success, then its main one. */
async function startPod(
  job: IJob,
  index: number,
  ports: { coordinator: number; peer?: number },
  opts: { podDns?: string; env?: Record<string, string>; whileWaiting?: Started } = {},
): Promise<{ main: Started; command: LocalCommand }> {
  const pod = podOf(job).spec;
  const role = job.metadata?.name === 'tfjs-ddp-worker' ? `worker-${index}` : 'coordinator';
  const commandFor = async (container: IContainer, podDns?: string) => {
    const command = localOverrides(await commandOf(job, index, container), ports, podDns);
    Object.assign(command.env, opts.env);
    return command;
  };
  for (const init of pod.initContainers ?? []) {
    const run = start(`${role}/${init.name}`, await commandFor(init));
    started.push(run);
    const waits = [finish(run, 30), ...(opts.whileWaiting ? [failOnExit(opts.whileWaiting)] : [])];
    expectSuccess(run, await Promise.race(waits));
  }
  const command = await commandFor(pod.containers[0], opts.podDns);
  const main = start(role, command);
  started.push(main);
  return { main, command };
}

function workerDns(index: number): string {
  const workerJob = find<IJob>(objects, 'Job', 'tfjs-ddp-worker');
  return `tfjs-ddp-worker-${index}.${podOf(workerJob).spec.subdomain}.default.svc`;
}

describe('the cpu overlay, run as local processes', () => {
  it('fetches the data, forms the ring through the Services and trains to exit code 0', async () => {
    const coordinatorJob = find<IJob>(objects, 'Job', 'tfjs-ddp-coordinator');
    const workerJob = find<IJob>(objects, 'Job', 'tfjs-ddp-worker');
    const ports = { coordinator: await freePort() };
    const { main: coordinator, command: coordinatorMain } = await startPod(
      coordinatorJob,
      0,
      ports,
    );
    // fetch-data installed the archive's batches where the coordinator reads them.
    expect(existsSync(join(coordinatorMain.env.TFJS_DDP_DATA, 'data_batch_5.bin'))).toBe(true);

    const worldSize = Number(coordinatorMain.env.TFJS_DDP_WORLD_SIZE);
    expect(workerJob.spec?.parallelism).toBe(worldSize);
    const workers = await Promise.all(
      Array.from({ length: worldSize }, async (_, index) => {
        const peer = { ...ports, peer: await freePort() };
        const pod = await startPod(workerJob, index, peer, {
          podDns: workerDns(index),
          whileWaiting: coordinator,
        });
        return pod.main;
      }),
    );
    for (const run of [coordinator, ...workers]) expectSuccess(run, await finish(run, 90));

    const runDir = coordinatorMain.env.TFJS_DDP_OUT;
    expect(runDir.startsWith(volumeRoot('pvc', 'tfjs-ddp-runs'))).toBe(true);
    const metrics = (await readFile(join(runDir, 'metrics.jsonl'), 'utf8')).trim().split('\n');
    expect(metrics.length).toBeGreaterThan(0);
    expect(existsSync(join(runDir, 'model', 'model.json'))).toBe(true);
  }, 150_000);

  it('goes on when a worker pod and then the coordinator pod are killed and their Jobs replace them', async () => {
    const coordinatorJob = find<IJob>(objects, 'Job', 'tfjs-ddp-coordinator');
    const workerJob = find<IJob>(objects, 'Job', 'tfjs-ddp-worker');
    const ports = { coordinator: await freePort() };
    // A run long enough to be disturbed twice, in a folder of its own on the runs volume, with
    // a checkpoint every few steps for the replaced coordinator to resume from.
    const runDir = join(volumeRoot('pvc', 'tfjs-ddp-runs'), 'killed-pods');
    const env = {
      TFJS_DDP_STEPS: String(STEPS),
      TFJS_DDP_CHECKPOINT_EVERY: '5',
      TFJS_DDP_OUT: runDir,
    };
    const first = await startPod(coordinatorJob, 0, ports, { env });
    const workerPod = async (index: number, whileWaiting: Started) =>
      (
        await startPod(
          workerJob,
          index,
          { ...ports, peer: await freePort() },
          {
            podDns: workerDns(index),
            env,
            whileWaiting,
          },
        )
      ).main;
    const worker0 = await workerPod(0, first.main);
    const worker1 = await workerPod(1, first.main);
    const progress = new RunProgress(runDir, [first.main, worker0, worker1]);

    // The worker pod of index 1 is killed (its node is gone): SIGKILL, exit code 137.
    await progress.until((m) => m.some((r) => r.type === 'step' && r.step >= 3));
    progress.forget(worker1);
    const killedWorker = await kill(worker1);
    expect(new JobController(workerJob).decide(1, { exitCode: killedWorker })).toBe('replace');
    await progress.until((m) => m.some((r) => r.type === 'membership' && r.lost.length === 1));
    // The Job's replacement pod for index 1 joins the running job.
    const replacement = await workerPod(1, first.main);
    progress.watch(replacement);
    await progress.until((m) => m.some((r) => r.type === 'membership' && r.joined.length === 1));

    // The coordinator pod is killed: its Job starts a new pod with the same command, on the
    // same runs volume and behind the same Service port; the workers wait for it.
    progress.forget(first.main);
    const killedCoordinator = await kill(first.main);
    expect(new JobController(coordinatorJob).decide(0, { exitCode: killedCoordinator })).toBe(
      'replace',
    );
    const second = await startPod(coordinatorJob, 0, ports, { env });
    progress.watch(second.main);

    for (const run of [second.main, worker0, replacement])
      expectSuccess(run, await finish(run, 120));
    const metrics = await progress.records();
    const steps = metrics.filter((r) => r.type === 'step').map((r) => r.step);
    expect(Math.max(...steps)).toBe(STEPS);
    expect(second.main.output()).toMatch(
      /the coordinator restarted; (all 2 workers kept the same state after step \d+|every worker loads the checkpoint after step \d+)/,
    );
    expect(existsSync(join(runDir, 'model', 'model.json'))).toBe(true);
  }, 240_000);
});

/** Steps of the disturbed run: enough to outlast a worker's and a coordinator's restart. */
const STEPS = 120;

/** A local "pod" killed as a lost node kills it; resolves with the exit code Kubernetes reports. */
async function kill(run: Started): Promise<number> {
  run.child.kill('SIGKILL');
  await run.exit;
  return 128 + constants.signals.SIGKILL;
}

type MetricsLine = { type: string; step: number; lost: number[]; joined: number[] };

/** The run's metrics.jsonl as it grows; a wait fails early when a watched process exits. */
class RunProgress {
  private readonly watched: Started[] = [];

  constructor(
    private readonly runDir: string,
    processes: Started[],
  ) {
    for (const p of processes) this.watch(p);
  }

  watch(run: Started): void {
    this.watched.push(run);
  }

  /** `run` is about to be killed: its exit is expected. */
  forget(run: Started): void {
    this.watched.splice(this.watched.indexOf(run), 1);
  }

  async records(): Promise<MetricsLine[]> {
    const text = await readFile(join(this.runDir, 'metrics.jsonl'), 'utf8').catch(() => '');
    return text
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as MetricsLine);
  }

  /** Polls until `done` holds for the records; fails if a watched process exits meanwhile. */
  async until(done: (records: MetricsLine[]) => boolean): Promise<void> {
    for (;;) {
      if (done(await this.records())) return;
      const exited = this.watched.find((p) => p.child.exitCode !== null || p.child.signalCode);
      if (exited) {
        throw new Error(
          `${exited.name} exited (${exited.child.exitCode ?? exited.child.signalCode}) while waiting; its output:\n${exited.output().slice(-4000)}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}
