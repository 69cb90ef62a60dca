import type { ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, ROOT, runCli, startCli } from '../cli/run-cli.js';
import {
  freePort,
  launchChromium,
  PrometheusServer,
  promtoolCheck,
} from '../helpers/observe-clients.js';
import { checkBuckets, checkTrace, readSteps, type TraceEvent } from './trace-checks.js';

// One short, real 2-worker run on loopback, seen by real clients while it trains: headless
// chromium on the dashboard (behind --http-token), promtool on /metrics, a Prometheus server
// scraping it; then its trace.json and `tfjs-ddp report` on its run folder. The run is
// stopped (SIGINT: checkpoint, then exit) once the live checks are done, so that a slow
// machine makes the test slower, never wrong.

const TOKEN = 'observe-test-token';
const OUTPUT = join(ROOT, 'test', 'output', 'observe');
let scratch: string;
let runDir: string;
let httpPort: number;
let train: ChildProcess;
let exited: Promise<number | null>;
let stderr = '';
let prometheus: PrometheusServer | undefined;

const base = () => `http://127.0.0.1:${httpPort}`;
const auth = { authorization: `Bearer ${TOKEN}` };

beforeAll(async () => {
  await ensureBuilt();
  mkdirSync(OUTPUT, { recursive: true });
  scratch = mkdtempSync(join(tmpdir(), 'tfjs-ddp-observe-'));
  runDir = join(scratch, 'run');
  httpPort = await freePort();
  // Scraping starts before the target exists: Prometheus retries every second.
  prometheus = await PrometheusServer.start(`127.0.0.1:${httpPort}`, TOKEN);
  train = startCli([
    'train',
    ...['--model', 'lenet5', '--dataset', 'synthetic', '--val-size', '64'],
    ...['--steps', '2000', '--batch-size', '32', '--workers', '2', '--fingerprint-every', '0'],
    // lenet5's 0.24 MB of gradient in several buckets, each a span of the trace.
    ...['--bucket-size-mb', '0.05'],
    ...['--out', runDir, '--http-port', String(httpPort), '--http-token', TOKEN, '--trace'],
  ]);
  train.stderr?.on('data', (d) => (stderr += d));
  exited = new Promise((resolve) => train.on('close', (code) => resolve(code)));
  // The URL is printed once the coordinator listens.
  const deadline = Date.now() + 60_000;
  while (!stderr.includes(`${base()}/`)) {
    if (Date.now() > deadline || train.exitCode !== null) {
      throw new Error(`train printed no dashboard URL:\n${stderr.slice(-3000)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
});

afterAll(async () => {
  if (train && train.exitCode === null) train.kill('SIGKILL');
  await prometheus?.stop();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

/** Waits until the run reports `steps` steps on /api/state. */
async function untilStep(steps: number): Promise<void> {
  for (;;) {
    const state = (await (await fetch(`${base()}/api/state`, { headers: auth })).json()) as {
      step: number;
    };
    if (state.step >= steps) return;
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('a live 2-worker run', () => {
  it('shows nothing without the token, and a login form on /', async () => {
    expect((await fetch(`${base()}/metrics`)).status).toBe(401);
    expect((await fetch(`${base()}/api/state`)).status).toBe(401);
    const wrong = await fetch(`${base()}/api/state`, { headers: { authorization: 'Bearer x' } });
    expect(wrong.status).toBe(401);
    const page = await (await fetch(`${base()}/`)).text();
    expect(page).toContain('name="token"');
    expect(page).not.toContain('dashboard.js');
    expect(stderr).not.toContain(TOKEN);
  });

  it('draws the curves, the step split and both workers in chromium, and moves as steps complete', async () => {
    await untilStep(3);
    const { context, close } = await launchChromium();
    try {
      const page = await context.newPage();
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(`${base()}/`);
      await page.fill('input[name="token"]', TOKEN);
      await Promise.all([page.waitForURL(`${base()}/`), page.click('button')]);
      for (const chart of ['loss', 'accuracy', 'throughput', 'bandwidth', 'split']) {
        // Expressions as strings: the tests are compiled without the DOM's types.
        await page.waitForFunction(
          `Number(document.getElementById('chart-${chart}')?.dataset.points) > 0`,
        );
        // Vega drew marks into the chart's SVG.
        expect(await page.locator(`#chart-${chart} svg .role-mark path`).count()).toBeGreaterThan(
          0,
        );
      }
      await page.waitForSelector('#workers tbody tr[data-rank="1"]');
      const rows = page.locator('#workers tbody tr');
      const ranks: (string | null)[] = [];
      for (let i = 0; i < (await rows.count()); i++) {
        ranks.push(await rows.nth(i).getAttribute('data-rank'));
      }
      expect(ranks).toEqual(['0', '1']);
      const first = Number(await page.getAttribute('body', 'data-step'));
      await page.waitForFunction(`Number(document.body.dataset.step) > ${first}`, undefined, {
        timeout: 30_000,
      });
      expect(await page.textContent('#status')).toBe('training');
      expect(await page.textContent('#config')).toContain('"model": "lenet5"');
      await page.screenshot({ path: join(OUTPUT, 'dashboard.png'), fullPage: true });
      expect(errors).toEqual([]);
    } finally {
      await close();
    }
  });

  it('serves /metrics that promtool accepts, with the step time by phase', async () => {
    const res = await fetch(`${base()}/metrics`, { headers: auth });
    expect(res.status).toBe(200);
    const exposition = await res.text();
    const check = await promtoolCheck(exposition);
    expect(check.code, check.output).toBe(0);
    expect(exposition).toMatch(/^tfjs_ddp_step_seconds_count\{phase="compute"\} [1-9]/m);
    expect(exposition).toMatch(/^tfjs_ddp_workers\{state="training"\} 2$/m);
    expect(exposition).toMatch(/^process_cpu_seconds_total /m);
  });

  it('is scraped by a real Prometheus server, which answers a query for the step time', async () => {
    const server = prometheus as PrometheusServer;
    let result: Awaited<ReturnType<PrometheusServer['query']>> = [];
    await server.until(async () => {
      result = await server.query('tfjs_ddp_step_seconds_count{phase="all_reduce"}');
      return result.length > 0 && Number(result[0].value[1]) > 0;
    }, 30_000);
    expect(result[0].metric.job).toBe('tfjs-ddp');
  });

  it('writes a trace whose rank spans nest, line up, and add up to the steps in metrics.jsonl', async () => {
    train.kill('SIGINT');
    const code = await exited;
    expect([0, 130], stderr.slice(-3000)).toContain(code);
    // Kept with the screenshots, to open in Perfetto when this fails.
    for (const file of ['trace.json', 'metrics.jsonl'])
      copyFileSync(join(runDir, file), join(OUTPUT, file));
    const events = JSON.parse(readFileSync(join(runDir, 'trace.json'), 'utf8')) as TraceEvent[];
    checkTrace(events, readSteps(join(runDir, 'metrics.jsonl')));
    checkBuckets(events, 2, 2);
  });

  it('turns the run folder into report.html, which chromium shows with its charts', async () => {
    const result = await runCli(['report', runDir]);
    expect(result.code, result.stderr.slice(-3000)).toBe(0);
    const html = join(runDir, 'report.html');
    for (const chart of ['loss', 'accuracy', 'throughput', 'step-split']) {
      expect(existsSync(join(runDir, 'report-charts', `${chart}.svg`))).toBe(true);
    }
    const { context, close } = await launchChromium();
    try {
      const page = await context.newPage();
      await page.goto(`file://${html}`);
      for (const chart of ['loss', 'accuracy', 'throughput', 'step-split']) {
        expect(await page.locator(`#chart-${chart} svg path`).count()).toBeGreaterThan(0);
      }
      expect(await page.textContent('#config')).toContain('"model": "lenet5"');
      // Self-contained: nothing but the page itself is loaded.
      expect(await page.locator('script[src], link[href], img[src]').count()).toBe(0);
      await page.screenshot({ path: join(OUTPUT, 'report.png'), fullPage: true });
    } finally {
      await close();
    }
  });
});
