import { afterEach, describe, expect, it } from 'vitest';
import { ObserveServer } from '../../src/coordinator/observe/observe-server.js';
import { PrometheusMetrics } from '../../src/coordinator/observe/prometheus-metrics.js';
import { RunEventHub, type StepCompleted } from '../../src/coordinator/observe/run-events.js';
import { type RunSnapshot, RunState } from '../../src/coordinator/observe/run-state.js';
import { DownsampledSeries } from '../../src/shared/observe/downsampled-series.js';

// The HTTP server on loopback with real requests: the token gate, the event stream, and the
// bounds that keep a long run's dashboard small.

let server: ObserveServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

function step(n: number): StepCompleted {
  return {
    type: 'step',
    step: n,
    epoch: 0,
    time: 1_000 * n,
    loss: 1 / n,
    accuracy: 0.5,
    images: 64,
    imagesPerSec: 640,
    lr: 0.01,
    allReduceBytesPerRank: 1e6,
    skipped: false,
    ranks: [0, 1].map((rank) => ({
      rank,
      dataMs: 1,
      computeMs: 10 + 10 * rank,
      waitMs: 10 - 10 * rank + 1,
      allReduceMs: 4,
      applyMs: 1,
    })),
  };
}

async function start(token?: string) {
  const state = new RunState();
  const metrics = new PrometheusMetrics();
  server = await ObserveServer.start({ host: '127.0.0.1', port: 0, state, metrics, token });
  return { hub: new RunEventHub([state, metrics]), url: `http://127.0.0.1:${server.port}` };
}

describe('ObserveServer', () => {
  it('without a token, serves the page, its vega builds, the state and /metrics', async () => {
    const { hub, url } = await start();
    hub.emit(step(1));
    const page = await fetch(`${url}/`);
    expect(page.headers.get('content-type')).toContain('text/html');
    expect(await page.text()).toContain('/vendor/vega-lite.min.js');
    const vega = await fetch(`${url}/vendor/vega.min.js`);
    expect(vega.status).toBe(200);
    expect((await vega.arrayBuffer()).byteLength).toBeGreaterThan(100_000);
    const state = (await (await fetch(`${url}/api/state`)).json()) as RunSnapshot;
    expect(state.step).toBe(1);
    expect(state.split.map((r) => r.computeMs)).toEqual([10, 20]);
    const metrics = await (await fetch(`${url}/metrics`)).text();
    expect(metrics).toMatch(/^tfjs_ddp_rank_phase_seconds\{rank="1",phase="compute"\} 0.02$/m);
    expect((await fetch(`${url}/nothing`)).status).toBe(404);
    expect((await fetch(`${url}/api/state`, { method: 'POST' })).status).toBe(405);
  });

  it('with a token, asks for it, sets a cookie on the right one only, and accepts a bearer header', async () => {
    const { url } = await start('s3cret');
    expect(await (await fetch(`${url}/`)).text()).toContain('name="token"');
    for (const path of ['/api/state', '/api/events', '/metrics', '/dashboard.js']) {
      expect((await fetch(`${url}${path}`)).status, path).toBe(401);
    }
    const login = (token: string) =>
      fetch(`${url}/login`, {
        method: 'POST',
        body: new URLSearchParams({ token }),
        redirect: 'manual',
      });
    const wrong = await login('nope');
    expect(wrong.headers.get('set-cookie')).toBeNull();
    const right = await login('s3cret');
    const cookie = (right.headers.get('set-cookie') ?? '').split(';')[0];
    expect(right.headers.get('set-cookie')).toContain('HttpOnly');
    expect((await fetch(`${url}/api/state`, { headers: { cookie } })).status).toBe(200);
    const bearer = { authorization: 'Bearer s3cret' };
    expect((await fetch(`${url}/metrics`, { headers: bearer })).status).toBe(200);
  });

  it('streams the state as server-sent events when it changes', async () => {
    const { hub, url } = await start();
    const res = await fetch(`${url}/api/events`);
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    const next = async (): Promise<RunSnapshot> => {
      let text = '';
      while (!text.includes('\n\n')) text += decoder.decode((await reader.read()).value);
      return JSON.parse(text.slice('data: '.length, text.indexOf('\n\n')));
    };
    expect((await next()).step).toBe(0);
    hub.emit(step(7));
    expect((await next()).step).toBe(7);
    await reader.cancel();
  });
});

describe('bounded memory', () => {
  it('keeps a series under its capacity, recent points at full resolution', () => {
    const series = new DownsampledSeries<{ step: number; loss: number }>(100);
    for (let n = 1; n <= 100_000; n++) series.push({ step: n, loss: n });
    const points = series.values();
    expect(points.length).toBeLessThan(100);
    expect(points.at(-1)).toEqual({ step: 100_000, loss: 100_000 });
    expect(points.at(-2)?.step).toBe(99_999);
    // Older points are means of neighbours, still in step order.
    expect(points.every((p, i) => i === 0 || p.step > points[i - 1].step)).toBe(true);
  });

  it('gives the dashboard a bounded snapshot of a long run', () => {
    const state = new RunState();
    for (let n = 1; n <= 20_000; n++) state.onEvent(step(n));
    for (let i = 0; i < 500; i++) {
      state.onEvent({ type: 'worker', time: i, rank: i % 2, state: i % 3 ? 'training' : 'left' });
    }
    const snapshot = state.snapshot();
    expect(snapshot.steps.length).toBeLessThanOrEqual(600);
    expect(snapshot.events.length).toBeLessThanOrEqual(50);
    expect(JSON.stringify(snapshot).length).toBeLessThan(150_000);
  });
});
