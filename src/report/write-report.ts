import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TopLevelSpec } from 'vega-lite';
import { DownsampledSeries } from '../shared/observe/downsampled-series.js';
import { renderChart } from '../shared/observe/render-chart.js';
import {
  confusionSpec,
  curveSpec,
  perClassSpec,
  splitRows,
  stepSeriesSpec,
  stepSplitSpec,
} from '../shared/observe/run-charts.js';
import type { EvalSummary } from '../shared/training/evaluator.js';
import type { RunRecord } from './run-record.js';

export const REPORT_FILE = 'report.html';
export const CHARTS_DIR = 'report-charts';
/** Points per curve in the report: enough for the eye, small enough for an SVG. */
const MAX_POINTS = 1500;
const WIDTH = 500;

export interface WrittenReport {
  html: string;
  charts: string[];
}

/**
 * Writes `report.html` into `outDir`: self-contained (the charts inline as SVG, the style in
 * the page), so that it can be attached to a pull request, with each chart also as SVG and
 * PNG under report-charts/. `evaluation` adds per-class accuracy and the confusion matrix.
 */
export async function writeReport(
  run: RunRecord,
  outDir: string,
  evaluation?: EvalSummary,
): Promise<WrittenReport> {
  const charts = chartSpecs(run, evaluation);
  await mkdir(join(outDir, CHARTS_DIR), { recursive: true });
  const figures: string[] = [];
  const files: string[] = [];
  for (const [name, spec] of charts) {
    const chart = await renderChart(spec);
    const base = join(outDir, CHARTS_DIR, name);
    await writeFile(`${base}.svg`, chart.svg);
    files.push(`${base}.svg`);
    if (chart.png) {
      await writeFile(`${base}.png`, chart.png);
      files.push(`${base}.png`);
    }
    figures.push(`<figure id="chart-${name}">${chart.svg}</figure>`);
  }
  const html = join(outDir, REPORT_FILE);
  await writeFile(html, page(run, figures, evaluation));
  return { html, charts: files };
}

function chartSpecs(run: RunRecord, evaluation?: EvalSummary): [string, TopLevelSpec][] {
  const series = new DownsampledSeries<{
    step: number;
    loss: number;
    accuracy: number;
    imagesPerSec: number;
  }>(MAX_POINTS);
  for (const s of run.steps) {
    series.push({
      step: s.step,
      loss: s.loss,
      accuracy: s.accuracy,
      imagesPerSec: s.imagesPerSec,
    });
  }
  const steps = { values: series.values() };
  const evals = { values: run.evals.map((e) => ({ ...e })) };
  const charts: [string, TopLevelSpec][] = [
    ['loss', curveSpec('loss', steps, evals, WIDTH)],
    ['accuracy', curveSpec('accuracy', steps, evals, WIDTH)],
    ['throughput', stepSeriesSpec('imagesPerSec', 'images/s', steps, WIDTH)],
  ];
  if (run.split.length > 0) {
    charts.push([
      'step-split',
      stepSplitSpec(
        { values: splitRows(run.split) },
        WIDTH,
        'Step split per rank (ms, mean over the run)',
      ),
    ]);
  }
  if (evaluation) {
    const classes = evaluation.perClass.map((c) => c.class);
    charts.push(['per-class', perClassSpec({ values: evaluation.perClass }, WIDTH)]);
    const cells = evaluation.confusion.flatMap((row, t) =>
      row.map((count, p) => ({ actual: classes[t], predicted: classes[p], count })),
    );
    charts.push(['confusion', confusionSpec({ values: cells }, classes, 420)]);
  }
  return charts;
}

function page(run: RunRecord, figures: string[], evaluation?: EvalSummary): string {
  const last = run.steps.at(-1);
  const lastEval = run.evals.at(-1);
  const pct = (x: number | undefined) => (x === undefined ? 'n/a' : `${(100 * x).toFixed(2)}%`);
  const timed = run.steps.slice(1);
  const meanRate =
    timed.length > 0 ? timed.reduce((s, x) => s + x.imagesPerSec, 0) / timed.length : undefined;
  const facts: [string, string][] = [
    ['model', String(run.config.model ?? 'unknown')],
    ['steps', last ? String(last.step) : '0'],
    ['workers', String(last?.workers ?? 1)],
    ['final training loss', last ? last.loss.toFixed(4) : 'n/a'],
    ['final validation accuracy', pct(lastEval?.accuracy)],
    ['mean images/s', meanRate === undefined ? 'n/a' : Math.round(meanRate).toLocaleString('en')],
  ];
  if (evaluation) facts.push(['accuracy of the exported model', pct(evaluation.accuracy)]);
  const notes = run.notes
    .map((n) => `<li>after step ${n.step}: ${escapeHtml(n.text)}</li>`)
    .join('');
  return `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>tfjs-ddp report: ${escapeHtml(String(run.config.model ?? ''))}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5em 2em; color: #222; max-width: 1300px; }
h1 { font-size: 1.5em; } h2 { font-size: 1.1em; margin-top: 1.5em; }
.facts { border-collapse: collapse; } .facts td { padding: 0.2em 1.2em 0.2em 0; }
.facts td:first-child { color: #666; }
.charts { display: flex; flex-wrap: wrap; gap: 1em; } figure { margin: 0; }
pre { background: #f6f6f6; padding: 0.8em; font-size: 0.85em; overflow: auto; }
</style></head>
<body>
<h1>tfjs-ddp run report</h1>
<p>${escapeHtml(run.runDir)}</p>
<table class="facts">${facts.map(([k, v]) => `<tr><td>${k}</td><td><b>${escapeHtml(v)}</b></td></tr>`).join('')}</table>
<h2>Charts</h2>
<div class="charts">${figures.join('\n')}</div>
<h2>Membership and checkpoints</h2>
${notes ? `<ul id="events">${notes}</ul>` : '<p id="events">No membership changes or checkpoint records in metrics.jsonl.</p>'}
<h2>Configuration</h2>
<pre id="config">${escapeHtml(JSON.stringify(run.config, null, 2))}</pre>
</body></html>
`;
}

function escapeHtml(text: string): string {
  return text.replace(
    /[&<>"]/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c] as string,
  );
}
