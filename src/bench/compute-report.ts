import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { UserError } from '../shared/errors.js';
import { MODEL_NAMES } from '../shared/models/zoo.js';
import type { StepMeasurement } from './compute-step.js';

/** One model's line of the compute benchmark. */
export interface ComputeRow extends StepMeasurement {
  /** From the median wall time of a step. */
  imagesPerSec: number;
  /** From the shortest wall time. */
  bestImagesPerSec: number;
  /** From the median CPU time: the figure for an idle machine. */
  cpuImagesPerSec: number;
  medianStepMs: number;
  date: string;
  cpu: string;
}

/**
 * Merges the new rows into the saved results in `dir` (one row per model) and rewrites
 * compute-<backend>.json and .md; returns their paths.
 */
export async function saveComputeResults(
  dir: string,
  backend: string,
  rows: ComputeRow[],
): Promise<string[]> {
  const resultsDir = path.resolve(dir);
  await mkdir(resultsDir, { recursive: true }).catch((error: Error) => {
    throw new UserError(`--out ${dir}: cannot write the results: ${error.message}`);
  });
  const jsonPath = path.join(resultsDir, `compute-${backend}.json`);
  const saved = await readFile(jsonPath, 'utf8').then(
    (text) => JSON.parse(text) as ComputeRow[],
    () => [] as ComputeRow[],
  );
  const merged = MODEL_NAMES.flatMap(
    (name) => rows.find((r) => r.model === name) ?? saved.find((r) => r.model === name) ?? [],
  );
  // Arrays of numbers on one line, as the project's formatter (biome) writes them.
  const json = JSON.stringify(merged, null, 2).replace(
    /\[\s+(-?[\d.e+-]+(?:,\s+-?[\d.e+-]+)*)\s+\]/g,
    (_, items: string) => `[${items.split(/,\s+/).join(', ')}]`,
  );
  const mdPath = path.join(resultsDir, `compute-${backend}.md`);
  await writeFile(jsonPath, `${json}\n`);
  await writeFile(mdPath, markdown(backend, merged));
  return [jsonPath, mdPath];
}

function markdown(backend: string, rows: ComputeRow[]): string {
  const lines = [
    `# Compute benchmark: ${backend}`,
    '',
    'Full training step (forward, loss, gradients, optimiser apply) through TrainStep on a',
    "synthetic batch, the model's recipe optimiser; median of the timed steps after warm-up;",
    'peak RSS of the process (one per model). "by CPU" divides by the step\'s CPU time, which',
    'is what counts on an idle machine when others share the cores (wall time then runs longer).',
    `Regenerate with \`tfjs-ddp bench compute --backend ${backend}\`.`,
    '',
  ];
  const header = ['model', 'params', 'batch', 'img/s (median)', 'img/s (best)', 'img/s (by CPU)'];
  header.push('step ms', 'forward ms', 'backward ms', 'apply ms', 'peak RSS MiB', 'measured');
  const cells = rows.map((r) => [
    r.model,
    r.params.toLocaleString('en-US'),
    String(r.batch),
    String(r.imagesPerSec),
    String(r.bestImagesPerSec),
    String(r.cpuImagesPerSec),
    String(r.medianStepMs),
    r.forwardMs ? String(medianOf(r.forwardMs)) : '–',
    r.backwardMs ? String(medianOf(r.backwardMs)) : '–',
    String(medianOf(r.applyMs)),
    String(r.peakRssMiB),
    `${r.date.slice(0, 10)}, ${r.warmupSteps}+${r.stepMs.length} steps`,
  ]);
  const numeric = header.map((_, i) => i > 0 && i < header.length - 1);
  lines.push(...markdownTable(header, numeric, cells));
  if (rows.length > 0) lines.push('', `Device: ${rows[0].device}; ${rows[0].cpu}.`);
  lines.push(...readinessSection(rows));
  return `${lines.join('\n')}\n`;
}

/**
 * When each bucket of the reducer's plan had its last gradient final (gradient tap): what an
 * all-reduce overlapped with the backward pass could start on. Bucket 0 holds the last layers.
 */
function readinessSection(rows: ComputeRow[]): string[] {
  const cells = rows.flatMap((r) => {
    if (!r.buckets || !r.backwardMs) return [];
    const backward = medianOf(r.backwardMs);
    return r.buckets.map((b) => {
      const ready = medianOf(b.readyMs);
      return [
        r.model,
        String(b.index),
        `${b.firstParameter}–${b.endParameter - 1}`,
        (b.bytes / 1e6).toFixed(2),
        String(ready),
        backward > 0 ? `${Math.round((100 * ready) / backward)}%` : '–',
      ];
    });
  });
  if (cells.length === 0) return [];
  const header = ['model', 'bucket', 'parameters', 'MB', 'final at ms', 'of backward'];
  return [
    '',
    '## Gradient readiness',
    '',
    "Per bucket of the reducer's default plan (1 MiB of the last layers, then 25 MiB ones towards",
    'the first): when its last gradient was final, ms after the backward pass started (median of',
    'the timed steps), i.e. when an all-reduce overlapped with the backward pass could start it.',
    '',
    ...markdownTable(header, [false, true, false, true, true, true], cells),
  ];
}

/** A Markdown table padded as the project's formatter (biome) pads it; numbers right-aligned. */
function markdownTable(header: string[], numeric: boolean[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, 3, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    `| ${cells.map((c, i) => (numeric[i] ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join(' | ')} |`;
  const rule = widths.map((w, i) => (numeric[i] ? `${'-'.repeat(w - 1)}:` : '-'.repeat(w)));
  return [line(header), `| ${rule.join(' | ')} |`, ...rows.map(line)];
}

export function medianOf(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}
