import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  curveSpec,
  type PhaseTimings,
  splitRows,
  stepSeriesSpec,
  stepSplitSpec,
} from '../../shared/observe/run-charts.js';
import { DashboardAssets } from './dashboard-assets.js';
import type { PrometheusMetrics } from './prometheus-metrics.js';
import type { RunState } from './run-state.js';

/** At most this often the open dashboards get a new state (SSE). */
const PUSH_INTERVAL_MS = 1000;
/** Open event streams, so that a misbehaving client cannot hold unbounded resources. */
const MAX_STREAMS = 32;
const COOKIE = 'tfjs_ddp_token';
const CHART_WIDTH = 440;

export interface ObserveServerOptions {
  host: string;
  /** 0: any free port (see port). */
  port: number;
  state: RunState;
  metrics: PrometheusMetrics;
  /** When set, every request must carry it (bearer header, or the cookie the login page sets). */
  token?: string;
}

/**
 * The coordinator's read-only HTTP server: `/` the live dashboard (its files, /api/state,
 * /api/specs, and /api/events, a server-sent event stream of the state at most once a
 * second), `/metrics` for Prometheus. With a token, nothing but the login form is shown
 * without it; tokens are compared in constant time (hashes through timingSafeEqual) and
 * never logged.
 */
export class ObserveServer {
  private readonly assets = new DashboardAssets();
  private readonly streams = new Set<ServerResponse>();
  private readonly tokenHash: Buffer | undefined;
  private pushedVersion = -1;
  private timer: NodeJS.Timeout | undefined;

  private constructor(
    private readonly server: Server,
    private readonly opts: ObserveServerOptions,
  ) {
    this.tokenHash = opts.token ? hash(opts.token) : undefined;
  }

  static async start(opts: ObserveServerOptions): Promise<ObserveServer> {
    const server = createServer();
    const observe = new ObserveServer(server, opts);
    server.on('request', (req, res) => {
      observe.handle(req, res).catch((error: Error) => {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(`error: ${error.message}\n`);
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.port, opts.host, () => resolve());
    });
    observe.timer = setInterval(() => observe.push(), PUSH_INTERVAL_MS);
    observe.timer.unref();
    return observe;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  /** Sends the last state to open dashboards, ends their streams and stops listening. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    this.push();
    for (const res of this.streams) res.end();
    this.streams.clear();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname === '/login' && req.method === 'POST') {
      this.login(await readForm(req), res);
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (!this.authorized(req)) {
      if (url.pathname === '/') {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(LOGIN_PAGE);
      } else {
        res.writeHead(401, { 'www-authenticate': 'Bearer' }).end('token required\n');
      }
      return;
    }
    switch (url.pathname) {
      case '/metrics': {
        const { registry } = this.opts.metrics;
        const body = await registry.metrics();
        res.writeHead(200, { 'content-type': registry.contentType }).end(body);
        return;
      }
      case '/api/state':
        json(res, this.state());
        return;
      case '/api/specs':
        json(res, SPECS);
        return;
      case '/api/events':
        this.stream(res);
        return;
      case '/favicon.ico':
        res.writeHead(204).end();
        return;
    }
    const asset = await this.assets.get(url.pathname);
    if (!asset) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    res
      .writeHead(200, { 'content-type': asset.contentType, 'cache-control': 'no-cache' })
      .end(asset.body);
  }

  /** The login form's POST sets the cookie when the token is right. */
  private login(form: URLSearchParams, res: ServerResponse): void {
    const given = form.get('token') ?? '';
    if (this.tokenHash && !equalHashes(hash(given), this.tokenHash)) {
      res.writeHead(303, { location: '/?wrong' }).end();
      return;
    }
    const cookie = `${COOKIE}=${encodeURIComponent(given)}; HttpOnly; SameSite=Strict; Path=/`;
    res.writeHead(303, { location: '/', 'set-cookie': cookie }).end();
  }

  private authorized(req: IncomingMessage): boolean {
    if (!this.tokenHash) return true;
    const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    const cookie = (req.headers.cookie ?? '')
      .split(';')
      .map((c) => c.trim())
      .find((c) => c.startsWith(`${COOKIE}=`));
    const given = bearer ?? (cookie ? decodeURIComponent(cookie.slice(COOKIE.length + 1)) : '');
    return equalHashes(hash(given), this.tokenHash);
  }

  private state(): object {
    const snapshot = this.opts.state.snapshot();
    return { ...snapshot, splitRows: splitRows(snapshot.split as PhaseTimings[]) };
  }

  private stream(res: ServerResponse): void {
    if (this.streams.size >= MAX_STREAMS) {
      res.writeHead(503, { 'retry-after': '5' }).end('too many open dashboards\n');
      return;
    }
    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
    });
    res.write(`data: ${JSON.stringify(this.state())}\n\n`);
    this.streams.add(res);
    res.on('close', () => this.streams.delete(res));
  }

  private push(): void {
    const version = this.opts.state.version;
    if (this.streams.size === 0 || version === this.pushedVersion) return;
    this.pushedVersion = version;
    const message = `data: ${JSON.stringify(this.state())}\n\n`;
    for (const res of this.streams) res.write(message);
  }
}

const SPECS = {
  loss: curveSpec('loss', { name: 'steps' }, { name: 'evals' }, CHART_WIDTH),
  accuracy: curveSpec('accuracy', { name: 'steps' }, { name: 'evals' }, CHART_WIDTH),
  throughput: stepSeriesSpec('imagesPerSec', 'images/s', { name: 'steps' }, CHART_WIDTH),
  bandwidth: stepSeriesSpec(
    'allReduceMBps',
    'all-reduce MB/s sent per rank',
    { name: 'steps' },
    CHART_WIDTH,
    '#ff7f0e',
  ),
  split: stepSplitSpec(
    { name: 'splitRows' },
    CHART_WIDTH,
    'Step split per rank (ms, mean of the last 20 steps)',
  ),
};

const LOGIN_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tfjs-ddp</title></head>
<body style="font-family: sans-serif; margin: 4em">
<h1>tfjs-ddp</h1>
<form action="/login" method="post">
<label>This run has a token: <input type="password" name="token" autofocus></label>
<button>Show the run</button>
</form></body></html>
`;

function hash(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

function equalHashes(a: Buffer, b: Buffer): boolean {
  return timingSafeEqual(a, b);
}

/** A login form's body (a token is short: more than 4 KiB is cut). */
async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  let body = '';
  for await (const chunk of req) {
    body += String(chunk);
    if (body.length > 4096) break;
  }
  return new URLSearchParams(body.slice(0, 4096));
}

function json(res: ServerResponse, value: unknown): void {
  res
    .writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-cache' })
    .end(JSON.stringify(value));
}
