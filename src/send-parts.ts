/**
 * sendParts: an ordered list of memory buffers and file ranges to one socket,
 * the file ranges zero-copy (Kafka's `MultiRecordsSend`, Netty's
 * `write(ByteBuf); write(FileRegion)` pipeline).
 *
 * Built only on the public API: `socket.write()` for buffers and
 * `sendFile()` / `FileRegion.transferTo()` for file ranges. The socket's
 * transfer queue keeps a write made after a `sendFile()` behind it, so the
 * bytes reach the peer exactly in list order.
 *
 * @module
 */
import type net from 'node:net';
import { FileRegion } from './file-region.js';
import { sendFile, validateSendOptions, type SendFileOptions } from './send-file.js';

/** A file range given by an open fd (left open: the caller owns it). */
export interface FdRange {
  fd: number;
  offset: number;
  length: number;
}

/** One element of {@link sendParts}' list. */
export type Part = Uint8Array | FileRegion | FdRange;

/** Options of {@link sendParts}. */
export interface SendPartsOptions {
  /** Aborts the send: the socket is destroyed and the promise rejects with an `AbortError`. */
  signal?: AbortSignal;
  /** Passed to each file transfer (bytes per event-loop turn). */
  chunkSize?: number;
  /** Passed to each file transfer: `auto` (default), `sendfile`, `splice` or `copy`. */
  mechanism?: SendFileOptions['mechanism'];
  /** Passed to each file transfer: the `SO_SNDBUF` to ask for (see {@link SendFileOptions.sendBufferSize}). */
  sendBufferSize?: number;
  /**
   * Destroy the socket when a part fails (default true). A failed part leaves
   * the byte stream short, so a length-framed protocol cannot go on: the peer
   * must see a closed connection, not the next part in the wrong place.
   */
  destroyOnError?: boolean;
}

function invalidArg(name: string, message: string): TypeError {
  return Object.assign(new TypeError(`The "${name}" argument ${message}`), { code: 'ERR_INVALID_ARG_TYPE' });
}

function isFdRange(p: unknown): p is FdRange {
  return typeof p === 'object' && p !== null && 'fd' in p && 'offset' in p && 'length' in p;
}

/**
 * Total bytes `parts` will send (for a length prefix written before them).
 * A FileRegion counts what it has not yet transferred.
 */
export function partsLength(parts: readonly Part[]): number {
  let n = 0;
  for (const p of parts) {
    if (p instanceof Uint8Array) n += p.byteLength;
    else if (p instanceof FileRegion) n += p.count - p.transferred;
    else n += p.length;
  }
  return n;
}

function validateParts(parts: unknown): Part[] {
  if (!Array.isArray(parts)) throw invalidArg('parts', 'must be an array of Buffer, FileRegion or { fd, offset, length }');
  parts.forEach((p: unknown, i) => {
    if (p instanceof Uint8Array || p instanceof FileRegion) return;
    if (!isFdRange(p)) throw invalidArg(`parts[${i}]`, 'must be a Buffer, a FileRegion or { fd, offset, length }');
    if (!Number.isInteger(p.fd) || p.fd < 0) throw invalidArg(`parts[${i}].fd`, 'must be a non-negative integer');
    for (const k of ['offset', 'length'] as const) {
      const v = p[k];
      if (!Number.isSafeInteger(v) || v < 0) {
        throw Object.assign(new RangeError(`The value of "parts[${i}].${k}" is out of range. It must be a safe integer >= 0. Received ${String(v)}`), { code: 'ERR_OUT_OF_RANGE' });
      }
    }
  });
  return parts as Part[];
}

/**
 * Sends `parts` to `socket` in order and resolves with the number of bytes
 * sent once the last part has been handed to the kernel. Buffers are
 * written with `socket.write()`; `{ fd, offset, length }` ranges go through
 * {@link sendFile} (zero-copy where the transport allows it, the portable
 * copy on TLS) and the fd stays open; a {@link FileRegion} sends what it has
 * not yet transferred and stays owned (and released) by the caller.
 *
 * Parts up to the first file part are issued at the call; each later part
 * once the file part before it has been sent in full, so nothing after a
 * failed part ever reaches the peer. Do not write to the socket yourself
 * until the promise settles (await it, then write or call sendParts again).
 *
 * Arguments are validated synchronously before anything is written. If a
 * part fails (peer reset, socket destroyed, file truncated, abort), the
 * socket is destroyed (unless `destroyOnError: false`), the parts after it
 * are not sent, and the promise rejects with the first error, carrying
 * `bytesTransferred` (whole parts sent before it plus what the failing file
 * part sent) and `partIndex`.
 *
 * @example
 * ```ts
 * import { sendParts, partsLength } from 'zcopy';
 * const header = Buffer.from('HEAD');
 * const parts = [header, { fd, offset: 4096, length: 1 << 20 }, Buffer.from('TAIL')];
 * const size = Buffer.alloc(4);
 * size.writeUInt32BE(partsLength(parts));
 * await sendParts(socket, [size, ...parts]);
 * ```
 */
export function sendParts(socket: net.Socket, parts: readonly Part[], options?: SendPartsOptions): Promise<number> {
  if (typeof socket !== 'object' || socket === null || typeof (socket as { write?: unknown }).write !== 'function') {
    throw invalidArg('socket', 'must be a net.Socket');
  }
  const list = validateParts(parts);
  if (options !== undefined && (typeof options !== 'object' || options === null)) throw invalidArg('options', 'must be an object');
  const o = options ?? {};
  const destroyOnError = o.destroyOnError !== false;
  const fileOpts = { signal: o.signal, chunkSize: o.chunkSize, mechanism: o.mechanism, sendBufferSize: o.sendBufferSize };
  // Checked now, as sendFile would: found at the first file part, a bad
  // option would reject after the parts before it were written.
  validateSendOptions(fileOpts);
  if (socket.destroyed) {
    return Promise.reject(Object.assign(new Error('The socket is closed'), { code: 'ZCOPY_ERR_SOCKET_CLOSED', bytesTransferred: 0, partIndex: 0 }));
  }

  // Parts up to and including the next file part are issued at once (the
  // transfer queue keeps a write made after a sendFile() behind it); the
  // parts after a file part are issued only once it has been sent in full.
  // Issuing them earlier would let the queue replay a held buffer right
  // after a failed transfer, before anyone could stop it: a misplaced frame.
  return (async () => {
    let sent = 0;
    let i = 0;
    let failedAt = 0;
    try {
      while (i < list.length) {
        const batch: Array<Promise<number>> = [];
        const index: number[] = [];
        let fileIssued = false;
        for (; i < list.length && !fileIssued; i++) {
          const p = list[i]!;
          if (p instanceof Uint8Array) {
            if (p.byteLength === 0) continue;
            batch.push(
              new Promise<number>((resolve, reject) => {
                socket.write(p, (err) => (err ? reject(err) : resolve(p.byteLength)));
              }),
            );
          } else if (p instanceof FileRegion) {
            batch.push(p.transferTo(socket, fileOpts));
            fileIssued = true;
          } else {
            if (p.length === 0) continue;
            batch.push(sendFile(socket, p.fd, { offset: p.offset, length: p.length, ...fileOpts }));
            fileIssued = true;
          }
          index.push(i);
        }
        const results = await Promise.allSettled(batch);
        for (let k = 0; k < results.length; k++) {
          const r = results[k]!;
          if (r.status === 'rejected') {
            failedAt = index[k]!;
            throw r.reason;
          }
          sent += r.value;
        }
      }
      return sent;
    } catch (e) {
      const err = e as Error & { bytesTransferred?: number; partIndex?: number };
      if (destroyOnError && !socket.destroyed) socket.destroy();
      if (typeof err === 'object' && err !== null) {
        try {
          const partial = list[failedAt] instanceof Uint8Array ? 0 : typeof err.bytesTransferred === 'number' ? err.bytesTransferred : 0;
          err.bytesTransferred = sent + partial;
          err.partIndex = failedAt;
        } catch {
          // A frozen error keeps its shape.
        }
      }
      throw err;
    }
  })();
}
