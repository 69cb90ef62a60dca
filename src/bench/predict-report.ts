import type { TopLevelSpec } from 'vega-lite';
import { formatBytes } from './byte-sizes.js';
import {
  CHECK_TOLERANCE,
  type FittedLink,
  type PredictCheck,
  type PredictInputs,
  type PredictRow,
} from './predict-bench.js';
import type { OverlapProfile } from './readiness-profile.js';

export interface PredictReport {
  inputs: Omit<PredictInputs, 'scaling'>;
  rows: PredictRow[];
  checks: PredictCheck[];
}

const scenario = (r: { algo: string; compression: string; overlap?: boolean }) =>
  `${r.algo}${r.compression === 'none' ? '' : `+${r.compression}`}${r.overlap ? '+overlap' : ''}`;

function linkLine(l: FittedLink): string {
  const mbps = l.betaMsPerByte > 0 ? `${(1 / l.betaMsPerByte / 1000).toFixed(0)} MB/s` : '∞';
  return `${scenario(l)}: α = ${(l.alphaMs * 1000).toFixed(1)} µs, 1/β = ${mbps} (from ${l.source})`;
}

function overlapLine(o: OverlapProfile): string {
  const pct = (x: number) => `${(100 * x).toFixed(0)}%`;
  const ready = o.buckets.map((b) => pct(b.readyFraction)).join(', ');
  return `+overlap: each bucket's all-reduce starts once its gradients are final, one bucket after another; forward ${pct(o.forwardShare)} and backward ${pct(o.backwardShare)} of the step, buckets (last layers first) final at ${ready} of the backward pass; from ${o.source}`;
}

function blocks(report: PredictReport) {
  const keys = [...new Set(report.rows.map((r) => `${r.compute}/${r.accumulate}`))];
  return keys.map((key) => {
    const rows = report.rows.filter((r) => `${r.compute}/${r.accumulate}` === key);
    const { compute, computeMs, accumulate } = rows[0];
    const what =
      compute === 'measured' ? 'measured compute' : `compute ${report.inputs.speedup}× faster`;
    const title = `${what} (${computeMs.toFixed(1)} ms per micro-batch of ${report.inputs.batchSize}), ${accumulate} micro-batch${accumulate > 1 ? 'es' : ''} per all-reduce`;
    const scenarios = [...new Set(rows.map(scenario))];
    const workers = [...new Set(rows.map((r) => r.workers))];
    const cell = (n: number, s: string) =>
      rows.find((r) => r.workers === n && scenario(r) === s) as PredictRow;
    return { title, scenarios, workers, cell };
  });
}

function header(report: PredictReport): string[] {
  const i = report.inputs;
  return [
    `${i.model}: ${formatBytes(i.gradientBytes)}B of float32 gradients (${(i.gradientBytes / 4).toLocaleString('en-US')} parameters), buckets of ${formatBytes(i.bucketBytes)}B after a first of ${formatBytes(i.firstBucketBytes)}B`,
    ...i.links.map(linkLine),
    `powersgd: rank ${i.powerSgd.rank}, ${formatBytes(i.powerSgd.sentBytes)}B all-reduced per step in 2 operations per bucket, ${i.powerSgd.codecMs.toFixed(0)} ms of CPU per step for its products (measured here, not sped up with the compute)`,
    overlapLine(i.overlap),
  ];
}

/** Width of a terminal column: the longest scenario name, ring+powersgd+overlap, and a gap. */
const COLUMN = 23;

/** The terminal tables: images/s and scaling efficiency per N and scenario. */
export function formatPredictTables(report: PredictReport): string {
  const out = header(report).map((l) => `# ${l}`);
  for (const b of blocks(report)) {
    out.push(
      '',
      `# ${b.title}`,
      ['N'.padStart(5), ...b.scenarios.map((s) => s.padStart(COLUMN))].join(''),
    );
    for (const n of b.workers) {
      const cells = b.scenarios.map((s) => {
        const r = b.cell(n, s);
        return `${r.imagesPerSec.toFixed(1)} (${(r.scalingEfficiency * 100).toFixed(0)}%)`.padStart(
          COLUMN,
        );
      });
      out.push([String(n).padStart(5), ...cells].join(''));
    }
  }
  if (report.checks.length > 0) out.push('', ...checkLines(report.checks).map((l) => `# ${l}`));
  return `${out.join('\n')}\n`;
}

/** "+4.2% (within 15%)": how far a predicted step is from the measured one. */
function stepErrorText(c: PredictCheck): string {
  const within = Math.abs(c.stepError) <= CHECK_TOLERANCE ? 'within' : 'OUTSIDE';
  const sign = c.stepError >= 0 ? '+' : '';
  return `${sign}${(100 * c.stepError).toFixed(1)}% (${within} ${100 * CHECK_TOLERANCE}%)`;
}

function checkLines(checks: PredictCheck[]): string[] {
  return checks.map(
    (c) =>
      `N=${c.workers} ${c.compression}${c.overlap ? ' overlapped' : ''} measured: step ${c.measuredStepMs.toFixed(0)} ms, all-reduce ${c.measuredAllreduceMs.toFixed(1)} ms, distribution efficiency ${c.measuredDistributionEfficiency.toFixed(3)}; ` +
      `predicted: step ${c.predictedStepMs.toFixed(0)} ms ${stepErrorText(c)}, all-reduce ${c.predictedAllreduceMs.toFixed(1)} ms, ${c.predictedDistributionEfficiency.toFixed(3)}`,
  );
}

/** Markdown: inputs, one table per block (images/s and efficiency), the check. */
export function predictMarkdown(report: PredictReport, command: string): string {
  const out = [
    `### Predicted scaling: ${report.inputs.model}${report.inputs.link ? ` (links of ${report.inputs.link})` : ''}`,
    '',
    `\`${command}\``,
    '',
    ...header(report).map((l) => `- ${l}`),
  ];
  for (const b of blocks(report)) {
    out.push('', `**${b.title}**: images/s (scaling efficiency)`, '');
    out.push(
      `| N | ${b.scenarios.join(' | ')} |`,
      `| ---: |${' ---: |'.repeat(b.scenarios.length)}`,
    );
    for (const n of b.workers) {
      const cells = b.scenarios.map((s) => {
        const r = b.cell(n, s);
        return `${r.imagesPerSec.toFixed(1)} (${(r.scalingEfficiency * 100).toFixed(0)}%)`;
      });
      out.push(`| ${n} | ${cells.join(' | ')} |`);
    }
  }
  if (report.checks.length > 0) {
    out.push('', '**Check against the measured runs**', '');
    out.push(
      '| compression | N | step ms (measured / predicted) | predicted − measured | all-reduce ms (measured / predicted) | images/s (measured / predicted) | distribution eff. (measured / predicted) |',
    );
    out.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: |');
    for (const c of report.checks) {
      out.push(
        `| ${c.compression}${c.overlap ? ' + overlap' : ''} | ${c.workers} | ${c.measuredStepMs.toFixed(0)} / ${c.predictedStepMs.toFixed(0)} | ${stepErrorText(c)} | ${c.measuredAllreduceMs.toFixed(1)} / ${c.predictedAllreduceMs.toFixed(1)} | ${c.measuredImagesPerSec.toFixed(1)} / ${c.predictedImagesPerSec.toFixed(1)} | ${c.measuredDistributionEfficiency.toFixed(3)} / ${c.predictedDistributionEfficiency.toFixed(3)} |`,
      );
    }
  }
  return `${out.join('\n')}\n`;
}

/** Scaling efficiency against N, one line per scenario, a panel per compute speed. */
export function predictChartSpec(report: PredictReport): TopLevelSpec {
  const values = report.rows.map((r) => ({
    workers: r.workers,
    efficiency: r.scalingEfficiency,
    scenario: scenario(r),
    accumulate: `k = ${r.accumulate}`,
    compute:
      r.compute === 'measured' ? 'measured compute' : `compute ${report.inputs.speedup}× faster`,
  }));
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: `${report.inputs.model}: predicted scaling efficiency`,
    data: { values },
    facet: {
      column: {
        field: 'compute',
        type: 'nominal',
        title: null,
        sort: ['measured compute', `compute ${report.inputs.speedup}× faster`],
      },
    },
    spec: {
      width: 300,
      height: 220,
      mark: { type: 'line', point: true },
      encoding: {
        x: {
          field: 'workers',
          type: 'quantitative',
          title: 'workers (N)',
          scale: { type: 'log', base: 2 },
        },
        y: {
          field: 'efficiency',
          type: 'quantitative',
          title: 'scaling efficiency',
          scale: { domain: [0, 1] },
        },
        color: { field: 'scenario', type: 'nominal', title: null },
        strokeDash: {
          field: 'accumulate',
          type: 'nominal',
          title: 'micro-batches per all-reduce',
          legend: { symbolType: 'stroke' },
        },
      },
    },
  };
}
