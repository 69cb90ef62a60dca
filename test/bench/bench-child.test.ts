import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { inheritedNodeFlags } from '../../src/bench/bench-child.js';

describe('inheritedNodeFlags', () => {
  it('drops -e/--eval/-p/--print/--input-type and their values, keeps other node flags', () => {
    expect(
      inheritedNodeFlags([
        '--initial-old-space-size=128',
        '-e',
        'spawnAgain()',
        '--eval=x()',
        '-p',
        '1',
        '--print=2',
        '--input-type=module',
        '--input-type',
        'commonjs',
        '--stack-size=2000',
      ]),
    ).toEqual(['--initial-old-space-size=128', '--stack-size=2000']);
  });

  it('a benchmark child started from `node -e` runs the CLI, not the script again', () => {
    const module = fileURLToPath(new URL('../../dist/src/bench/bench-child.js', import.meta.url));
    // The child would print "again" (and spawn more) if it inherited the -e script.
    const script = `
      import { BenchChild } from ${JSON.stringify(module)};
      if (process.env.BENCH_CHILD_TEST) { console.log('again'); process.exit(0); }
      process.env.BENCH_CHILD_TEST = '1';
      const child = new BenchChild('the child', ['--version']);
      console.log('exit', await child.exited);
    `;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 60_000,
    });
    expect(out).not.toContain('again');
    expect(out).toContain('exit 0');
  });
});
