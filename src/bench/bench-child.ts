import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { BENCH_HOST_ENV, type BenchHost, LOOPBACK } from './bench-host.js';
import { onBenchExit } from './exit-hooks.js';

/** The CLI entry this build runs from (dist/src/cli/main.js next to this module). */
export function cliEntry(): string {
  const entry = fileURLToPath(new URL('../cli/main.js', import.meta.url));
  if (!existsSync(entry)) throw new Error(`the CLI entry ${entry} is missing: run npm run build`);
  return entry;
}

/**
 * Node options about code given on the command line rather than settings: `-e`/`-p` carry
 * a script, and `--input-type` only applies to one (node refuses it with a file to run).
 */
const CODE_FLAGS = new Set(['-e', '--eval', '-p', '--print', '--input-type']);

/**
 * This process's node flags (`execArgv`) as a child may inherit them: without CODE_FLAGS and
 * their values. Under `node -e "…"` the script is in execArgv, and a child given it would run
 * the script again instead of the CLI: every child would start another.
 */
export function inheritedNodeFlags(execArgv: readonly string[]): string[] {
  const kept: string[] = [];
  for (let i = 0; i < execArgv.length; i++) {
    const [name] = execArgv[i].split('=', 1);
    if (!CODE_FLAGS.has(name)) kept.push(execArgv[i]);
    else if (name === execArgv[i]) i++; // the value is the next argument
  }
  return kept;
}

/**
 * Kills `child` if this process exits or is stopped by SIGINT/SIGTERM before it,
 * so that a benchmark leaves no orphans (a stopped benchmark measures nothing).
 */
export function killWithParent(child: ChildProcess): void {
  const forget = onBenchExit(() => child.kill('SIGKILL'));
  child.once('exit', forget);
}

/**
 * The command line that runs node with `nodeArgs` on `host`: in its network namespace
 * through `ip netns exec` (which execs node in place: the same pid, signals and IPC channel).
 */
export function commandOn(host: BenchHost, nodeArgs: string[]): [string, string[]] {
  return host.netns === undefined
    ? [process.execPath, nodeArgs]
    : ['ip', ['netns', 'exec', host.netns, process.execPath, ...nodeArgs]];
}

/**
 * A helper process of a benchmark: the CLI itself (`tfjs-ddp <args>`), a real
 * process with an IPC channel for small control messages. Its stdout goes to this
 * process's stderr, so that `--json` output stays alone on stdout. It runs on `host`
 * (a namespace of an EmulatedNetwork, or this machine's loopback) and learns its address
 * there from BENCH_HOST_ENV. It is killed when this process exits or is stopped
 * (killWithParent).
 */
export class BenchChild<Out extends { type: string }, In = unknown> {
  private readonly child: ChildProcess;
  private readonly inbox: Out[] = [];
  private waiter: ((m: Out | undefined) => void) | undefined;
  private exit: string | undefined;
  readonly exited: Promise<number | null>;

  /** @param nodeFlags flags for `node` itself (see GRADIENT_PROCESS_NODE_FLAGS) */
  constructor(
    readonly label: string,
    args: string[],
    nodeFlags: readonly string[] = [],
    readonly host: BenchHost = LOOPBACK,
  ) {
    const [command, argv] = commandOn(host, [
      ...inheritedNodeFlags(process.execArgv),
      ...nodeFlags,
      cliEntry(),
      ...args,
    ]);
    const child = spawn(command, argv, {
      stdio: ['ignore', 2, 'inherit', 'ipc'],
      env: { ...process.env, [BENCH_HOST_ENV]: host.address },
    });
    killWithParent(child);
    this.child = child;
    child.on('message', (m: Out) => {
      if (this.waiter) this.waiter(m);
      else this.inbox.push(m);
    });
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exit = signal ? `was killed by ${signal}` : `exited with code ${code}`;
        this.waiter?.(undefined);
        resolve(code);
      });
    });
  }

  send(message: In): void {
    this.child.send(message as object);
  }

  /**
   * The next message from the child. Rejects when the child exits first, or
   * when nothing comes within `timeoutMs` (then the child is killed).
   */
  next(timeoutMs: number, what: string): Promise<Out> {
    const queued = this.inbox.shift();
    if (queued) return Promise.resolve(queued);
    if (this.exit) return Promise.reject(new Error(`${this.label} ${this.exit} before ${what}`));
    return new Promise<Out>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        this.kill();
        reject(new Error(`${this.label} did not report ${what} within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      this.waiter = (m) => {
        clearTimeout(timer);
        this.waiter = undefined;
        if (m) resolve(m);
        else reject(new Error(`${this.label} ${this.exit} before ${what}`));
      };
    });
  }

  kill(): void {
    if (this.exit === undefined) this.child.kill('SIGKILL');
  }
}
