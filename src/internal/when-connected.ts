// Waiting for a socket that is still connecting, shared by the movers that
// take a net.Socket (splice, receiveFile).
import type net from 'node:net';
import { ZcopyError } from '../errors.js';

/**
 * Resolves once `s` is connected (at once if it is not connecting); rejects
 * with ZCOPY_ERR_SOCKET_CLOSED if it closes first. Listeners are removed
 * either way.
 */
export function whenConnected(s: net.Socket): Promise<void> {
  if (!s.connecting) return Promise.resolve();
  return new Promise<void>((resolve, reject) => {
    const ok = (): void => {
      s.off('close', bad);
      resolve();
    };
    const bad = (): void => {
      s.off('connect', ok);
      reject(new ZcopyError('ZCOPY_ERR_SOCKET_CLOSED', 'socket closed before it connected'));
    };
    s.once('connect', ok);
    s.once('close', bad);
  });
}
