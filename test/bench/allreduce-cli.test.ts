// `tfjs-ddp bench allreduce` end to end: real rank processes, real gRPC on 127.0.0.1,
// raw TCP reference, verified results, the --json shape and the results files.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, errorLines, runCli } from '../cli/run-cli.js';

let out: string;
beforeAll(async () => {
  await ensureBuilt();
  out = await mkdtemp(join(tmpdir(), 'bench-allreduce-'));
});
afterAll(() => rm(out, { recursive: true, force: true }));

function expectConsistent(
  json: { workers: number; tcpReferenceMBps: number; results: Record<string, number>[] },
  sizes: number[],
) {
  const n = json.workers;
  expect(json.results.map((r) => r.bytes)).toEqual(sizes);
  for (const r of json.results) {
    expect(Object.keys(r)).toEqual(['bytes', 'ms', 'algbwMBps', 'busbwMBps', 'fractionOfTcp']);
    expect(r.ms).toBeGreaterThan(0);
    // A loopback all-reduce of a few KB takes microseconds to a few hundred ms, no more.
    expect(r.ms).toBeLessThan(2000);
    expect(r.algbwMBps).toBeCloseTo(r.bytes / r.ms / 1000, 1);
    expect(r.busbwMBps).toBeCloseTo((r.algbwMBps * 2 * (n - 1)) / n, 1);
    expect(r.fractionOfTcp).toBeCloseTo(r.busbwMBps / json.tcpReferenceMBps, 3);
  }
}

describe('bench allreduce', () => {
  it('ring, 2 workers: nccl-style figures against raw TCP, as JSON and files', async () => {
    const r = await runCli([
      'bench',
      'allreduce',
      '--workers',
      '2',
      '--sizes',
      '1K,64K',
      '--iters',
      '3',
      '--tcp-size',
      '16M',
      '--json',
      '--out',
      out,
    ]);
    expect(errorLines(r.stderr)).toEqual([]);
    expect(r.code).toBe(0);
    const json = JSON.parse(r.stdout);
    expect(Object.keys(json)).toEqual(['workers', 'algo', 'tcpReferenceMBps', 'results']);
    expect(json).toMatchObject({ workers: 2, algo: 'ring' });
    // Loopback TCP moves at least tens of MB/s even on a busy machine.
    expect(json.tcpReferenceMBps).toBeGreaterThan(20);
    expectConsistent(json, [1024, 65536]);

    const file = JSON.parse(await readFile(join(out, 'allreduce-ring-none-n2.json'), 'utf8'));
    expect(file.results).toHaveLength(2);
    expect(file.results[1].iterationMs).toHaveLength(3);
    expect(file.tcpRounds.streamMBps).toHaveLength(6);
    expect(file.compression).toBe('none');
    const md = await readFile(join(out, 'allreduce-ring-none-n2.md'), 'utf8');
    expect(md).toMatch(/\| 64KB \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+% \|/);
  });

  it('star with bf16, 3 workers (busbw = algbw × 4/3), and the nccl-tests table', async () => {
    const r = await runCli([
      'bench',
      'allreduce',
      '--workers',
      '3',
      '--sizes',
      '4K',
      '--iters',
      '2',
      '--algo',
      'star',
      '--compression',
      'bf16',
      '--tcp-size',
      '16M',
      '--out',
      out,
    ]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^# all-reduce \(sum, float32\), 3 workers, star, compression bf16/);
    const row = r.stdout.split('\n').find((l) => /^\s+4096\s/.test(l));
    expect(row?.trim().split(/\s+/).slice(0, 5)).toEqual(['4096', '1024', 'float', 'sum', '2']);
    const file = JSON.parse(await readFile(join(out, 'allreduce-star-bf16-n3.json'), 'utf8'));
    const [res] = file.results;
    expect(res.busbwMBps).toBeCloseTo((res.algbwMBps * 4) / 3, 6);
  });

  it('refuses a world of one and sizes that are not float32 elements, in one line', async () => {
    const one = await runCli(['bench', 'allreduce', '--workers', '1', '--out', out]);
    expect(one.code).toBe(2);
    expect(one.stdout).toBe('');
    expect(errorLines(one.stderr)).toEqual(['--workers: "1" is not an integer of at least 2']);
    const odd = await runCli(['bench', 'allreduce', '--sizes', '1K,6', '--out', out]);
    expect(odd.code).toBe(2);
    expect(errorLines(odd.stderr)[0]).toMatch(/^--sizes: "6"/);
  });

  it('refuses --gloo under an interpreter that cannot run it, and on emulated links, before measuring', async () => {
    const python = join(out, 'no-such-python');
    const missing = await runCli(['bench', 'allreduce', '--gloo', python, '--out', out]);
    expect(missing.code).toBe(2);
    expect(missing.stdout).toBe('');
    expect(errorLines(missing.stderr)).toEqual([
      `--gloo: ${python} cannot run PyTorch's gloo (spawnSync ${python} ENOENT); install PyTorch there (Debian: apt-get install python3-torch) or name another interpreter`,
    ]);
    // An interpreter without PyTorch: a script that fails as Python does on the import.
    const withoutTorch = join(out, 'python-without-torch');
    await writeFile(
      withoutTorch,
      '#!/bin/sh\necho "ModuleNotFoundError: No module named \'torch\'" >&2\nexit 1\n',
      { mode: 0o755 },
    );
    const noTorch = await runCli(['bench', 'allreduce', '--gloo', withoutTorch, '--out', out]);
    expect(noTorch.code).toBe(2);
    expect(errorLines(noTorch.stderr)[0]).toContain(
      "cannot run PyTorch's gloo (ModuleNotFoundError: No module named 'torch')",
    );
    const linked = await runCli(['bench', 'allreduce', '--gloo', '--link', '50mbit', '--out', out]);
    expect(linked.code).toBe(2);
    expect(errorLines(linked.stderr)).toEqual([
      '--gloo measures on loopback only: leave out --link',
    ]);
  });
});
