import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { Metadata, ServerInterceptingCall, type ServerInterceptor, status } from '@grpc/grpc-js';

/**
 * The call metadata that carries a call's credential: the join token on Join, the worker's
 * coordinator credential on its other coordinator calls, the generation credential on the
 * ring's Exchange and the star's Reduce streams. See docs/design.md, "Who may call what".
 */
export const CREDENTIAL_METADATA = 'tfjs-ddp-credential';

/** A fresh secret: 256 random bits, base64url (43 characters). */
export function newCredential(): string {
  return randomBytes(32).toString('base64url');
}

/**
 * Compares two secrets in constant time: both are hashed first, so neither their lengths nor a
 * common prefix change how long the comparison takes.
 */
export function secretsEqual(expected: string, given: string): boolean {
  return timingSafeEqual(digest(expected), digest(given));
}

/** The secrets that admit a call of one service or method now, or 'open' (no credential asked). */
export type AcceptedSecrets = (() => readonly string[]) | 'open';

/**
 * Decides from a call's metadata alone, before its handler runs or any message is read,
 * whether the call may proceed. Rules are keyed by '/package.Service/Method' or by
 * 'package.Service' (every method of it); the method's rule wins. A call of a method no rule
 * covers is refused: a service added later stays closed until someone says who may call it.
 */
export class CallAuthenticator {
  private readonly rules: ReadonlyMap<string, AcceptedSecrets>;

  constructor(rules: Record<string, AcceptedSecrets>) {
    this.rules = new Map(Object.entries(rules));
  }

  /** A copy with `rules` added (startGrpcServer opens the health and reflection services). */
  with(rules: Record<string, AcceptedSecrets>): CallAuthenticator {
    return new CallAuthenticator({ ...Object.fromEntries(this.rules), ...rules });
  }

  /**
   * Why a call of `path` ('/package.Service/Method') with `credential` is refused, or undefined
   * when it may proceed. Every accepted secret is compared (no early exit), each in constant time.
   */
  refusal(path: string, credential: string | undefined): string | undefined {
    const service = path.split('/')[1] ?? '';
    const rule = this.rules.get(path) ?? this.rules.get(service);
    if (rule === 'open') return undefined;
    if (credential === undefined || credential === '') return MISSING;
    let admitted = false;
    for (const secret of rule?.() ?? []) {
      if (secretsEqual(secret, credential)) admitted = true;
    }
    return admitted ? undefined : INVALID;
  }

  /**
   * The grpc-js server interceptor that applies `refusal` to every call: a refused call ends with
   * UNAUTHENTICATED as soon as its metadata arrives, its handler never runs and none of its
   * messages is read. The message says nothing about the run (not which ranks or generations
   * exist), only what the caller lacks.
   */
  interceptor(): ServerInterceptor {
    return (method, call) =>
      new ServerInterceptingCall(call, {
        start: (next) =>
          next({
            onReceiveMetadata: (metadata, proceed) => {
              const values = metadata.get(CREDENTIAL_METADATA);
              const credential =
                values.length === 1 && typeof values[0] === 'string' ? values[0] : undefined;
              const refused = this.refusal(method.path, credential);
              if (refused === undefined) {
                // Handlers have no use for the secret: it goes no further.
                metadata.remove(CREDENTIAL_METADATA);
                proceed(metadata);
              } else {
                call.sendStatus({
                  code: status.UNAUTHENTICATED,
                  details: refused,
                  metadata: new Metadata(),
                });
              }
            },
          }),
      });
  }
}

const MISSING = `this call needs a credential of this run in the ${CREDENTIAL_METADATA} metadata (to join: the run's join token, --token or --token-file)`;
const INVALID = `the ${CREDENTIAL_METADATA} metadata holds no valid credential of this run (a wrong join token, or a credential that was revoked)`;

/**
 * The metadata for one call with `credential` (none when undefined or ''): how every client of
 * this project attaches its credential. Per call, not as a client interceptor, so the calls
 * that carry the gradients go through grpc-js exactly as before.
 */
export function credentialMetadata(credential: string | undefined): Metadata {
  const metadata = new Metadata();
  if (credential) metadata.set(CREDENTIAL_METADATA, credential);
  return metadata;
}

/**
 * The credential of the current membership generation, which the ring's Exchange and the star's
 * Reduce streams carry. The coordinator rotates it for every generation it forms and sends it in
 * that generation's Membership message; a worker adopts it from there. Only the current one
 * admits new calls: a previous generation's is refused, so a worker that was left out of a
 * generation cannot open a stream into it.
 */
export class GenerationCredential {
  private value: string | undefined;

  /** The current credential, if there is one yet. */
  get current(): string | undefined {
    return this.value;
  }

  /** Coordinator: a fresh credential for the generation about to be announced. */
  rotate(): string {
    this.value = newCredential();
    return this.value;
  }

  /** Worker: the credential of the generation a Membership message announced. */
  adopt(credential: string): void {
    this.value = credential === '' ? undefined : credential;
  }

  /** The rule for a CallAuthenticator: the current credential only. */
  readonly accepted = (): readonly string[] => (this.value === undefined ? [] : [this.value]);
}

function digest(secret: string): Buffer {
  return createHash('sha256').update(secret, 'utf8').digest();
}
