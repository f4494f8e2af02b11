// Human descriptions for the errno codes zcopy meets, as libuv words them
// (node's util.getSystemErrorMap gives the same text, but is newer than 20.0).
import * as util from 'node:util';

const fallback: Record<string, string> = {
  EAGAIN: 'resource temporarily unavailable',
  EPIPE: 'broken pipe',
  ECONNRESET: 'connection reset by peer',
  EBADF: 'bad file descriptor',
  EINVAL: 'invalid argument',
  ENOSYS: 'function not implemented',
  EOPNOTSUPP: 'operation not supported on socket',
  EPERM: 'operation not permitted',
  EISDIR: 'illegal operation on a directory',
  ENOTSOCK: 'socket operation on non-socket',
  ENOTCONN: 'socket is not connected',
  EXDEV: 'cross-device link not permitted',
  ENOSPC: 'no space left on device',
  EIO: 'i/o error',
  ENOENT: 'no such file or directory',
  ENOMEM: 'not enough memory',
  EACCES: 'permission denied',
};

let map: Map<number, [string, string]> | undefined;

export function strerror(code: string): string {
  const getMap = (util as unknown as { getSystemErrorMap?: () => Map<number, [string, string]> }).getSystemErrorMap;
  if (getMap) {
    map ??= getMap();
    for (const [name, desc] of map.values()) if (name === code) return desc;
  }
  return fallback[code] ?? 'unknown error';
}
