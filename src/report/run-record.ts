import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { UserError } from '../shared/errors.js';
import type { PhaseTimings } from '../shared/observe/run-charts.js';
import type { EvalMetrics, StepMetrics } from '../shared/training/metrics-writer.js';
import {
  CONFIG_FILE,
  METRICS_FILE,
  MODEL_DIR,
  MODEL_METADATA_FILE,
} from '../shared/training/run-folder.js';

/** A line of metrics.jsonl that is neither a step nor an evaluation (membership, checkpoint). */
export interface RunNote {
  step: number;
  time?: string;
  text: string;
}

/** What a run folder says about the run, for the report. */
export interface RunRecord {
  runDir: string;
  config: Record<string, unknown>;
  steps: StepMetrics[];
  evals: EvalMetrics[];
  /** Mean ms per phase of each rank over the run (without the first step: start-up). */
  split: PhaseTimings[];
  notes: RunNote[];
  /** Whether the run exported a model (<run>/model), which the report can evaluate. */
  hasModel: boolean;
}

type RankTimings = PhaseTimings;
type StepLine = StepMetrics & { ranks?: RankTimings[] };

/**
 * Reads a run folder: config.json and metrics.jsonl (required: without them there is no run
 * to report on), and whether model/ holds an exported model. Lines it does not know are
 * skipped, so that a report can be made of a run written by an older or newer tfjs-ddp.
 */
export async function readRunRecord(runDir: string): Promise<RunRecord> {
  const configFile = join(runDir, CONFIG_FILE);
  const metricsFile = join(runDir, METRICS_FILE);
  for (const file of [configFile, metricsFile]) {
    if (!existsSync(file)) {
      throw new UserError(`${file} is missing: give the folder of a run of \`tfjs-ddp train\``);
    }
  }
  let config: Record<string, unknown>;
  try {
    config = JSON.parse(await readFile(configFile, 'utf8'));
  } catch {
    throw new UserError(`${configFile} is not valid JSON`);
  }
  const steps: StepLine[] = [];
  const evals: EvalMetrics[] = [];
  const notes: RunNote[] = [];
  const lines = (await readFile(metricsFile, 'utf8')).split('\n');
  for (const [i, line] of lines.entries()) {
    if (line.trim() === '') continue;
    let record: { type?: string; step?: number; time?: string; [key: string]: unknown };
    try {
      record = JSON.parse(line);
    } catch {
      throw new UserError(`${metricsFile}:${i + 1} is not valid JSON`);
    }
    if (record.type === 'step') steps.push(record as unknown as StepLine);
    else if (record.type === 'eval') evals.push(record as unknown as EvalMetrics);
    else if (typeof record.step === 'number') notes.push(noteOf(record));
  }
  return {
    runDir,
    config,
    steps,
    evals,
    split: meanSplit(steps.slice(1)),
    notes,
    hasModel: existsSync(join(runDir, MODEL_DIR, MODEL_METADATA_FILE)),
  };
}

function noteOf(record: { type?: string; step?: number; time?: string }): RunNote {
  const r = record as Record<string, unknown>;
  const text =
    record.type === 'membership'
      ? `membership generation ${r.generation}: ${r.worldSize} workers (${r.reason})`
      : record.type === 'checkpoint'
        ? `checkpoint: ${(Number(r.bytes) / 1e6).toFixed(1)} MB in ${Number(r.durationMs).toFixed(0)} ms`
        : String(record.type);
  return { step: record.step as number, time: record.time, text };
}

/** Per-rank means where the steps carry them; otherwise one row of the combined timings. */
function meanSplit(steps: readonly StepLine[]): PhaseTimings[] {
  const byRank = new Map<number, RankTimings[]>();
  for (const s of steps) {
    const ranks = s.ranks ?? (s.timings ? [{ rank: 0, ...s.timings }] : []);
    for (const r of ranks) byRank.set(r.rank, [...(byRank.get(r.rank) ?? []), r]);
  }
  const keys = ['dataMs', 'computeMs', 'waitMs', 'allReduceMs', 'applyMs'] as const;
  return [...byRank.entries()]
    .sort(([a], [b]) => a - b)
    .map(([rank, all]) => {
      const row = { rank } as PhaseTimings;
      for (const k of keys) row[k] = all.reduce((s, r) => s + r[k], 0) / all.length;
      return row;
    });
}
