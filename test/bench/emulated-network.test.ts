// Emulated networks (`--link RATE`): real network namespaces, veths and tc tbf shaping, real
// processes in them. Needs root and iproute2, as CI has: where `ip netns add` fails these tests
// fail with its reason, they do not skip.
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, errorLines, MAIN, ROOT, runCli, startCli } from '../cli/run-cli.js';

type NetworkModule = typeof import('../../src/bench/emulated-network.js');
type TcpModule = typeof import('../../src/bench/tcp-reference.js');
type LinkModule = typeof import('../../src/bench/link-rate.js');

// The built modules: their child processes run the built CLI next to them.
const built = (path: string) => import(join(ROOT, 'dist/src/bench', path));

let out: string;
beforeAll(async () => {
  await ensureBuilt();
  out = await mkdtemp(join(tmpdir(), 'bench-netem-'));
});
afterAll(() => rm(out, { recursive: true, force: true }));

// The benchmarks start many processes (each loads the CLI): under the full suite on two
// shared cores that takes minutes, so these tests get room.
const HEAVY_MS = 300_000;

/** This machine's namespaces and root-namespace interfaces that carry `prefix`. */
function leftovers(prefix: string): string[] {
  const namespaces = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  const links = execFileSync('ip', ['-o', 'link'], { encoding: 'utf8' });
  return [...namespaces.split('\n'), ...links.split('\n')].filter((l) => l.includes(prefix));
}

function pidsIn(ns: string): number[] {
  try {
    return execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8', stdio: 'pipe' })
      .split('\n')
      .filter(Boolean)
      .map(Number);
  } catch {
    return []; // not made yet
  }
}

function commandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return '';
  }
}

async function waitFor<T>(what: string, probe: () => T | undefined, timeoutMs = 200_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A long `bench allreduce --link` run, to be stopped or broken while its ranks work. */
function startLongBench() {
  const child = startCli([
    'bench',
    'allreduce',
    '--link',
    '100mbit',
    '--sizes',
    '16M',
    '--iters',
    '50',
    '--tcp-size',
    '1M',
    '--out',
    out,
  ]);
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
  return { child, prefix: `tfddp-${child.pid}-`, exited, stderr: () => stderr };
}

/** The pid of the rank process on host `host` of the bench's first network, once it runs. */
function rankPid(prefix: string, host: number): number | undefined {
  return pidsIn(`${prefix}0-h${host}`).find((p) => commandLine(p).includes('allreduce-rank'));
}

describe('--link', () => {
  it('rates parse as tc writes them, and anything else is a clear error', async () => {
    const { parseLinkRate } = (await built('link-rate.js')) as LinkModule;
    expect(parseLinkRate('50mbit')).toEqual({ text: '50mbit', bitsPerSec: 50e6 });
    expect(parseLinkRate('1Gbit')).toEqual({ text: '1gbit', bitsPerSec: 1e9 });
    expect(parseLinkRate('2.5gbit').bitsPerSec).toBe(2.5e9);
    expect(() => parseLinkRate('50mb')).toThrow(/--link 50mb: expected a rate .* 50mbit/);
    expect(() => parseLinkRate('100kbit')).toThrow(/between 1mbit and 100gbit/);
    const r = await runCli(['bench', 'allreduce', '--link', 'fast']);
    expect(r.code).toBe(2);
    expect(errorLines(r.stderr)).toEqual([
      expect.stringMatching(/^--link fast: expected a rate in bits per second/),
    ]);
  });

  it('without root: one clear error line, for both benchmarks', async () => {
    const asNobody = (args: string[]) =>
      new Promise<{ code: number | null; stderr: string }>((resolve) => {
        const user = ['--reuid=65534', '--regid=65534', '--clear-groups'];
        const child = spawn('setpriv', [...user, process.execPath, MAIN, ...args], {
          env: { ...process.env, LOG_FORMAT: 'json' },
        });
        let stderr = '';
        child.stderr.on('data', (d) => (stderr += d));
        child.on('close', (code) => resolve({ code, stderr }));
      });
    for (const args of [
      ['bench', 'allreduce', '--link', '50mbit', '--out', out],
      ['bench', 'scaling', '--model', 'lenet5', '--link', '50mbit', '--out', out],
    ]) {
      const r = await asNobody(args);
      expect(errorLines(r.stderr)).toEqual([expect.stringMatching(/^--link needs root/)]);
      expect(r.code).toBe(2);
    }
  });

  it('a 50mbit link carries 50 Mbit/s (±15%) of raw TCP; nothing is left after', async () => {
    const { EmulatedNetwork } = (await built('emulated-network.js')) as NetworkModule;
    const { measureTcpRounds } = (await built('tcp-reference.js')) as TcpModule;
    const network = new EmulatedNetwork(2, { text: '50mbit', bitsPerSec: 50e6 });
    const prefix = network.hosts[0].netns?.replace(/h0$/, '') as string;
    try {
      expect(leftovers(prefix)).toHaveLength(3); // the hub and two hosts, no root-namespace link
      const rounds = await measureTcpRounds(8 << 20, 3, [], [network.hosts[0], network.hosts[1]]);
      // The reference is the median of the rounds, as bench allreduce takes it.
      const reference = [...rounds.streamMBps].sort((x, y) => x - y)[1];
      expect(reference).toBeGreaterThan(0.85 * 6.25);
      expect(reference).toBeLessThan(1.15 * 6.25);
      // Both ways at once, each direction has its own 50 Mbit/s (the acks share it).
      for (const mbps of rounds.duplexMBps) expect(mbps).toBeLessThan(1.15 * 6.25);
    } finally {
      network.destroy();
    }
    expect(leftovers(prefix)).toEqual([]);
  });

  it(
    'bench allreduce --link 100mbit: busbw under the link rate, stale namespaces removed',
    async () => {
      // What a SIGKILLed run leaves: a namespace named after a pid that is gone.
      const dead = spawn('true');
      await new Promise((r) => dead.on('exit', r));
      const stale = `tfddp-${dead.pid}-0-h0`;
      execFileSync('ip', ['netns', 'add', stale]);

      const child = startCli([
        ...['bench', 'allreduce', '--link', '100mbit', '--workers', '2'],
        ...['--sizes', '1M,4M', '--iters', '2', '--tcp-size', '2M', '--json', '--out', out],
      ]);
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => (stderr += d));
      const code = await new Promise((r) => child.on('close', r));
      expect(errorLines(stderr)).toEqual([]);
      expect(code).toBe(0);
      const json = JSON.parse(stdout);
      expect(json.link).toEqual({ rate: '100mbit', bitsPerSec: 100e6, MBps: 12.5 });
      // (How close it comes is the 50mbit test's; these rounds are short for a busy machine.)
      expect(json.tcpReferenceMBps).toBeLessThan(1.15 * 12.5);
      expect(json.results.map((row: { bytes: number }) => row.bytes)).toEqual([1 << 20, 4 << 20]);
      for (const row of json.results) expect(row.busbwMBps).toBeLessThan(12.5);
      expect(leftovers(stale)).toEqual([]);
      expect(leftovers(`tfddp-${child.pid}-`)).toEqual([]);
    },
    HEAVY_MS,
  );

  it(
    'bench scaling --link: coordinator and workers on their own hosts, compressed, not overlapped, nothing left',
    async () => {
      const runs = await mkdtemp(join(out, 'runs-'));
      const child = startCli([
        ...['bench', 'scaling', '--model', 'lenet5', '--workers', '2', '--steps', '3'],
        ...['--warmup-steps', '1', '--batch-size', '8', '--backend', 'wasm', '--rounds', '1'],
        ...['--link', '100mbit', '--grad-compression', 'powersgd:2', '--no-overlap'],
        ...['--json', '--out', out, '--runs-dir', runs],
      ]);
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => (stderr += d));
      const code = await new Promise((r) => child.on('close', r));
      expect(errorLines(stderr)).toEqual([]);
      expect(code).toBe(0);
      const [, two] = JSON.parse(stdout).results;
      expect(two.workers).toBe(2);
      expect(two.allreduceMs).toBeGreaterThan(0);
      const [folder] = await readdir(runs);
      const logOf = (name: string) => readFileSync(join(runs, folder, name), 'utf8');
      expect(logOf('n2.log')).toContain('coordinator listening on 10.213.0.1:7070');
      for (const rank of [0, 1]) {
        expect(logOf(`n2.worker-${rank}.log`)).toContain(`peers reach it at 10.213.0.${rank + 2}:`);
      }
      // The N-worker run compressed; the independent runs, which send nothing, did not.
      const flagsOf = (name: string) =>
        JSON.parse(readFileSync(join(runs, folder, name, 'run-flags.json'), 'utf8'));
      expect(flagsOf('n2')).toMatchObject({ gradCompression: 'powersgd:2', overlap: false });
      expect(flagsOf('n2-independent-0').gradCompression).toBeUndefined();
      const file = JSON.parse(
        readFileSync(join(out, 'scaling-lenet5-ring-powersgd2-no-overlap-100mbit.json'), 'utf8'),
      );
      expect(file).toMatchObject({ compression: 'powersgd:2', overlap: false, link: '100mbit' });
      expect(leftovers(`tfddp-${child.pid}-`)).toEqual([]);
    },
    HEAVY_MS,
  );

  it(
    'a rank that dies fails the run with its name, and nothing is left',
    async () => {
      const bench = startLongBench();
      const pid = await waitFor('rank 1', () => rankPid(bench.prefix, 1));
      process.kill(pid, 'SIGKILL');
      expect(await bench.exited).toBe(1);
      expect(errorLines(bench.stderr())).toEqual([
        expect.stringMatching(/rank 1 was killed by SIGKILL/),
      ]);
      expect(leftovers(bench.prefix)).toEqual([]);
      expect(commandLine(pid)).toBe('');
    },
    HEAVY_MS,
  );

  it(
    'SIGTERM stops the bench, its processes and removes its namespaces',
    async () => {
      const bench = startLongBench();
      const ranks = await waitFor('both ranks', () => {
        const pids = [rankPid(bench.prefix, 0), rankPid(bench.prefix, 1)];
        return pids.every((p) => p !== undefined) ? pids : undefined;
      });
      bench.child.kill('SIGTERM');
      expect(await bench.exited).toBe(143);
      expect(leftovers(bench.prefix)).toEqual([]);
      for (const pid of ranks) expect(commandLine(pid as number)).toBe('');
    },
    HEAVY_MS,
  );
});
