/**
 * Sending a response body made of file ranges (and, for multipart, small
 * buffers between them).
 *
 * Three ways, picked per response:
 *  - buffered: a body below `sendfileThreshold` is read into one buffer and
 *    sent with the head in a single `end()` (one write beats head-write then
 *    sendfile for small bodies);
 *  - zero-copy (HTTP/1.x): the head goes out through the response, then each
 *    file range through `FileRegion.transferTo(socket)`, which waits for the
 *    head to flush and keeps later writes behind the file bytes. TLS sockets
 *    take zcopy's portable path inside the same call;
 *  - HTTP/2: `stream.respondWithFD` for a single range (nghttp2 reads the
 *    file in C++), writes through the compat response for multipart.
 *
 * A file that ends early (truncated while being sent) destroys the
 * connection: a short body under a Content-Length would desync keep-alive.
 *
 * @module
 */
import fs from 'node:fs';
import type { ServerResponse } from 'node:http';
import type { Http2ServerResponse, OutgoingHttpHeaders } from 'node:http2';
import net from 'node:net';
import { FileRegion, type Mechanism } from '../index.js';
import type { AnyRequest, AnyResponse } from './response.js';

/**
 * Bodies shorter than this are sent with one buffered write of head + body
 * instead of a head write followed by a zero-copy transfer. Measured with
 * bench/http/threshold.mjs (docs/benchmarks.md): over a Unix socket a
 * transfer starts to win between 128 KiB (0.88x the buffered req/s) and
 * 256 KiB (1.43x); over loopback TCP the buffered write still won at 1 MiB.
 * 256 KiB also bounds the memory one small response holds.
 */
export const DEFAULT_SENDFILE_THRESHOLD = 256 * 1024;

/** One range of the file, optionally preceded by a buffer (a multipart part header). */
export interface BodyPart {
  head?: Buffer;
  start: number;
  length: number;
}

/** A body: parts in order, then an optional trailing buffer (the closing boundary). */
export interface BodyPlan {
  status: number;
  contentLength: number;
  parts: BodyPart[];
  tail?: Buffer;
}

/** What reached the client. */
export interface BodyOutcome {
  bytes: number;
  bytesZeroCopy: number;
  error?: Error;
}

const PORTABLE_CHUNK = 64 * 1024;

/** The error for a file that ended before the bytes its headers promised. */
function truncatedError(sent: number): Error {
  const err = new Error(`file ended early (truncated while being served) after ${sent} body bytes`) as Error & { code: string; bytesTransferred: number };
  err.code = 'ZCOPY_ERR_FILE_TRUNCATED';
  err.bytesTransferred = sent;
  return err;
}

function pread(fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => fs.read(fd, buf, offset, length, position, (err, n) => (err ? reject(err) : resolve(n))));
}

/** Reads exactly `length` bytes at `position` into `buf` at `offset`, or throws truncated. */
async function readExact(fd: number, buf: Buffer, offset: number, length: number, position: number, sentSoFar: number): Promise<void> {
  let done = 0;
  while (done < length) {
    const bytesRead = await pread(fd, buf, offset + done, length - done, position + done);
    if (bytesRead === 0) throw truncatedError(sentSoFar + done);
    done += bytesRead;
  }
}

/** True for the http2 compat response. */
export function isHttp2(res: AnyResponse): res is Http2ServerResponse {
  return typeof (res as Http2ServerResponse).stream === 'object' && (res as Http2ServerResponse).stream !== null && typeof (res as Http2ServerResponse).createPushResponse === 'function';
}

/**
 * True when bytes may be written to the socket behind the response: a
 * plain node:http response whose write/end nobody replaced (a compression
 * middleware that wraps them must see every byte).
 */
function socketWritable(res: AnyResponse): boolean {
  const own = (k: string): boolean => Object.prototype.hasOwnProperty.call(res, k);
  return !own('write') && !own('end') && !own('flushHeaders');
}

/** The response's socket, once assigned (pipelined responses wait their turn); null if the connection closed first. */
function socketFor(req: AnyRequest, res: ServerResponse): Promise<net.Socket | null> {
  if (res.socket) return Promise.resolve(res.socket);
  const conn = req.socket as net.Socket | undefined;
  if (!conn || conn.destroyed) return Promise.resolve(null);
  return new Promise((resolve) => {
    const onSocket = (s: net.Socket): void => {
      conn.removeListener('close', onClose);
      resolve(s);
    };
    const onClose = (): void => {
      res.removeListener('socket', onSocket);
      resolve(null);
    };
    res.once('socket', onSocket);
    conn.once('close', onClose);
  });
}

/** Waits for 'drain' or rejects when the response closes first. */
function drained(res: AnyResponse): Promise<void> {
  return new Promise((resolve, reject) => {
    const r = res as ServerResponse;
    const onDrain = (): void => {
      r.removeListener('close', onClose);
      resolve();
    };
    const onClose = (): void => {
      r.removeListener('drain', onDrain);
      reject(new Error('response closed before the body was sent'));
    };
    r.once('drain', onDrain);
    r.once('close', onClose);
  });
}

/**
 * Sends `plan` as the body of `res` (status and Content-Length set here; the
 * other headers already are). Never rejects: a failure after the head went
 * out destroys the connection and is reported in `error`.
 */
export async function sendBody(req: AnyRequest, res: AnyResponse, fd: number, plan: BodyPlan, threshold: number, mechanism: Mechanism = 'auto'): Promise<BodyOutcome> {
  res.statusCode = plan.status;
  res.setHeader('Content-Length', plan.contentLength);
  const r = res as ServerResponse;
  if (req.method === 'HEAD' || plan.contentLength === 0) {
    r.end();
    return { bytes: 0, bytesZeroCopy: 0 };
  }
  try {
    if (plan.contentLength < threshold) return await sendBuffered(r, fd, plan);
    if (isHttp2(res)) {
      const only = plan.parts.length === 1 && !plan.parts[0]!.head && !plan.tail ? plan.parts[0]! : undefined;
      if (only) return await sendHttp2Fd(res, fd, plan.status, only);
      return await sendPortable(res, fd, plan);
    }
    if (!socketWritable(res)) return await sendPortable(res, fd, plan);
    return await sendZeroCopy(req, r, fd, plan, threshold, mechanism);
  } catch (err) {
    // Only reached before any body byte left (buffered read failed) or for a
    // failure of the response itself: the connection cannot be trusted.
    res.destroy();
    return { bytes: 0, bytesZeroCopy: 0, error: err as Error };
  }
}

async function sendBuffered(res: ServerResponse, fd: number, plan: BodyPlan): Promise<BodyOutcome> {
  const buf = Buffer.allocUnsafe(plan.contentLength);
  let o = 0;
  for (const part of plan.parts) {
    if (part.head) o += part.head.copy(buf, o);
    await readExact(fd, buf, o, part.length, part.start, 0);
    o += part.length;
  }
  if (plan.tail) o += plan.tail.copy(buf, o);
  res.end(buf);
  return { bytes: buf.length, bytesZeroCopy: 0 };
}

/** Parts at least this long go zero-copy inside a large multipart body; shorter ones are copied with their part header. */
const MIN_ZERO_COPY_PART = 16 * 1024;

async function sendZeroCopy(req: AnyRequest, res: ServerResponse, fd: number, plan: BodyPlan, threshold: number, mechanism: Mechanism): Promise<BodyOutcome> {
  const socket = await socketFor(req, res);
  if (!socket) {
    res.destroy();
    return { bytes: 0, bytesZeroCopy: 0, error: new Error('connection closed before the response started') };
  }
  // An injected request (light-my-request, tests) has no kernel socket.
  if (!(socket instanceof net.Socket)) return sendPortable(res, fd, plan);
  let bytes = 0;
  let zc = 0;
  try {
    for (let i = 0; i < plan.parts.length; i++) {
      const part = plan.parts[i]!;
      if (part.head && part.length < Math.min(MIN_ZERO_COPY_PART, threshold)) {
        const b = Buffer.allocUnsafe(part.head.length + part.length);
        part.head.copy(b, 0);
        await readExact(fd, b, part.head.length, part.length, part.start, bytes);
        res.write(b);
        bytes += b.length;
        continue;
      }
      if (part.head) {
        res.write(part.head);
        bytes += part.head.length;
      } else if (!res.headersSent) {
        res.flushHeaders();
      }
      if (part.length === 0) continue;
      const region = new FileRegion(fd, part.start, part.length);
      try {
        await region.transferTo(socket, { mechanism });
      } finally {
        bytes += region.transferred;
        zc += region.bytesZeroCopy;
        region.release();
      }
    }
    if (plan.tail) bytes += plan.tail.length;
    res.end(plan.tail);
    return { bytes, bytesZeroCopy: zc };
  } catch (err) {
    // Truncated file, reset peer, destroyed socket: the byte count promised
    // in Content-Length cannot be met, so the connection must go.
    res.destroy();
    return { bytes, bytesZeroCopy: zc, error: err as Error };
  }
}

async function sendPortable(res: AnyResponse, fd: number, plan: BodyPlan): Promise<BodyOutcome> {
  const w = res as ServerResponse;
  let bytes = 0;
  try {
    for (const part of plan.parts) {
      if (part.head) {
        if (!w.write(part.head)) await drained(res);
        bytes += part.head.length;
      }
      let done = 0;
      while (done < part.length) {
        const n = Math.min(PORTABLE_CHUNK, part.length - done);
        // A fresh buffer per chunk: the response keeps a reference until it is flushed.
        const b = Buffer.allocUnsafe(n);
        await readExact(fd, b, 0, n, part.start + done, bytes);
        done += n;
        bytes += n;
        if (!w.write(b)) await drained(res);
      }
    }
    if (plan.tail) bytes += plan.tail.length;
    w.end(plan.tail);
    return { bytes, bytesZeroCopy: 0 };
  } catch (err) {
    res.destroy();
    return { bytes, bytesZeroCopy: 0, error: err as Error };
  }
}

const H2_FORBIDDEN = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade']);

async function sendHttp2Fd(res: Http2ServerResponse, fd: number, status: number, part: BodyPart): Promise<BodyOutcome> {
  const stream = res.stream;
  const headers: OutgoingHttpHeaders = { ':status': status };
  for (const [k, v] of Object.entries(res.getHeaders())) if (!H2_FORBIDDEN.has(k) && v !== undefined) headers[k] = v;
  const closed = new Promise<void>((resolve) => stream.once('close', () => resolve()));
  stream.respondWithFD(fd, headers, { offset: part.start, length: part.length });
  await closed;
  // nghttp2 ends the stream with a RST (non-zero code) when it could not
  // send everything (peer gone, file shorter than promised).
  if (stream.rstCode !== 0 && stream.rstCode !== undefined) {
    return { bytes: 0, bytesZeroCopy: 0, error: new Error(`HTTP/2 stream reset (code ${stream.rstCode})`) };
  }
  return { bytes: part.length, bytesZeroCopy: 0 };
}
