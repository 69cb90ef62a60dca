import { Server as GrpcServer, type Server, ServerCredentials } from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation } from 'grpc-health-check';
import type { CallAuthenticator } from '../distributed/call-authenticator.js';
import { UserError } from '../errors.js';
import { log } from '../logging/logger.js';
import { DEFAULT_GRPC_SETTINGS, type GrpcSettings, serverOptions } from './grpc-settings.js';
import { protocolPackageDefinition } from './proto-package.js';

const HEALTH_SERVICE = 'grpc.health.v1.Health';
const REFLECTION_SERVICES = [
  'grpc.reflection.v1.ServerReflection',
  'grpc.reflection.v1alpha.ServerReflection',
];

/** A service implementation that registers itself on a server the caller owns. */
export interface ServiceRegistrar {
  /** Fully qualified gRPC service name, reported SERVING by the health service. */
  readonly serviceName: string;
  addToServer(server: Server): void;
}

export interface GrpcServerSpec {
  /** Interface to listen on; default all interfaces. */
  host?: string;
  /** Port; 0 (the default) picks a free one. */
  port?: number;
  services: readonly ServiceRegistrar[];
  settings?: Partial<GrpcSettings>;
  /** Default: insecure (plain TCP). */
  credentials?: ServerCredentials;
  /**
   * Checks every call's credential before anything else (see CallAuthenticator); absent: every
   * call is let through. Health and reflection stay open either way.
   */
  authenticator?: CallAuthenticator;
}

export interface RunningGrpcServer {
  readonly server: Server;
  /** The bound port (the real one when 0 was asked for). */
  readonly port: number;
  /** Status per service name ('' is the whole server) for the health service. */
  readonly health: HealthImplementation;
  /**
   * Reports NOT_SERVING, lets calls finish for up to `graceMs`, then cancels
   * what is left.
   */
  shutdown(graceMs?: number): Promise<void>;
}

/**
 * Starts a gRPC server with `spec.services`, the standard health service
 * (grpc.health.v1: '' and every service SERVING, so Kubernetes gRPC probes and
 * grpc_health_probe work) and server reflection (so grpcurl can list and call it), both
 * naming only the services this server serves, by their names in proto/. With an
 * authenticator, every other call is authenticated first. Health and reflection stay open:
 * Kubernetes' gRPC probes cannot send metadata, health says only SERVING or NOT_SERVING
 * (what a TCP connect tells too), and reflection only the schema shipped in proto/; neither
 * says anything about the run (its ranks, generations, data or weights).
 * Throws UserError when the address cannot be bound.
 */
export async function startGrpcServer(spec: GrpcServerSpec): Promise<RunningGrpcServer> {
  const settings = { ...DEFAULT_GRPC_SETTINGS, ...spec.settings };
  const open = Object.fromEntries(
    [HEALTH_SERVICE, ...REFLECTION_SERVICES].map((name) => [name, 'open' as const]),
  );
  const server = new GrpcServer({
    ...serverOptions(settings),
    ...(spec.authenticator ? { interceptors: [spec.authenticator.with(open).interceptor()] } : {}),
  });
  const health = new HealthImplementation({ '': 'SERVING' });
  for (const service of spec.services) {
    service.addToServer(server);
    health.setStatus(service.serviceName, 'SERVING');
  }
  health.addToServer(server);
  const definition = protocolPackageDefinition();
  if (definition) {
    // Reflection lists what this server serves, not every service of the protocol: a client
    // that called a listed service it does not serve would get UNIMPLEMENTED.
    const served = [...spec.services.map((s) => s.serviceName), HEALTH_SERVICE];
    for (const name of served) {
      if (!(name in definition)) throw new Error(`${name} is not a service of proto/`);
    }
    new ReflectionService(definition, { services: served }).addToServer(server);
  } else {
    log().warn('proto/ not found next to the package: gRPC server reflection is off');
  }

  const host = spec.host ?? '0.0.0.0';
  const target = `${host.includes(':') ? `[${host}]` : host}:${spec.port ?? 0}`;
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(
      target,
      spec.credentials ?? ServerCredentials.createInsecure(),
      (err, bound) => {
        if (err) reject(new UserError(`cannot listen for gRPC on ${target}: ${bindFailure(err)}`));
        else resolve(bound);
      },
    );
  });
  const names = ['', ...spec.services.map((s) => s.serviceName)];
  return {
    server,
    port,
    health,
    shutdown: (graceMs = 1000) => {
      for (const name of names) health.setStatus(name, 'NOT_SERVING');
      return new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    },
  };
}

/**
 * The cause in grpc-js's bind error ("No address added out of total 1 resolved errors: [listen
 * EADDRINUSE: address already in use 127.0.0.1:7070]"), as "address already in use (EADDRINUSE)".
 */
function bindFailure(error: Error): string {
  const cause = /listen (E[A-Z]+): ([^,\]]+?)(?: \S+:\d+)?(?:[,\]]|$)/.exec(error.message);
  return cause ? `${cause[2]} (${cause[1]})` : error.message;
}
