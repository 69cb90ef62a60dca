import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadSync, type PackageDefinition } from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';

const PROTO_SUBDIR = join('proto', 'tfjs_ddp', 'v1');

let cached: PackageDefinition | undefined;

/**
 * The tfjs_ddp.v1 services and the health service as a proto-loader package
 * definition, for server reflection. It is read from the .proto files shipped
 * with the package (proto/ at the package root, found from this module's place
 * in src/ or dist/src/), not from the generated code, which carries no descriptors.
 * Undefined when the files are not there.
 */
export function protocolPackageDefinition(): PackageDefinition | undefined {
  if (cached) return cached;
  const root = findPackageRoot();
  if (!root) return undefined;
  const dir = join(root, PROTO_SUBDIR);
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.proto'))
    .map((f) => join('tfjs_ddp', 'v1', f));
  const healthRoot = dirname(dirname(dirname(healthProtoPath)));
  cached = loadSync([...files, 'health/v1/health.proto'], {
    includeDirs: [join(root, 'proto'), healthRoot],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  return cached;
}

function findPackageRoot(): string | undefined {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, PROTO_SUBDIR))) return dir;
    const parent = dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}
