// Fails when `npm run proto` would change the generated code: regenerates from proto/ with the
// project's own buf.gen.yaml into a temporary folder and compares it with src/gen, file by file.
// Run by `npm run lint`, so a .proto edited without regenerating (or a hand edit of src/gen)
// cannot land.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';

const GENERATED = 'src/gen';

function files(dir) {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => relative(dir, join(entry.parentPath, entry.name)))
    .sort();
}

const out = mkdtempSync(join(tmpdir(), 'tfjs-ddp-proto-'));
try {
  // buf finds protoc-gen-ts_proto on PATH, as under `npm run proto`.
  const bin = join(process.cwd(), 'node_modules', '.bin');
  execFileSync(join(bin, 'buf'), ['generate', '--output', out], {
    stdio: 'inherit',
    env: { ...process.env, PATH: `${bin}:${process.env.PATH}` },
  });
  const fresh = join(out, GENERATED);
  const expected = existsSync(fresh) ? files(fresh) : [];
  const actual = existsSync(GENERATED) ? files(GENERATED) : [];
  const problems = [
    ...expected.filter((f) => !actual.includes(f)).map((f) => `${f} is missing`),
    ...actual.filter((f) => !expected.includes(f)).map((f) => `${f} is not generated from proto/`),
    ...expected
      .filter((f) => actual.includes(f))
      .filter((f) => !readFileSync(join(fresh, f)).equals(readFileSync(join(GENERATED, f))))
      .map((f) => `${f} differs from what proto/ generates`),
  ];
  if (problems.length > 0) {
    for (const problem of problems) console.error(`${GENERATED}/${problem}`);
    console.error('run `npm run proto` and commit src/gen');
    process.exitCode = 1;
  } else {
    console.log(`${GENERATED} is what \`npm run proto\` generates (${expected.length} files)`);
  }
} finally {
  rmSync(out, { recursive: true, force: true });
}
