import { type Command, Option } from 'commander';
import type { Compression } from '../shared/collectives/collective.js';
import { UserError } from '../shared/errors.js';
import { log } from '../shared/logging/logger.js';
import { GRADIENT_PROCESS_NODE_FLAGS } from '../shared/transport/grpc-settings.js';
import { runAllreduceBench } from './allreduce-bench.js';
import { allreduceJson, allreduceMarkdown, formatNcclTable } from './allreduce-report.js';
import { parseByteSizes } from './byte-sizes.js';
import { requireRootAndIproute2 } from './emulated-network.js';
import { checkGlooPython } from './gloo-reference.js';
import { type LinkRate, parseLinkRate } from './link-rate.js';
import { writeResultFiles } from './result-files.js';

interface AllreduceFlags {
  workers: string;
  sizes: string;
  algo: 'ring' | 'star';
  compression: Compression;
  iters?: string;
  chunkSize: string;
  timeout: string;
  tcpSize?: string;
  link?: string;
  gloo?: string | true;
  nodeFlags: string;
  json?: boolean;
  out: string;
}

/** `tfjs-ddp bench allreduce`. */
export function addAllreduceCommand(bench: Command): void {
  bench
    .command('allreduce')
    .description(
      'all-reduce bandwidth of N worker processes over gRPC on this host (nccl-tests layout), ' +
        'against raw TCP measured in the same run; every result is verified',
    )
    .option('--workers <n>', 'worker processes (at least 2)', '2')
    .option(
      '--sizes <list>',
      'buffer sizes in bytes, K/M/G = 2^10/2^20/2^30',
      '1K,64K,1M,16M,64M,256M',
    )
    .addOption(
      new Option('--algo <name>', 'all-reduce algorithm').choices(['ring', 'star']).default('ring'),
    )
    .addOption(
      new Option('--compression <kind>', 'wire encoding of the values')
        .choices(['none', 'bf16', 'fp16'])
        .default('none'),
    )
    .option('--iters <k>', 'timed iterations per size (default: 20 up to 1M, 10 up to 16M, then 5)')
    .option('--chunk-size <bytes>', 'largest chunk payload on the wire', '1M')
    .option('--timeout <s>', 'deadline of every wait inside the all-reduce, in seconds', '60')
    .option(
      '--tcp-size <bytes>',
      'bytes per raw TCP round (3 rounds before, 3 after; default 256M, with --link 2 s of the link)',
    )
    .option(
      '--link <rate>',
      'every process in its own network namespace, on links shaped to RATE each way ' +
        '(e.g. 50mbit, 1gbit; needs root and iproute2)',
    )
    .option(
      '--gloo [python]',
      "also all-reduce every size with PyTorch's gloo right after ours, under PYTHON " +
        '(default /usr/bin/python3, which needs PyTorch: Debian python3-torch); loopback only',
    )
    .option(
      '--node-flags <flags>',
      'flags for node in the rank processes ("none": none; default: those training should use)',
      GRADIENT_PROCESS_NODE_FLAGS.join(' '),
    )
    .option(
      '--json',
      'print only {workers, algo, tcpReferenceMBps, results} (and link, with --link) as one JSON object',
    )
    .option('--out <dir>', 'folder for the JSON and Markdown results', 'bench/results')
    .action(async (flags: AllreduceFlags) => {
      const workers = integer(flags.workers, '--workers', 2);
      const iters = flags.iters === undefined ? undefined : integer(flags.iters, '--iters', 1);
      const [chunkBytes] = parseByteSizes(flags.chunkSize, '--chunk-size');
      const link = flags.link === undefined ? undefined : parseLinkRate(flags.link);
      if (flags.gloo !== undefined && link) {
        throw new UserError('--gloo measures on loopback only: leave out --link');
      }
      // Before anything starts: a run that cannot build its network measures nothing.
      if (link) requireRootAndIproute2();
      const python = flags.gloo === true ? '/usr/bin/python3' : flags.gloo;
      const gloo = python === undefined ? undefined : { python, torch: checkGlooPython(python) };
      const report = await runAllreduceBench({
        workers,
        sizes: parseByteSizes(flags.sizes, '--sizes'),
        algo: flags.algo,
        compression: flags.compression,
        iters,
        chunkBytes,
        timeoutMs: integer(flags.timeout, '--timeout', 1) * 1000,
        tcpBytes:
          flags.tcpSize === undefined
            ? defaultTcpBytes(link)
            : parseByteSizes(flags.tcpSize, '--tcp-size')[0],
        tcpRounds: 3,
        nodeFlags: flags.nodeFlags === 'none' ? [] : flags.nodeFlags.split(/\s+/).filter(Boolean),
        link,
        gloo,
      });
      const command = `tfjs-ddp ${process.argv.slice(2).join(' ')}`;
      const name = `allreduce-${flags.algo}-${flags.compression}-n${workers}${link ? `-${link.text}` : ''}`;
      const paths = await writeResultFiles(flags.out, {
        [`${name}.json`]: `${JSON.stringify({ command, date: new Date().toISOString(), ...report }, null, 2)}\n`,
        [`${name}.md`]: allreduceMarkdown(report, command),
      });
      log().info({ files: paths }, `results written to ${paths.join(', ')}`);
      process.stdout.write(
        flags.json ? `${JSON.stringify(allreduceJson(report))}\n` : formatNcclTable(report),
      );
    });
}

/** 256 MiB on loopback; on an emulated link what it carries in 2 s, in whole MiB. */
function defaultTcpBytes(link: LinkRate | undefined): number {
  if (!link) return 256 << 20;
  const mib = Math.round((2 * link.bitsPerSec) / 8 / (1 << 20));
  return Math.min(256, Math.max(1, mib)) << 20;
}

function integer(text: string, flag: string, min: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min) {
    throw new UserError(`${flag}: "${text}" is not an integer of at least ${min}`);
  }
  return n;
}
