const hooks = new Set<() => void>();
let watching = false;

/**
 * Runs `hook` (synchronously: nothing asynchronous completes at that point) when this
 * process exits, or when SIGINT/SIGTERM stops it (then the process exits with 130/143),
 * so that a stopped benchmark leaves no child process and no network namespace behind.
 * Returns a function that removes the hook (once its resource is released normally).
 */
export function onBenchExit(hook: () => void): () => void {
  hooks.add(hook);
  if (!watching) {
    watching = true;
    process.once('exit', runAll);
    for (const [signal, code] of [
      ['SIGINT', 130],
      ['SIGTERM', 143],
    ] as const) {
      process.once(signal, () => {
        runAll();
        process.exit(code);
      });
    }
  }
  return () => hooks.delete(hook);
}

function runAll(): void {
  for (const hook of [...hooks]) {
    hooks.delete(hook);
    try {
      hook();
    } catch {
      // One failed cleanup must not stop the others.
    }
  }
}
