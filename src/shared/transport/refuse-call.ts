import { Metadata, type ServerDuplexStream, type status } from '@grpc/grpc-js';

/**
 * Ends a server stream with a non-OK status (grpc-js turns an 'error' event on a
 * server stream into the call's status) and stops reading from it.
 */
export function refuseCall<Req, Res>(
  call: ServerDuplexStream<Req, Res>,
  code: status,
  details: string,
): void {
  call.removeAllListeners('data');
  call.resume();
  call.emit('error', {
    name: 'Refused',
    message: details,
    code,
    details,
    metadata: new Metadata(),
  });
}
