import type { TopLevelSpec } from 'vega-lite';
import { log } from '../logging/logger.js';

/** A chart as files: SVG always, PNG when a renderer (@resvg/resvg-js) is installed. */
export interface RenderedChart {
  svg: string;
  png?: Uint8Array;
}

/**
 * Renders a Vega-Lite spec headless (Vega's SVG renderer, no browser, no
 * canvas), and to PNG through resvg when that optional package is there. Vega and Vega-Lite
 * load on the first chart, not with the bench commands that draw none.
 */
export async function renderChart(spec: TopLevelSpec): Promise<RenderedChart> {
  const [vega, { compile }] = await Promise.all([import('vega'), import('vega-lite')]);
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  const svg = await view.toSVG();
  view.finalize();
  try {
    const { Resvg } = await import('@resvg/resvg-js');
    const png = new Resvg(svg, { background: 'white', fitTo: { mode: 'zoom', value: 2 } })
      .render()
      .asPng();
    return { svg, png };
  } catch (error) {
    log().info(`no PNG next to the SVG chart (${(error as Error).message})`);
    return { svg };
  }
}
