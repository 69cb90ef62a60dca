import {
  CallAuthenticator,
  type GenerationCredential,
} from '../shared/distributed/call-authenticator.js';
import type { Security } from '../shared/distributed/security.js';
import { log } from '../shared/logging/logger.js';
import type { Membership } from './membership.js';

const COORDINATOR_SERVICE = 'tfjs_ddp.v1.CoordinatorService';
const REDUCTION_SERVICE = 'tfjs_ddp.v1.ReductionService';

/**
 * Who may call the coordinator's server: Join with the join token (anyone when the run has
 * none), every other CoordinatorService call with the credential Join issued to a worker that
 * is still admitted, the star's Reduce stream with the current generation's credential.
 */
export function coordinatorAuthenticator(opts: {
  joinToken: string | undefined;
  membership: Membership;
  generationCredential: GenerationCredential;
}): CallAuthenticator {
  const { joinToken } = opts;
  return new CallAuthenticator({
    [`/${COORDINATOR_SERVICE}/Join`]: joinToken === undefined ? 'open' : () => [joinToken],
    [COORDINATOR_SERVICE]: opts.membership.credentials,
    [REDUCTION_SERVICE]: opts.generationCredential.accepted,
  });
}

/**
 * One warning when the coordinator admits anyone who reaches it: no join token and no mutual
 * TLS, on an address other machines can reach. On loopback (`train --workers N` makes its own
 * token anyway) there is nothing to warn about.
 */
export function warnIfOpen(security: Security, host: string, port: number): void {
  if (security.token !== undefined || security.tls || isLoopback(host)) return;
  log().warn(
    `no join token: anyone who reaches ${host}:${port} can join this run as a worker (give --token-file, or --tls-cert/--tls-key/--tls-ca)`,
  );
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}
