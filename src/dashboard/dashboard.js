// The live dashboard: compiles the server's Vega-Lite specs (/api/specs, the report's charts)
// with the vega and vega-lite builds served next to this file, then follows /api/events (the
// run's state, at most once a second) and replaces each chart's named datasets. The server
// bounds every series, so the page does not grow with the run. Plain browser JavaScript, no
// build step; `vega` and `vegaLite` are the globals of those builds.

const views = new Map();
let lastState;

function text(id, value) {
  document.getElementById(id).textContent = value;
}

function duration(seconds) {
  if (seconds === undefined || !Number.isFinite(seconds)) return '–';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = (n) => String(n).padStart(2, '0');
  return h > 0 ? `${h}:${pad(m)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`;
}

function percent(x) {
  return x === undefined ? '–' : `${(100 * x).toFixed(1)}%`;
}

async function createCharts() {
  const specs = await (await fetch('/api/specs')).json();
  for (const element of document.querySelectorAll('[data-chart]')) {
    const spec = specs[element.dataset.chart];
    const compiled = vegaLite.compile(spec).spec;
    // The datasets the state fills: those with neither values nor a source of their own.
    const names = compiled.data.filter((d) => !d.values && !d.source).map((d) => d.name);
    const view = new vega.View(vega.parse(compiled), {
      renderer: 'svg',
      container: element,
      hover: true,
    });
    await view.runAsync();
    views.set(element, { view, names });
  }
}

async function updateCharts(state) {
  for (const [element, { view, names }] of views) {
    let points = 0;
    for (const name of names) {
      const rows = state[name] ?? [];
      points += rows.length;
      view.data(name, structuredClone(rows));
    }
    element.dataset.points = String(points);
    // New axis labels and legends change the chart's padding: lay it out again.
    await view.resize().runAsync();
  }
}

function updateFigures(state) {
  const last = state.steps.at(-1);
  const lastEval = state.evals.at(-1);
  text('model', state.config?.model ?? '');
  text('run-dir', state.runDir ?? '');
  const status = document.getElementById('status');
  status.textContent = state.status;
  status.className = `badge ${state.status}`;
  text('step', state.totalSteps ? `${state.step} / ${state.totalSteps}` : '–');
  text('epoch', String(state.epoch));
  text('world', String(state.worldSize));
  text('throughput', last ? Math.round(last.imagesPerSec).toLocaleString('en') : '–');
  text('loss', last ? last.loss.toFixed(4) : '–');
  text('val-accuracy', percent(lastEval?.accuracy));
  const end = state.status === 'training' ? Date.now() : (last?.time ?? Date.now());
  text('elapsed', state.startedAt ? duration((end - state.startedAt) / 1000) : '–');
  text('eta', duration(state.etaSeconds));
  const message = document.getElementById('message');
  message.hidden = !state.message;
  message.textContent = state.message ?? '';
}

function updateTables(state) {
  const body = document.querySelector('#workers tbody');
  body.replaceChildren(
    ...state.workers.map((w) => {
      const row = document.createElement('tr');
      row.dataset.rank = String(w.rank);
      const ago = Math.max(0, (Date.now() - w.lastHeartbeat) / 1000);
      const cells = [
        w.rank,
        w.host,
        w.device,
        w.backend,
        w.state,
        `${ago.toFixed(0)} s ago`,
        w.activity,
      ];
      for (const value of cells) {
        const cell = document.createElement('td');
        cell.textContent = String(value);
        row.append(cell);
      }
      row.children[4].className = `state-${w.state}`;
      return row;
    }),
  );
  const events = document.getElementById('events');
  events.replaceChildren(
    ...state.events
      .slice()
      .reverse()
      .map((e) => {
        const item = document.createElement('li');
        item.textContent = `${new Date(e.time).toLocaleTimeString()} ${e.text}`;
        return item;
      }),
  );
  text('config', state.config ? JSON.stringify(state.config, null, 2) : '');
}

async function show(state) {
  lastState = state;
  updateFigures(state);
  updateTables(state);
  await updateCharts(state);
  document.body.dataset.step = String(state.step);
}

async function main() {
  await createCharts();
  await show(await (await fetch('/api/state')).json());
  const events = new EventSource('/api/events');
  let busy = Promise.resolve();
  events.onmessage = (message) => {
    const state = JSON.parse(message.data);
    busy = busy.then(() => show(state));
  };
  // Between updates, the clocks (elapsed, last heard) keep moving.
  setInterval(() => {
    if (lastState) {
      updateFigures(lastState);
      updateTables(lastState);
    }
  }, 1000);
}

main().catch((error) => {
  const message = document.getElementById('message');
  message.hidden = false;
  message.textContent = `the dashboard failed: ${error.message}`;
});
