/**
 * sendFile: a file range to a socket, zero-copy where the kernel can.
 *
 * @module
 */
import type { FileHandle } from 'node:fs/promises';
import type net from 'node:net';
import { abortError } from './errors.js';
import { MECHANISMS, type Mechanism } from './internal/mechanism.js';
import { openFile, type OpenedFile } from './internal/open-file.js';
import type { SocketTurn } from './internal/hold-writes.js';
import { DEFAULT_CHUNK, notConnected, reserve, transfer, type TransferProgress } from './internal/transfer.js';
import { validateFile, validateObject, validateOneOf, validatePositiveInt, validateSignal, validateTarget, targetFdError } from './internal/validate.js';
import { validateOffset } from './errors.js';

export type { Mechanism };

/** Options of {@link sendFile}. */
export interface SendFileOptions {
  /** First byte of the file to send. Default 0. */
  offset?: number;
  /** Bytes to send. Default: to the end of the file as it is at the call. */
  length?: number;
  /** Aborts the transfer; the promise rejects with an `AbortError`. */
  signal?: AbortSignal;
  /** Bytes moved per event-loop turn before yielding to other I/O. Default 2 MiB (nginx's sendfile_max_chunk). */
  chunkSize?: number;
  /**
   * How to move the bytes: `sendfile` (file -> socket in the kernel), `splice`
   * (file -> pipe -> socket), `copy` (a native pread/write loop), or `auto`
   * (default: chosen per transport on measured evidence; see
   * docs/architecture.md). TLS sockets, non-regular files and a missing addon
   * always take the portable path.
   */
  mechanism?: Mechanism;
  /**
   * The socket send buffer (`SO_SNDBUF`, bytes) to ask for before a native
   * transfer; Linux doubles the figure and caps the request at
   * `net.core.wmem_max`. A buffer is never made smaller, and it stays as set
   * after the transfer (as your own setsockopt would). `0`: leave the socket's
   * buffer alone. Default: a zero-copy transfer of 4 MiB or more to a Unix
   * socket asks for 4 MiB for its duration and puts the old size back
   * afterwards (fewer writability wake-ups: see docs/api.md); other sockets
   * are left as they are (on TCP, setting it turns off Linux's send-buffer
   * autotuning). The portable path (TLS, no addon) ignores it.
   */
  sendBufferSize?: number;
}

const MAX_CHUNK = 0x7ffff000;
const MAX_SEND_BUFFER = 0x7fffffff;

/** @internal Validates SendFileOptions synchronously. */
export function validateSendOptions(options: unknown): Required<Pick<SendFileOptions, 'chunkSize' | 'mechanism'>> & SendFileOptions {
  const o = validateObject('options', options) as SendFileOptions;
  return {
    offset: validateOffset('options.offset', o.offset),
    length: validateOffset('options.length', o.length),
    signal: validateSignal('options.signal', o.signal),
    chunkSize: validatePositiveInt('options.chunkSize', o.chunkSize, 4096, MAX_CHUNK) ?? DEFAULT_CHUNK,
    mechanism: validateOneOf('options.mechanism', o.mechanism, MECHANISMS) ?? 'auto',
    sendBufferSize: validatePositiveInt('options.sendBufferSize', o.sendBufferSize, 0, MAX_SEND_BUFFER),
  };
}

/**
 * Sends `[offset, offset + length)` of a file to a connected stream socket
 * and resolves with the number of bytes sent.
 *
 * On Linux with the addon, the bytes go from the page cache to the socket
 * with `sendfile(2)` (Java's `FileChannel.transferTo`): no copy through
 * JavaScript, the event loop free while the peer is slow, and chunks that
 * would wait for the disk sent from the threadpool. Bytes Node still buffers
 * for the socket go out first; writes made during the transfer go out after
 * it. Elsewhere (TLS, non-regular files, no addon) a portable copy with
 * backpressure does the same job. `stats()` says which path bytes took.
 *
 * Rejects with `ZCOPY_ERR_FILE_TRUNCATED` if the file ends early, with a
 * Node-style system error (`EPIPE`, `ECONNRESET`) if the peer goes away,
 * with `ZCOPY_ERR_SOCKET_CLOSED` if the socket is destroyed, with
 * `ZCOPY_ERR_NOT_CONNECTED` for a socket that was never connected, and with
 * an `AbortError` when `signal` aborts. Every rejection carries
 * `bytesTransferred`.
 *
 * A corked socket (`socket.cork()`) is uncorked when the file's turn comes,
 * every level: the bytes written before the call must reach the wire before
 * the file. It stays uncorked; a later `uncork()` is a harmless no-op.
 *
 * @param target - a connected `net.Socket` (TCP, Unix, or TLS) or a socket fd
 * @param file - a path (opened and closed here), an fd or a `FileHandle` (left open)
 *
 * @example
 * ```ts
 * import net from 'node:net';
 * import { sendFile } from 'zcopy';
 *
 * net.createServer(async (socket) => {
 *   const sent = await sendFile(socket, '/srv/big.iso');
 *   socket.end();
 * }).listen(9000, '127.0.0.1');
 * ```
 */
export function sendFile(target: net.Socket | number, file: string | number | FileHandle, options?: SendFileOptions): Promise<number> {
  // Arguments are checked before any I/O, synchronously.
  const t = validateTarget('target', target);
  const f = validateFile('file', file);
  const o = validateSendOptions(options);
  // A never-connected socket, or a raw fd that is no socket (both paths): reject before taking its turn.
  const bad = typeof t === 'number' ? targetFdError(t) : notConnected(t);
  if (bad) return Promise.reject(bad);
  // The socket's queue place is taken now, before any await, so writes the
  // caller makes after this call go out after the file.
  const turn = reserve(t);
  return run(t, f, o, turn);
}

async function run(target: net.Socket | number, file: string | number | FileHandle, o: ReturnType<typeof validateSendOptions>, turn: SocketTurn | undefined): Promise<number> {
  let opened: OpenedFile;
  try {
    if (o.signal?.aborted) throw abortError(o.signal);
    opened = await openFile(file);
  } catch (err) {
    turn?.leave(true);
    throw err;
  }
  const progress: TransferProgress = { sent: 0, zeroCopy: 0 };
  try {
    return await transfer(
      { target, fd: opened.fd, path: opened.path, offset: o.offset ?? 0, length: o.length, chunkSize: o.chunkSize, mechanism: o.mechanism, sendBufferSize: o.sendBufferSize, signal: o.signal, turn },
      progress,
    );
  } finally {
    await opened.close();
  }
}
