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
  header.push('step ms', 'of which apply ms', 'peak RSS MiB', 'measured');
  const cells = rows.map((r) => [
    r.model,
    r.params.toLocaleString('en-US'),
    String(r.batch),
    String(r.imagesPerSec),
    String(r.bestImagesPerSec),
    String(r.cpuImagesPerSec),
    String(r.medianStepMs),
    String(medianOf(r.applyMs)),
    String(r.peakRssMiB),
    `${r.date.slice(0, 10)}, ${r.warmupSteps}+${r.stepMs.length} steps`,
  ]);
  const numeric = header.map((_, i) => i > 0 && i < header.length - 1);
  lines.push(...markdownTable(header, numeric, cells));
  if (rows.length > 0) lines.push('', `Device: ${rows[0].device}; ${rows[0].cpu}.`);
  return `${lines.join('\n')}\n`;
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
