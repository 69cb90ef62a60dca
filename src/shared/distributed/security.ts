import { readFile } from 'node:fs/promises';
import { type ChannelCredentials, credentials, ServerCredentials } from '@grpc/grpc-js';
import { UserError } from '../errors.js';

/** The security flags of `coordinator` and `worker`, as commander hands them over. */
export interface SecurityFlags {
  token?: string;
  tokenFile?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
}

/** Credentials for every gRPC server and channel of one process. */
export interface Security {
  /** The shared join token; undefined when none is configured. */
  token: string | undefined;
  server: ServerCredentials;
  channel: ChannelCredentials;
  tls: boolean;
  /**
   * The TLS files' text, for a thread that builds its own credentials (grpc-js credential
   * objects cannot cross threads: the worker's TransportThread); undefined without TLS.
   */
  pem: TlsPem | undefined;
}

/**
 * Reads the token (--token, or the first line of --token-file, as a Kubernetes Secret mounts
 * it) and the TLS files. TLS is mutual: the server presents --tls-cert/--tls-key and requires
 * clients to present a certificate signed by --tls-ca; clients do the same the other way round.
 * Throws UserError naming the flag when the flags do not fit together or a file is unreadable.
 */
export async function loadSecurity(raw: SecurityFlags): Promise<Security> {
  // An empty value (an environment variable set to '') counts as not given.
  const flags = Object.fromEntries(
    Object.entries(raw).map(([k, v]) => [k, v === '' ? undefined : v]),
  ) as SecurityFlags;
  if (flags.token !== undefined && flags.tokenFile !== undefined) {
    throw new UserError('--token and --token-file: give one of them, not both');
  }
  let token = flags.token;
  if (flags.tokenFile !== undefined) {
    token = (await readText('--token-file', flags.tokenFile)).split(/\r?\n/)[0].trim();
    if (token === '') throw new UserError(`--token-file ${flags.tokenFile} is empty`);
  }
  const tls = [flags.tlsCert, flags.tlsKey, flags.tlsCa];
  const given = tls.filter((f) => f !== undefined).length;
  if (given === 0) {
    return {
      token,
      server: ServerCredentials.createInsecure(),
      channel: credentials.createInsecure(),
      tls: false,
      pem: undefined,
    };
  }
  if (given !== 3) {
    throw new UserError('--tls-cert, --tls-key and --tls-ca: give all three, or none');
  }
  const [cert, key, ca] = await Promise.all([
    readPem('--tls-cert', flags.tlsCert as string),
    readPem('--tls-key', flags.tlsKey as string),
    readPem('--tls-ca', flags.tlsCa as string),
  ]);
  const pem = { cert, key, ca };
  return { token, ...tlsCredentials(pem), tls: true, pem };
}

/** PEM text of a TLS certificate, its private key and the CA that signs every peer's. */
export interface TlsPem {
  cert: string;
  key: string;
  ca: string;
}

/**
 * Mutual TLS from PEM text: the server presents `cert` and requires a client certificate signed
 * by `ca`; clients do the same the other way round.
 */
export function tlsCredentials(pem: TlsPem): {
  server: ServerCredentials;
  channel: ChannelCredentials;
} {
  const [cert, key, ca] = [pem.cert, pem.key, pem.ca].map((text) => Buffer.from(text, 'utf8'));
  return {
    server: ServerCredentials.createSsl(ca, [{ cert_chain: cert, private_key: key }], true),
    channel: credentials.createSsl(ca, key, cert),
  };
}

async function readText(flag: string, path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    throw new UserError(`${flag} ${path}: ${(error as NodeJS.ErrnoException).message}`);
  }
}

async function readPem(flag: string, path: string): Promise<string> {
  const text = await readText(flag, path);
  if (!text.includes('-----BEGIN ')) throw new UserError(`${flag} ${path} is not a PEM file`);
  return text;
}
