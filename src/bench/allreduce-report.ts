import type { AllreduceReport } from './allreduce-bench.js';
import { formatBytes } from './byte-sizes.js';

/**
 * The object `bench allreduce --json` prints: exactly these fields (link only with --link, gloo
 * only with --gloo).
 */
export function allreduceJson(report: AllreduceReport) {
  return {
    workers: report.workers,
    algo: report.algo,
    tcpReferenceMBps: round(report.tcpReferenceMBps, 1),
    ...(report.link && { link: report.link }),
    results: report.results.map((r) => ({
      bytes: r.bytes,
      ms: round(r.ms, 4),
      algbwMBps: round(r.algbwMBps, 2),
      busbwMBps: round(r.busbwMBps, 2),
      fractionOfTcp: round(r.fractionOfTcp, 4),
    })),
    ...(report.gloo && {
      gloo: {
        torch: report.gloo.torch,
        results: report.gloo.results.map((r) => ({
          bytes: r.bytes,
          ms: round(r.ms, 4),
          busbwMBps: round(r.busbwMBps, 2),
        })),
      },
    }),
  };
}

function title(report: AllreduceReport): string {
  const flags = report.nodeFlags.length > 0 ? report.nodeFlags.join(' ') : 'no node flags';
  return (
    `all-reduce (sum, float32), ${report.workers} workers, ${report.algo}, ` +
    `compression ${report.compression}, chunks of ${formatBytes(report.chunkBytes)}B, ` +
    `gRPC ${where(report)}, ${flags}`
  );
}

function where(report: AllreduceReport): string {
  if (!report.link) return 'on 127.0.0.1';
  const { rate, MBps } = report.link;
  return `over emulated ${rate} links (${MBps.toFixed(MBps < 10 ? 2 : 1)} MB/s each way; a network namespace per process, tc tbf)`;
}

function tcpLine(report: AllreduceReport): string {
  return (
    `raw TCP reference (one stream between two processes${report.link ? ' over the same links' : ''}, median of ${report.tcpRounds.streamMBps.length} rounds): ` +
    `${mbps(report.tcpReferenceMBps)}; both directions at once: ${mbps(report.tcpDuplexMBps)} each way`
  );
}

function glooLine(report: AllreduceReport): string | undefined {
  if (!report.gloo) return undefined;
  return (
    `PyTorch ${report.gloo.torch} gloo (${report.gloo.python}, one thread per rank, on 127.0.0.1), ` +
    'the same sizes and iterations right after ours, every result checked'
  );
}

/** How much faster than gloo the row's all-reduce is (gloo's time / ours: above 1, faster). */
function versusGloo(report: AllreduceReport, i: number): string {
  const gloo = report.gloo?.results[i];
  return gloo ? `${(gloo.ms / report.results[i].ms).toFixed(2)}×` : '';
}

function grpcLine(report: AllreduceReport): string {
  return (
    'grpc-js alone (same settings, 1 MiB messages, no encoding, no work on arrival): ' +
    `one stream ${mbps(report.grpcStreamMBps)}; both directions at once ${mbps(report.grpcDuplexMBps)} each way`
  );
}

/**
 * The nccl-tests layout (in-place columns only: the all-reduce works in place),
 * time in µs and bandwidths in GB/s (MB/s on emulated links, which are slower), plus busbw
 * as a fraction of raw TCP.
 */
export function formatNcclTable(report: AllreduceReport): string {
  const [unit, perMB] = report.link ? ['(MB/s)', 1] : ['(GB/s)', 1000];
  const gloo = glooLine(report);
  const head = [
    `# ${title(report)}`,
    `# ${tcpLine(report)}`,
    `# ${grpcLine(report)}`,
    ...(gloo ? [`# ${gloo}`] : []),
    '# every result verified element by element; time: median over iterations of the slowest rank',
    '#',
    `# ${cols(['size', 'count', 'type', 'redop', 'iters', 'time', 'algbw', 'busbw', '#wrong', 'busbw/TCP', 'cpu/rank', ...(gloo ? ['gloo', 'vs gloo'] : [])])}`,
    `# ${cols(['(B)', '(elements)', '', '', '', '(us)', unit, unit, '', '', '(ms)', ...(gloo ? ['(us)', ''] : [])])}`,
  ];
  const rows = report.results.map(
    (r, i) =>
      `  ${cols([
        String(r.bytes),
        String(r.bytes / 4),
        'float',
        'sum',
        String(r.iterations),
        (r.ms * 1000).toFixed(1),
        (r.algbwMBps / perMB).toFixed(3),
        (r.busbwMBps / perMB).toFixed(3),
        '0',
        `${(r.fractionOfTcp * 100).toFixed(1)}%`,
        r.cpuMs.toFixed(1),
        ...(report.gloo
          ? [(report.gloo.results[i].ms * 1000).toFixed(1), versusGloo(report, i)]
          : []),
      ])}`,
  );
  return `${[...head, ...rows].join('\n')}\n`;
}

/** A Markdown section with the same figures, for the results folder and the README. */
export function allreduceMarkdown(report: AllreduceReport, command: string): string {
  const gloo = glooLine(report);
  const lines = [
    `### ${title(report)}`,
    '',
    `\`${command}\``,
    '',
    `${tcpLine(report)}.`,
    `${grpcLine(report)}.`,
    ...(gloo ? [`${gloo}.`] : []),
    '',
    `| size | time (ms) | algbw (MB/s) | busbw (MB/s) | busbw / TCP | busbw / grpc-js both ways | CPU per rank (ms) | iterations |${gloo ? ' gloo (ms) | gloo busbw (MB/s) | speed vs gloo |' : ''}`,
    `| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |${gloo ? ' ---: | ---: | ---: |' : ''}`,
    ...report.results.map(
      (r, i) =>
        `| ${formatBytes(r.bytes)}B | ${r.ms.toFixed(3)} | ${r.algbwMBps.toFixed(1)} | ` +
        `${r.busbwMBps.toFixed(1)} | ${(r.fractionOfTcp * 100).toFixed(1)}% | ` +
        `${((100 * r.busbwMBps) / report.grpcDuplexMBps).toFixed(1)}% | ${r.cpuMs.toFixed(1)} | ${r.iterations} |` +
        (report.gloo
          ? ` ${report.gloo.results[i].ms.toFixed(3)} | ${report.gloo.results[i].busbwMBps.toFixed(1)} | ${versusGloo(report, i)} |`
          : ''),
    ),
    '',
  ];
  return lines.join('\n');
}

const WIDTHS = [12, 12, 6, 6, 6, 11, 8, 8, 7, 10, 9, 11, 8];

function cols(values: string[]): string {
  return values.map((v, i) => v.padStart(WIDTHS[i])).join(' ');
}

function mbps(v: number): string {
  return `${v.toFixed(v < 100 ? 1 : 0)} MB/s`;
}

function round(v: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}
