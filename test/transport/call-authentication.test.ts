// Every call to a server with a CallAuthenticator is authenticated before anything else: a
// stream without the generation's credential, or with an older generation's, is refused with
// UNAUTHENTICATED before its first message is read, and touches nothing (the real rank is
// accepted afterwards, not refused as ALREADY_EXISTS). Health and reflection stay open.
import { credentials, Metadata, status } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { type ExchangeRequest, PeerServiceClient } from '../../src/gen/tfjs_ddp/v1/peer.js';
import type { Collective } from '../../src/shared/collectives/collective.js';
import { createCollective } from '../../src/shared/collectives/create-collective.js';
import {
  CallAuthenticator,
  CREDENTIAL_METADATA,
  GenerationCredential,
  newCredential,
  secretsEqual,
} from '../../src/shared/distributed/call-authenticator.js';
import { openHelloStream } from '../../src/shared/transport/client-stream.js';
import { type RunningGrpcServer, startGrpcServer } from '../../src/shared/transport/grpc-server.js';
import { channelOptions, PROTOCOL_VERSION } from '../../src/shared/transport/grpc-settings.js';
import { PeerService } from '../../src/shared/transport/peer-service.js';
import { healthStatus } from '../distributed/fake-worker.js';
import { statusAfter } from './raw-call.js';

let servers: RunningGrpcServer[] = [];
let collectives: Collective[] = [];
let clients: PeerServiceClient[] = [];

afterEach(async () => {
  for (const c of clients) c.close();
  await Promise.all(collectives.map((c) => c.close()));
  await Promise.all(servers.map((s) => s.shutdown(100)));
  servers = [];
  collectives = [];
  clients = [];
});

/** Two ranks' PeerServices, each behind its own authenticator and generation credential. */
async function twoRanks() {
  const ranks = [0, 1].map(() => ({
    service: new PeerService(2000),
    generation: new GenerationCredential(),
  }));
  servers = await Promise.all(
    ranks.map(({ service, generation }) =>
      startGrpcServer({
        host: '127.0.0.1',
        services: [service],
        authenticator: new CallAuthenticator({ [service.serviceName]: generation.accepted }),
      }),
    ),
  );
  const addresses = servers.map((s) => `127.0.0.1:${s.port}`);
  const connect = (generation: number, credential: string) =>
    Promise.all(
      ranks.map(({ service }, rank) =>
        createCollective('ring', {
          rank,
          worldSize: 2,
          generation,
          timeoutMs: 3000,
          peerAddresses: addresses,
          peerService: service,
          credential,
        }),
      ),
    );
  return { ranks, addresses, connect };
}

function rawClient(address: string): PeerServiceClient {
  const client = new PeerServiceClient(address, credentials.createInsecure(), channelOptions());
  clients.push(client);
  return client;
}

function withCredential(credential: string): Metadata {
  const metadata = new Metadata();
  metadata.set(CREDENTIAL_METADATA, credential);
  return metadata;
}

const hello = (generation: number, rank: number, peerRank: number): ExchangeRequest => ({
  kind: {
    $case: 'hello',
    value: { protocolVersion: PROTOCOL_VERSION, generation, worldSize: 2, rank, peerRank },
  },
});

describe('an authenticated PeerService', () => {
  it('refuses a stranger posing as a rank before reading its hello, and then admits the real rank', async () => {
    const { ranks, addresses } = await twoRanks();
    const credential = newCredential();
    for (const r of ranks) r.generation.adopt(credential);
    // Rank 0 expects rank 1's stream: the strangers come first and claim to be rank 1.
    const expecting = ranks[0].service.accept({
      generation: 1,
      worldSize: 2,
      rank: 0,
      peerRank: 1,
      timeoutMs: 3000,
    });
    const client = rawClient(addresses[0]);
    for (const metadata of [new Metadata(), withCredential('guess'), withCredential('')]) {
      const refused = await statusAfter(client.exchange(metadata), [hello(1, 1, 0)]);
      expect([status[refused.code], refused.received]).toEqual(['UNAUTHENTICATED', []]);
      // Nothing about ranks or generations in the answer.
      expect(refused.details).not.toMatch(/rank|generation/);
    }
    // The stranger took nothing: the real rank 1 is accepted (not ALREADY_EXISTS).
    const real = await openHelloStream({
      client: PeerServiceClient,
      address: addresses[0],
      peer: 'rank 0',
      timeoutMs: 3000,
      credential,
      open: (c, metadata) => c.exchange(metadata),
      hello: hello(1, 1, 0),
      refusal: () => undefined,
    });
    expect(await expecting).toBeDefined();
    real.call.cancel();
    real.client.close();
  });

  it('refuses the credential of an earlier generation once the next one is adopted', async () => {
    const { ranks, addresses, connect } = await twoRanks();
    const first = newCredential();
    for (const r of ranks) r.generation.adopt(first);
    collectives = await connect(1, first);
    const second = newCredential();
    for (const r of ranks) r.generation.adopt(second);
    const stale = await statusAfter(rawClient(addresses[1]).exchange(withCredential(first)), [
      hello(2, 0, 1),
    ]);
    expect([status[stale.code], stale.received]).toEqual(['UNAUTHENTICATED', []]);
    // The established streams of generation 1 are not cut by the rotation; generation 2 connects.
    await Promise.all(collectives.map((c) => c.close()));
    collectives = await connect(2, second);
    expect(collectives.map((c) => c.generation)).toEqual([2, 2]);
  });

  it('lets a rank dial a neighbour that adopts the new credential a moment later', async () => {
    const { ranks, connect } = await twoRanks();
    const credential = newCredential();
    ranks[0].generation.adopt(credential);
    // Rank 1 learns the generation's credential 500 ms after rank 0 started dialling it.
    setTimeout(() => ranks[1].generation.adopt(credential), 500);
    collectives = await connect(1, credential);
    expect(collectives).toHaveLength(2);
  });

  it('keeps health open, and refuses a service no rule names', async () => {
    const service = new PeerService(500);
    const server = await startGrpcServer({
      host: '127.0.0.1',
      services: [service],
      authenticator: new CallAuthenticator({}),
    });
    servers = [server];
    expect(await healthStatus(server.port, service.serviceName)).toBe('SERVING');
    const refused = await statusAfter(
      rawClient(`127.0.0.1:${server.port}`).exchange(withCredential(newCredential())),
      [hello(1, 1, 0)],
    );
    expect(status[refused.code]).toBe('UNAUTHENTICATED');
  });
});

describe('secretsEqual', () => {
  it('is true for the same secret only, whatever the lengths', () => {
    const secret = newCredential();
    expect(secret).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(secretsEqual(secret, `${secret}`)).toBe(true);
    expect(secretsEqual(secret, secret.slice(0, 42))).toBe(false);
    expect(secretsEqual(secret, `${secret}x`)).toBe(false);
    expect(secretsEqual(secret, '')).toBe(false);
    expect(secretsEqual(secret, newCredential())).toBe(false);
  });
});
