import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { formatDuration, TrainingProgress } from '../../src/shared/training/training-progress.js';

/** A terminal of 80 columns that keeps what is written to it. */
class Terminal80 extends Writable {
  readonly isTTY = true;
  readonly columns = 80;
  text = '';
  override _write(chunk: Buffer, _encoding: string, done: () => void): void {
    this.text += chunk.toString();
    done();
  }
}

/** The lines a terminal shows: cursor moves and clears removed, each redraw a line. */
function shownLines(text: string): string[] {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: ANSI escape sequences
  const plain = text.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '\n');
  return plain
    .split(/[\r\n]/)
    .map((l) => l.trimEnd())
    .filter((l) => l.length > 0);
}

describe('TrainingProgress in an 80-column terminal', () => {
  it('keeps the ETA and the validation accuracy on the line', () => {
    const terminal = new Terminal80();
    const progress = new TrainingProgress({
      totalSteps: 900,
      stepsPerEpoch: 90,
      stream: terminal as unknown as NodeJS.WriteStream,
    });
    // Wide figures: a two-digit loss, 100% accuracy, a five-digit speed.
    const figures = { loss: 12.3456, accuracy: 1, imagesPerSec: 23456 };
    for (let step = 1; step <= 90; step++) progress.update({ step, epoch: 0, ...figures });
    progress.evaluated(90, 0, 0.4567, 1.5);
    for (let step = 91; step <= 95; step++) progress.update({ step, epoch: 1, ...figures });
    progress.stop();

    const lines = shownLines(terminal.text);
    const bars = lines.filter((l) => l.startsWith('ep '));
    expect(bars.length).toBeGreaterThan(1);
    for (const line of bars) expect(line.length).toBeLessThanOrEqual(80);
    const epochOne = bars.filter((l) => l.startsWith('ep 1/10'));
    expect(epochOne.at(-1)).toMatch(/ETA \S+ val 45\.7%$/);
    const epochTwo = bars.filter((l) => l.startsWith('ep 2/10'));
    // The next epoch's bar still shows the latest validation accuracy.
    expect(epochTwo.at(-1)).toMatch(/loss 12\.3456 acc 100\.0% 23456 img\/s ETA \S+ val 45\.7%$/);
  });

  it('estimates the time left in the whole run, not in the epoch, at the pace of this process', async () => {
    const progress = new TrainingProgress({ totalSteps: 100, stepsPerEpoch: 10, startStep: 50 });
    await new Promise((resolve) => setTimeout(resolve, 200));
    // 10 steps in about 0.2 s: the 40 steps left in the run take about 0.8 s.
    const eta = progress.eta(60);
    expect(eta).toBeGreaterThan(0.75);
    expect(eta).toBeLessThan(1.6);
    expect(progress.eta(50)).toBeNaN();
  });

  it('formats durations compactly', () => {
    expect(formatDuration(42.4)).toBe('42s');
    expect(formatDuration(723)).toBe('12m03s');
    expect(formatDuration(3 * 3600 + 7 * 60 + 30)).toBe('3h07m');
    expect(formatDuration(Number.NaN)).toBe('?');
  });
});
