import type { ChannelOptions, ServerOptions } from '@grpc/grpc-js';

/**
 * Version of the tfjs_ddp.v1 wire protocol; peers with another version are refused.
 * 2: every call carries a credential in its metadata (the join token left JoinRequest).
 */
export const PROTOCOL_VERSION = 2;

/** Limits and tuning shared by every gRPC client and server of tfjs-ddp. */
export interface GrpcSettings {
  /**
   * Largest message either side accepts or sends. grpc-js receives at most 4 MiB
   * by default; a larger message is refused with RESOURCE_EXHAUSTED while the
   * server keeps serving. Chunks stay far below this limit.
   */
  maxMessageBytes: number;
  /**
   * HTTP/2 stream and connection window a client advertises
   * ('grpc-node.flow_control_window'). With the default 65,535 bytes a sender
   * stops every 64 KiB until a WINDOW_UPDATE comes back, which caps a stream at
   * 64 KiB per round trip. grpc-js servers ignore the option (their window stays
   * 64 KiB; grpc-node PR #3058 is still open), which is why bulk data flows from
   * server to client on the peer streams.
   */
  flowControlWindowBytes: number;
  /**
   * Client keepalive pings, so that a peer that vanished without closing its TCP
   * connection is noticed. grpc-js servers do not police ping rates; C-core and
   * Go servers allow pings on connections with active calls, and we send none
   * without calls.
   */
  keepaliveTimeMs: number;
  keepaliveTimeoutMs: number;
}

export const DEFAULT_GRPC_SETTINGS: Readonly<GrpcSettings> = {
  maxMessageBytes: 64 * 1024 * 1024,
  flowControlWindowBytes: 16 * 1024 * 1024,
  keepaliveTimeMs: 15_000,
  keepaliveTimeoutMs: 10_000,
};

/**
 * Node command-line flags for every process that moves gradients (workers, a
 * coordinator that reduces in star mode, benchmark ranks). An all-reduce
 * allocates short-lived buffers as fast as it moves bytes (the frames grpc-js
 * builds for each message and the buffers it reassembles received messages in),
 * and while the old generation is at its small initial size V8 answers about
 * every 64 MB of them with a full collection: three per 64 MB all-reduce. A
 * larger initial old generation (a limit: nothing is committed) leaves that
 * garbage to the cheap young-generation collections. Measured on the 2-core
 * machine, a 64 MB ring all-reduce between two processes: ~200 ms of CPU per rank
 * without, ~115 ms with. V8 reads the flag at start-up only and NODE_OPTIONS
 * refuses it: put it on the `node` command line.
 */
export const GRADIENT_PROCESS_NODE_FLAGS: readonly string[] = ['--initial-old-space-size=128'];

/** Options for a client channel. */
export function channelOptions(s: GrpcSettings = DEFAULT_GRPC_SETTINGS): ChannelOptions {
  return {
    'grpc.max_receive_message_length': s.maxMessageBytes,
    'grpc.max_send_message_length': s.maxMessageBytes,
    'grpc-node.flow_control_window': s.flowControlWindowBytes,
    'grpc.keepalive_time_ms': s.keepaliveTimeMs,
    'grpc.keepalive_timeout_ms': s.keepaliveTimeoutMs,
    'grpc.keepalive_permit_without_calls': 0,
    // Every peer gets its own connection: two links to the same address must not
    // share one HTTP/2 session (and its connection window).
    'grpc.use_local_subchannel_pool': 1,
    // grpc-js keeps up to 1 MB of a call's messages for retries and then reports a
    // write done on the next tick, before it has reached the socket. Without that
    // buffer a write callback means the message has left, which BackpressureWriter.flushed
    // relies on (a worker blocks its event loop for a step right after writing). The
    // cost: no transparent retry of a call the server refused; our streams live for a
    // whole generation, and a failed call fails the run with its own message anyway.
    'grpc.per_rpc_retry_buffer_size': 0,
  };
}

/** Options for a server. */
export function serverOptions(s: GrpcSettings = DEFAULT_GRPC_SETTINGS): ServerOptions {
  return {
    'grpc.max_receive_message_length': s.maxMessageBytes,
    'grpc.max_send_message_length': s.maxMessageBytes,
    // Servers ping too, so a worker that vanished is dropped from the coordinator.
    'grpc.keepalive_time_ms': s.keepaliveTimeMs,
    'grpc.keepalive_timeout_ms': s.keepaliveTimeoutMs,
  };
}
