import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package's root folder (package.json), from src/ or dist/src/. */
export const PACKAGE_ROOT = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
})();

/**
 * The built CLI that every chaos process runs (the real `tfjs-ddp`, as a user starts it), also
 * when this module runs from src/ under vitest.
 */
export const CLI_MAIN = join(PACKAGE_ROOT, 'dist/src/cli/main.js');

/**
 * The environment variable that marks every process of one chaos run, children included
 * (`train --workers` passes its environment on): the orphan check finds the run's processes
 * by it, whoever their parent is by then.
 */
export const MARKER_VARIABLE = 'TFJS_DDP_CHAOS_MARKER_NOT_A_FLAG';

/** One JSON log record of a chaos process (LOG_FORMAT=json on stderr). */
export interface LogRecord {
  level: number;
  time: number;
  msg: string;
  [field: string]: unknown;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A started CLI process: its log records as they come, and its exit. */
export interface ChaosProcess {
  name: string;
  child: ChildProcess;
  records: LogRecord[];
  exit: Promise<Exit>;
  exited: () => Exit | undefined;
  /** The last lines it wrote (log records and anything else), for a failure's message. */
  tail: (lines?: number) => string;
}

type Waiter = { match: (r: LogRecord) => boolean; resolve: (r: LogRecord) => void };

/**
 * The processes of one chaos run. Each runs in its own process group (so a signal to the group
 * reaches the workers `train --workers` starts) and carries the run's marker. `stopAll` kills
 * every group, stopped ones included (SIGKILL works on a stopped process).
 */
export class ProcessSet {
  readonly processes: ChaosProcess[] = [];
  private readonly waiters = new Map<ChaosProcess, Waiter[]>();

  constructor(
    readonly marker: string,
    private readonly cwd: string,
  ) {}

  start(name: string, args: readonly string[]): ChaosProcess {
    const child = spawn(process.execPath, [CLI_MAIN, ...args], {
      cwd: this.cwd,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, LOG_FORMAT: 'json', NO_COLOR: '1', [MARKER_VARIABLE]: this.marker },
    });
    const records: LogRecord[] = [];
    const lines: string[] = [];
    let exitState: Exit | undefined;
    const proc: ChaosProcess = {
      name,
      child,
      records,
      exit: new Promise<Exit>((resolve) => {
        const ended = (state: Exit) => {
          exitState = state;
          resolve(state);
        };
        child.on('error', () => ended({ code: null, signal: null }));
        child.on('close', (code, signal) => ended({ code, signal }));
      }),
      exited: () => exitState,
      tail: (count = 40) => lines.slice(-count).join('\n'),
    };
    this.waiters.set(proc, []);
    const keep = (line: string) => {
      lines.push(line);
      if (lines.length > 400) lines.splice(0, 200);
      if (!line.startsWith('{')) return;
      let record: LogRecord;
      try {
        record = JSON.parse(line) as LogRecord;
      } catch {
        return;
      }
      records.push(record);
      const waiting = this.waiters.get(proc) ?? [];
      for (const w of waiting.filter((w) => w.match(record))) {
        waiting.splice(waiting.indexOf(w), 1);
        w.resolve(record);
      }
    };
    for (const stream of [child.stdout, child.stderr]) {
      let partial = '';
      stream?.setEncoding('utf8');
      stream?.on('data', (chunk: string) => {
        const split = (partial + chunk).split('\n');
        partial = split.pop() ?? '';
        for (const line of split) keep(line);
      });
    }
    this.processes.push(proc);
    return proc;
  }

  /**
   * The first record of `proc` (already seen or to come) that `match` accepts; undefined when
   * the process exits first or `ms` pass.
   */
  async waitFor(
    proc: ChaosProcess,
    match: (r: LogRecord) => boolean,
    ms: number,
  ): Promise<LogRecord | undefined> {
    const seen = proc.records.find(match);
    if (seen || proc.exited()) return seen;
    let timer: NodeJS.Timeout | undefined;
    const found = new Promise<LogRecord>((resolve) =>
      this.waiters.get(proc)?.push({ match, resolve }),
    );
    const gaveUp = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), ms);
    });
    const result = await Promise.race([
      found,
      gaveUp,
      proc.exit.then(() => proc.records.find(match)),
    ]);
    clearTimeout(timer);
    return result;
  }

  /** Sends `signal` to `proc` alone (not its group): what a kubelet or the OOM killer does. */
  signal(proc: ChaosProcess, signal: NodeJS.Signals): void {
    if (!proc.exited()) proc.child.kill(signal);
  }

  /** SIGKILLs every process group of the set and waits for the processes it started. */
  async stopAll(): Promise<void> {
    for (const proc of this.processes) {
      if (proc.child.pid === undefined) continue;
      try {
        process.kill(-proc.child.pid, 'SIGKILL');
      } catch {
        // The group is gone already.
      }
    }
    await Promise.all(this.processes.map((p) => p.exit));
  }
}

/**
 * Pids of the live processes that carry `marker` in their environment (read from /proc), this
 * process excepted. Zombies have no readable environment and are not counted: they hold no
 * resources but a table slot and their parent reaps them.
 */
export async function processesMarked(marker: string): Promise<number[]> {
  const needle = `${MARKER_VARIABLE}=${marker}`;
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      const environ = await readFile(`/proc/${pid}/environ`, 'latin1');
      if (environ.split('\0').includes(needle)) pids.push(pid);
    } catch {
      // Exited meanwhile, or another user's process.
    }
  }
  return pids;
}
