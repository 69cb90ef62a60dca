import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The dashboard's page and script, in the package (src/dashboard/, shipped as is). */
const DASHBOARD_DIR = join('src', 'dashboard');

export interface Asset {
  body: Buffer;
  contentType: string;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};

/**
 * The files the dashboard needs, all from the package itself (no CDN, so it works offline and
 * behind a firewall): its own page, script and style, and the browser builds of vega and
 * vega-lite that the report's charts also come from. Read once, on first use.
 */
export class DashboardAssets {
  private cache: Map<string, Asset> | undefined;

  async get(path: string): Promise<Asset | undefined> {
    this.cache ??= await load();
    return this.cache.get(path);
  }
}

async function load(): Promise<Map<string, Asset>> {
  const dir = join(packageRoot(), DASHBOARD_DIR);
  const files: [string, string][] = [
    ['/', join(dir, 'index.html')],
    ['/dashboard.js', join(dir, 'dashboard.js')],
    ['/dashboard.css', join(dir, 'dashboard.css')],
    ['/vendor/vega.min.js', join(moduleDir('vega'), 'build', 'vega.min.js')],
    ['/vendor/vega-lite.min.js', join(moduleDir('vega-lite'), 'build', 'vega-lite.min.js')],
  ];
  const assets = new Map<string, Asset>();
  for (const [route, file] of files) {
    const ext = file.slice(file.lastIndexOf('.'));
    assets.set(route, { body: await readFile(file), contentType: TYPES[ext] });
  }
  return assets;
}

/** The folder above this file (in src/ or dist/src/) that holds the dashboard. */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, DASHBOARD_DIR, 'index.html'))) return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`the dashboard's files (${DASHBOARD_DIR}) are missing`);
    dir = parent;
  }
}

/** A dependency's folder (its build files are not in its package exports). */
function moduleDir(name: string): string {
  const entry = createRequire(import.meta.url).resolve(name);
  // Build folders may hold a package.json of their own ({"type": "module"}): find the package's.
  const marker = `${sep}node_modules${sep}${name}${sep}`;
  return entry.slice(0, entry.lastIndexOf(marker) + marker.length - 1);
}
