import type { TopLevelSpec } from 'vega-lite';

/**
 * The run's charts as Vega-Lite specs, one set for the live dashboard (the browser compiles
 * them with the vega and vega-lite builds the server ships, and streams rows into the named
 * datasets) and for `tfjs-ddp report` (rendered to SVG and PNG by render-chart.ts). A chart's
 * data is either named (filled later) or inline.
 */
export type ChartData = { name: string } | { values: readonly object[] };

/** The step split's phases in the order they run, with the colours both pages use. */
export const PHASES = [
  { key: 'dataMs', label: 'data', color: '#9467bd' },
  { key: 'computeMs', label: 'compute', color: '#1f77b4' },
  { key: 'waitMs', label: 'wait', color: '#c7c7c7' },
  { key: 'allReduceMs', label: 'all-reduce', color: '#ff7f0e' },
  { key: 'applyMs', label: 'apply', color: '#2ca02c' },
] as const;

export type PhaseTimings = { rank: number } & Record<(typeof PHASES)[number]['key'], number>;

/** Per-rank timings as the long rows the stacked bar reads: {rank, phase, order, ms}. */
export function splitRows(split: readonly PhaseTimings[]): object[] {
  return split.flatMap((r) =>
    PHASES.map((p, order) => ({ rank: `rank ${r.rank}`, phase: p.label, order, ms: r[p.key] })),
  );
}

const base = (width: number, title: string) =>
  ({
    title: { text: title, anchor: 'start', fontSize: 14 },
    width,
    height: Math.round(width * 0.45),
    config: { font: 'sans-serif', view: { stroke: null }, axis: { grid: true, gridOpacity: 0.4 } },
  }) as const;

/**
 * Training `field` per step (a line) and the validation value per evaluation (points), e.g.
 * loss or accuracy. Rows: steps {step, [field]}, evals {step, [field]}.
 */
export function curveSpec(
  field: 'loss' | 'accuracy',
  steps: ChartData,
  evals: ChartData,
  width: number,
): TopLevelSpec {
  const title = field === 'loss' ? 'Loss' : 'Accuracy';
  const y = {
    field,
    type: 'quantitative',
    title,
    ...(field === 'accuracy' ? { axis: { format: '%' }, scale: { domain: [0, 1] } } : {}),
  } as const;
  const x = { field: 'step', type: 'quantitative', title: 'step' } as const;
  const color = {
    datum: 'training',
    type: 'nominal',
    scale: { domain: ['training', 'validation'], range: ['#1f77b4', '#d62728'] },
    legend: { title: null, orient: 'bottom' },
  } as const;
  return {
    ...base(width, title),
    layer: [
      {
        data: steps,
        mark: { type: 'line', strokeWidth: 1.5, clip: true },
        encoding: { x, y, color },
      },
      {
        data: evals,
        mark: { type: 'line', point: { size: 50, filled: true }, strokeDash: [4, 3] },
        encoding: { x, y, color: { ...color, datum: 'validation' } },
      },
    ],
  } as TopLevelSpec;
}

/** One numeric field of the step rows over the steps: images/s, all-reduce MB/s. */
export function stepSeriesSpec(
  field: string,
  title: string,
  steps: ChartData,
  width: number,
  color = '#2ca02c',
): TopLevelSpec {
  return {
    ...base(width, title),
    data: steps,
    mark: { type: 'line', strokeWidth: 1.5, color },
    encoding: {
      x: { field: 'step', type: 'quantitative', title: 'step' },
      y: { field, type: 'quantitative', title },
    },
  } as TopLevelSpec;
}

/** A horizontal stacked bar per rank (rows of splitRows): a straggler's bar is the long one. */
export function stepSplitSpec(rows: ChartData, width: number, title: string): TopLevelSpec {
  return {
    ...base(width, title),
    height: { step: 28 },
    data: rows,
    mark: { type: 'bar' },
    encoding: {
      y: { field: 'rank', type: 'nominal', title: null, sort: 'ascending' },
      x: { field: 'ms', type: 'quantitative', title: 'ms per step', stack: 'zero' },
      color: {
        field: 'phase',
        type: 'nominal',
        title: null,
        scale: { domain: PHASES.map((p) => p.label), range: PHASES.map((p) => p.color) },
        legend: { orient: 'bottom' },
      },
      order: { field: 'order', type: 'quantitative' },
      tooltip: [
        { field: 'rank', type: 'nominal' },
        { field: 'phase', type: 'nominal' },
        { field: 'ms', type: 'quantitative', format: '.1f' },
      ],
    },
  } as TopLevelSpec;
}

/** Accuracy per class, rows {class, accuracy}. */
export function perClassSpec(rows: ChartData, width: number): TopLevelSpec {
  return {
    ...base(width, 'Validation accuracy per class'),
    data: rows,
    mark: { type: 'bar', color: '#1f77b4' },
    encoding: {
      x: { field: 'class', type: 'nominal', title: null, sort: null },
      y: { field: 'accuracy', type: 'quantitative', title: 'accuracy', axis: { format: '%' } },
    },
  } as TopLevelSpec;
}

/** The confusion matrix as a heat map, rows {actual, predicted, count}. */
export function confusionSpec(
  rows: ChartData,
  classes: readonly string[],
  width: number,
): TopLevelSpec {
  const axis = { sort: [...classes] };
  return {
    ...base(width, 'Confusion matrix (rows: true class)'),
    height: width,
    data: rows,
    encoding: {
      x: { field: 'predicted', type: 'ordinal', ...axis },
      y: { field: 'actual', type: 'ordinal', ...axis },
    },
    layer: [
      {
        mark: 'rect',
        encoding: {
          color: { field: 'count', type: 'quantitative', scale: { scheme: 'blues' }, legend: null },
        },
      },
      {
        mark: { type: 'text', fontSize: 10 },
        encoding: {
          text: { field: 'count', type: 'quantitative' },
          color: { condition: { test: 'datum.count > 0', value: '#222' }, value: '#bbb' },
        },
      },
    ],
  } as TopLevelSpec;
}
