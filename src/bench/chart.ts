import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import { log } from '../shared/logging/logger.js';

/** A chart as files: SVG always, PNG when a renderer (@resvg/resvg-js) is installed. */
export interface RenderedChart {
  svg: string;
  png?: Uint8Array;
}

/**
 * Renders a Vega-Lite spec headless (Vega's SVG renderer, no browser, no
 * canvas), and to PNG through resvg when that optional package is there.
 */
export async function renderChart(spec: TopLevelSpec): Promise<RenderedChart> {
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
