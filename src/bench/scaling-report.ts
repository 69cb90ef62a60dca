import type { TopLevelSpec } from 'vega-lite';
import type { ScalingReport } from './scaling-bench.js';

/** The object `bench scaling --json` prints: exactly these fields. */
export function scalingJson(report: ScalingReport) {
  const r2 = (v: number) => Math.round(v * 100) / 100;
  const r4 = (v: number) => Math.round(v * 10000) / 10000;
  return {
    model: report.model,
    results: report.results.map((r) => ({
      workers: r.workers,
      imagesPerSec: r2(r.imagesPerSec),
      scalingEfficiency: r4(r.scalingEfficiency),
      distributionEfficiency: r4(r.distributionEfficiency),
      computeMs: r2(r.computeMs),
      allreduceMs: r2(r.allreduceMs),
      waitMs: r2(r.waitMs),
      dataMs: r2(r.dataMs),
    })),
  };
}

function heading(report: ScalingReport): string {
  return (
    `${report.model}, ${report.allreduce} all-reduce` +
    (report.compression === 'none' ? '' : ` with ${report.compression} gradients`) +
    (report.overlap === false ? ', the all-reduce after the backward pass (--no-overlap)' : '') +
    (report.link ? ` over emulated ${report.link} links` : '') +
    `, batch ${report.batchSize} per worker, ` +
    `${report.steps} steps (the first ${report.warmupSteps} left out)` +
    (report.rounds > 1 ? `, mean of ${report.rounds} alternating rounds` : '')
  );
}

/** Markdown: the table of results (times are per step, ms). */
export function scalingMarkdown(report: ScalingReport, command: string): string {
  return [
    `### Scaling: ${heading(report)}`,
    '',
    `\`${command}\``,
    '',
    '| workers | images/s | scaling eff. | distribution eff. | per round | independent images/s | step (ms) | compute | all-reduce | wait | data | apply | sync share |',
    '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...report.results
      .map((r) =>
        [
          r.workers,
          r.imagesPerSec.toFixed(1),
          r.scalingEfficiency.toFixed(3),
          r.distributionEfficiency.toFixed(3),
          r.roundEfficiencies.map((e) => e.toFixed(3)).join(', '),
          r.independentImagesPerSec.toFixed(1),
          r.stepMs.toFixed(0),
          r.computeMs.toFixed(0),
          r.allreduceMs.toFixed(1),
          r.waitMs.toFixed(1),
          r.dataMs.toFixed(1),
          r.applyMs.toFixed(1),
          `${(100 * r.syncShare).toFixed(1)}%`,
        ].join(' | '),
      )
      .map((line) => `| ${line} |`),
    '',
  ].join('\n');
}

/** The terminal table. */
export function formatScalingTable(report: ScalingReport): string {
  const head = [
    'workers',
    'images/s',
    'scaling',
    'distrib.',
    'indep. img/s',
    'compute',
    'allreduce',
    'wait',
    'data',
  ];
  const rows = report.results.map((r) => [
    String(r.workers),
    r.imagesPerSec.toFixed(1),
    r.scalingEfficiency.toFixed(3),
    r.distributionEfficiency.toFixed(3),
    r.independentImagesPerSec.toFixed(1),
    `${r.computeMs.toFixed(0)} ms`,
    `${r.allreduceMs.toFixed(1)} ms`,
    `${r.waitMs.toFixed(1)} ms`,
    `${r.dataMs.toFixed(1)} ms`,
  ]);
  const width = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padStart(width[i])).join('  ');
  return `# ${heading(report)}\n${[head, ...rows].map(line).join('\n')}\n`;
}

/** Throughput against N (measured, independent runs, linear) and both efficiencies against N. */
export function scalingChartSpec(report: ScalingReport): TopLevelSpec {
  const one = report.results.find((r) => r.workers === 1)?.imagesPerSec ?? Number.NaN;
  const throughput = report.results.flatMap((r) => [
    { workers: r.workers, series: `${report.allreduce} all-reduce`, value: r.imagesPerSec },
    { workers: r.workers, series: 'N independent runs', value: r.independentImagesPerSec },
    { workers: r.workers, series: 'N × one worker', value: r.workers * one },
  ]);
  const efficiency = report.results.flatMap((r) => [
    { workers: r.workers, series: 'scaling', value: r.scalingEfficiency },
    { workers: r.workers, series: 'distribution', value: r.distributionEfficiency },
  ]);
  const x = {
    field: 'workers',
    type: 'quantitative' as const,
    title: 'workers (N)',
    scale: { type: 'log' as const, base: 2 },
    axis: { values: report.results.map((r) => r.workers), format: 'd' },
  };
  const color = { field: 'series', type: 'nominal' as const, title: null };
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: heading(report),
    hconcat: [
      {
        width: 320,
        height: 240,
        data: { values: throughput },
        mark: { type: 'line', point: true },
        encoding: { x, y: { field: 'value', type: 'quantitative', title: 'images/s' }, color },
      },
      {
        width: 320,
        height: 240,
        data: { values: efficiency },
        mark: { type: 'line', point: true },
        encoding: {
          x,
          y: {
            field: 'value',
            type: 'quantitative',
            title: 'efficiency',
            scale: { domain: [0, 1.1] },
          },
          color,
        },
      },
    ],
    resolve: { scale: { color: 'independent' } },
  };
}
