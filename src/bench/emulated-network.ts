import { execFileSync } from 'node:child_process';
import { UserError } from '../shared/errors.js';
import { log } from '../shared/logging/logger.js';
import type { BenchHost } from './bench-host.js';
import { onBenchExit } from './exit-hooks.js';
import type { LinkRate } from './link-rate.js';

/** Every namespace is named tfddp-<pid>-<k>-(hub|h<i>): the pid tells a stale one from a live one. */
const NAME = /^tfddp-(\d+)-\d+-(?:hub|h\d+)$/;
/** A private test range, used only on the veths inside the namespaces (no route leads out). */
const SUBNET = '10.213.0';
const MAX_HOSTS = 253;
let networksMade = 0;

/**
 * Hosts joined by a switch whose every port is a link of one rate, emulated on this machine:
 * each host is a network namespace with one veth (`eth0`, address 10.213.0.<i+1>/24) whose
 * other end is a port of a bridge in a hub namespace, and both ends are shaped by tc's token
 * bucket (tbf) at the rate, so every link carries that rate in each direction. Nothing is
 * created in this process's own namespace, so no traffic can leave the emulated network.
 * Needs root and iproute2's `ip` and `tc`. Namespaces (and any process still in them) are
 * removed by `destroy()`, when this process exits or is stopped, and by the next network
 * created after this process died without cleaning up (SIGKILL).
 */
export class EmulatedNetwork {
  readonly hosts: BenchHost[];
  private readonly namespaces: string[] = [];
  private readonly forget: () => void;

  /** Builds a network of `hostCount` hosts; throws UserError (after cleaning up) when it cannot. */
  constructor(
    hostCount: number,
    readonly link: LinkRate,
  ) {
    if (hostCount < 1 || hostCount > MAX_HOSTS) {
      throw new UserError(
        `an emulated network holds 1 to ${MAX_HOSTS} hosts (asked: ${hostCount})`,
      );
    }
    requireRootAndIproute2();
    removeStaleNamespaces();
    const name = `tfddp-${process.pid}-${networksMade++}`;
    const hub = `${name}-hub`;
    this.hosts = Array.from({ length: hostCount }, (_, i) => ({
      netns: `${name}-h${i}`,
      address: `${SUBNET}.${i + 1}`,
    }));
    this.forget = onBenchExit(() => this.destroy());
    try {
      this.addNamespace(hub);
      ip('-n', hub, 'link', 'add', 'br0', 'type', 'bridge');
      ip('-n', hub, 'link', 'set', 'br0', 'up');
      for (const [i, host] of this.hosts.entries()) {
        const ns = host.netns as string;
        this.addNamespace(ns);
        ip(
          'link',
          'add',
          'eth0',
          'netns',
          ns,
          'type',
          'veth',
          'peer',
          'name',
          `p${i}`,
          'netns',
          hub,
        );
        ip('-n', hub, 'link', 'set', `p${i}`, 'master', 'br0', 'up');
        ip('-n', ns, 'addr', 'add', `${host.address}/24`, 'dev', 'eth0');
        ip('-n', ns, 'link', 'set', 'lo', 'up');
        ip('-n', ns, 'link', 'set', 'eth0', 'up');
        tuneTcpBuffers(ns);
        shape(ns, 'eth0', link);
        shape(hub, `p${i}`, link);
      }
    } catch (error) {
      this.destroy();
      throw error;
    }
    log().info(
      { namespaces: this.namespaces, link: link.text },
      `emulated network: ${hostCount} hosts (${name}-h*), every link shaped to ${link.text} each way`,
    );
  }

  /** Kills what still runs in the namespaces and removes them (their veths go with them). */
  destroy(): void {
    this.forget();
    for (const ns of this.namespaces.splice(0).reverse()) removeNamespace(ns);
  }

  private addNamespace(ns: string): void {
    ip('netns', 'add', ns);
    this.namespaces.push(ns);
  }
}

/** The names of this machine's network namespaces. */
export function listNamespaces(): string[] {
  return run('ip', ['netns', 'list'])
    .split('\n')
    .map((line) => line.split(' ')[0])
    .filter(Boolean);
}

/** Throws UserError unless this process can build an EmulatedNetwork (root, `ip`, `tc`). */
export function requireRootAndIproute2(): void {
  if (process.getuid?.() !== 0) {
    throw new UserError(
      '--link needs root: network namespaces and tc shaping need CAP_NET_ADMIN (run as root, as on the build machines)',
    );
  }
  for (const tool of ['ip', 'tc']) {
    try {
      execFileSync(tool, ['-V'], { stdio: 'pipe' });
    } catch (error) {
      throw new UserError(
        `--link needs \`${tool}\` from iproute2 (apt-get install iproute2): ${(error as Error).message}`,
      );
    }
  }
}

/**
 * tbf at the link's rate on the egress of `dev`. The bucket holds 1 ms of the rate (at least
 * 4 KiB, more than a frame; tbf cuts larger GSO packets into frames): a real link never sends
 * faster than its rate, and a larger bucket lets small transfers pass at memory speed. The
 * queue holds 50 ms of the rate.
 */
function shape(ns: string, dev: string, link: LinkRate): void {
  const burst = Math.max(4096, Math.round(link.bitsPerSec / 8 / 1000));
  const tc = ['-n', ns, 'qdisc', 'add', 'dev', dev, 'root', 'tbf'];
  run('tc', [...tc, 'rate', `${link.bitsPerSec}bit`, 'burst', String(burst), 'latency', '50ms']);
}

/**
 * Lets a connection in `ns` keep 4 MiB in flight from the start (the defaults: 128 KiB to
 * receive, 16 KiB to send, grown only as the connection goes). Every emulated host shares
 * this machine's few cores: with small buffers a link idles whenever the process at its end
 * waits for a core, and the figures would measure the scheduler, not the link.
 */
function tuneTcpBuffers(ns: string): void {
  for (const [key, value] of [
    ['tcp_rmem', '4096 4194304 33554432'],
    ['tcp_wmem', '4096 4194304 33554432'],
  ]) {
    execFileSync('ip', ['netns', 'exec', ns, 'tee', `/proc/sys/net/ipv4/${key}`], {
      input: value,
      stdio: ['pipe', 'ignore', 'pipe'],
    });
  }
}

/** Removes the namespaces of runs whose process is gone (killed before it could clean up). */
function removeStaleNamespaces(): void {
  const stale = listNamespaces().filter((ns) => {
    const m = NAME.exec(ns);
    return m !== null && !isAlive(Number(m[1]));
  });
  for (const ns of stale) removeNamespace(ns);
  if (stale.length > 0) {
    log().warn({ namespaces: stale }, `removed ${stale.length} namespaces left by dead runs`);
  }
}

function removeNamespace(ns: string): void {
  try {
    for (const pid of run('ip', ['netns', 'pids', ns]).split('\n').filter(Boolean)) {
      process.kill(Number(pid), 'SIGKILL');
    }
  } catch {
    // Already gone, or never fully made: deleting is what matters.
  }
  try {
    run('ip', ['netns', 'del', ns]);
  } catch {
    // Already gone.
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function ip(...args: string[]): void {
  run('ip', args);
}

/** Runs an iproute2 command; a failure is a UserError with the command and its message. */
function run(tool: string, args: string[]): string {
  try {
    return execFileSync(tool, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr?.trim();
    throw new UserError(
      `--link: \`${tool} ${args.join(' ')}\` failed: ${stderr || (error as Error).message}`,
    );
  }
}
