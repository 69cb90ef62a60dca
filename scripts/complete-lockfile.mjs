// Completes package-lock.json with the entries npm leaves out for optional, platform-specific
// binaries (@biomejs/cli-*, @bufbuild/buf-*) that the registry this project is built against
// does not serve. Without them `npm ci` refuses the lock as out of sync; with them it skips
// each package whose os/cpu/libc do not match, as it does for any platform binary.
// Run `npm run lock:complete` after every change of dependencies.
import { readFileSync, writeFileSync } from 'node:fs';

const lock = JSON.parse(readFileSync('package-lock.json', 'utf8'));
const pk = lock.packages;
const plat = (name) => {
  const m = name.match(/(android|darwin|linux|win32)-(arm64|x64|aarch64|armv7)(-musl)?$/);
  const cpu = { arm64: 'arm64', x64: 'x64', aarch64: 'arm64', armv7: 'arm' }[m[2]];
  return { os: [m[1]], cpu: [cpu], ...(m[3] ? { libc: ['musl'] } : {}) };
};
let added = 0;
for (const entry of Object.values(pk)) {
  for (const [dep, version] of Object.entries(entry.optionalDependencies ?? {})) {
    if (!/(android|darwin|linux|win32)-/.test(dep)) continue;
    const key = `node_modules/${dep}`;
    if (pk[key]) continue;
    pk[key] = { version, dev: entry.dev, optional: true, ...plat(dep) };
    if (!entry.dev) delete pk[key].dev;
    added++;
  }
}
const sorted = Object.fromEntries(
  Object.entries(pk).sort(([a], [b]) => (a === '' ? -1 : b === '' ? 1 : a.localeCompare(b))),
);
lock.packages = sorted;
writeFileSync('package-lock.json', JSON.stringify(lock, null, 2) + '\n');
console.log('added', added);
