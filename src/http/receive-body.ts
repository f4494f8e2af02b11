/**
 * receiveBody: an HTTP request body straight into a file. On HTTP/1.1
 * plaintext with a Content-Length the body goes socket -> pipe -> file in
 * the kernel (receiveFile), and the connection stays valid for keep-alive;
 * chunked bodies, TLS and HTTP/2 take the portable path.
 *
 * How the kernel path keeps node:http's parser in step (docs/receive.md):
 * node:http's parser reads the socket handle itself. zcopy stops that
 * reading, waits one turn so the parser finishes the chunk it is in (its
 * body bytes land in `req`'s buffer), writes those to the file, lets the
 * kernel move exactly the rest of the body, and then tells the parser the
 * body went by: it runs the parser over as many zero bytes with the body
 * callback unset, so llhttp only advances its count (no copy, no 'data'),
 * completes the message and parses the next request when reading restarts.
 *
 * @module
 */
import fs from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { IncomingMessage } from 'node:http';
import net from 'node:net';
import os from 'node:os';
import { native } from '../native.js';
import { ZcopyError, abortError, invalidArgType, systemError, validateOffset } from '../errors.js';
import { countBytes, countError, countFallback, countTransfer } from '../stats.js';
import { validateFile, validateObject, validateOneOf, validateSignal, validatePositiveInt, type FileLike } from '../internal/validate.js';
import { openTarget, receiveInto, stopReading, type ReadGuard, type ReceiveMechanism } from '../receive-file.js';

/** Options of {@link receiveBody}. */
export interface ReceiveBodyOptions {
  /**
   * The largest body accepted. A Content-Length above it rejects with
   * `ZCOPY_ERR_TOO_LARGE` (status 413) before the file is opened; a chunked
   * body that grows past it rejects as soon as it does. Default: no limit.
   */
  maxBytes?: number;
  /** Where in the file the body goes. Default 0 (a path is then created or truncated). */
  offset?: number;
  /** Aborts: rejects with an AbortError and destroys the connection (or HTTP/2 stream). */
  signal?: AbortSignal;
  /** `'copy'` forces the portable path. Default `'auto'`. */
  mechanism?: ReceiveMechanism;
}

/** A request receiveBody accepts: node:http / Express, HTTP/2 compat, or Fastify's `request` (its `raw`). */
export type BodyRequest = IncomingMessage | import('node:http2').Http2ServerRequest | { raw: IncomingMessage | import('node:http2').Http2ServerRequest };

const MECHANISMS = ['auto', 'splice', 'copy'] as const;
const E = os.constants.errno;
const ZEROES = 1024 * 1024;
let zeroes: Buffer | undefined;

function statusError(code: string, message: string, status: number, bytesTransferred: number): ZcopyError {
  const e = new ZcopyError(code, message, { bytesTransferred }) as ZcopyError & { status: number; statusCode: number; expose: boolean };
  // Express reads `status`, Fastify `statusCode`; both treat < 500 as safe to show.
  e.status = status;
  e.statusCode = status;
  e.expose = true;
  return e;
}

/**
 * Writes the body of `req` into `file` and resolves with its length.
 *
 * A Content-Length body on HTTP/1.x plaintext moves socket -> pipe -> file
 * in the kernel (see {@link receiveFile}); the connection then goes on with
 * the next request (keep-alive). Chunked bodies, TLS, HTTP/2 and a missing
 * addon take the portable path (Node reads, zcopy writes at the offset).
 * Call it before anything reads the body (Express: no body parser on the
 * route; Fastify: a content-type parser that calls `done(null)`).
 *
 * Rejects (each error carries `bytesTransferred`, what reached the file):
 * - `ZCOPY_ERR_TOO_LARGE` (`status` 413) when the body exceeds `maxBytes`;
 *   for a Content-Length this happens before anything is written;
 * - `ZCOPY_ERR_SHORT_READ` (`status` 400) when the client closes before the
 *   whole body arrived;
 * - `ZCOPY_ERR_BODY_CONSUMED` (`status` 500) when something read the body first;
 * - a system error (`ENOSPC`, `EFBIG`, `EDQUOT`) from the file: the rest of
 *   the body is unread, so the response is marked to close the connection;
 * - an AbortError when `signal` aborts (the connection is destroyed).
 *
 * @example
 * ```ts
 * import http from 'node:http';
 * import { receiveBody } from 'zcopy/http';
 *
 * http.createServer(async (req, res) => {
 *   try {
 *     const n = await receiveBody(req, '/srv/upload.bin', { maxBytes: 1 << 30 });
 *     res.writeHead(201).end(`${n}\n`);
 *   } catch (err) {
 *     res.writeHead((err as { status?: number }).status ?? 500, { connection: 'close' }).end();
 *   }
 * }).listen(8080, '127.0.0.1');
 * ```
 */
export function receiveBody(req: BodyRequest, file: string | number | FileHandle, options?: ReceiveBodyOptions): Promise<number> {
  const raw = rawOf(req);
  const f = validateFile('file', file);
  const o = validateObject('options', options);
  const opts = {
    maxBytes: validatePositiveInt('options.maxBytes', o.maxBytes, 0, Number.MAX_SAFE_INTEGER),
    offset: validateOffset('options.offset', o.offset),
    signal: validateSignal('options.signal', o.signal),
    mechanism: validateOneOf('options.mechanism', o.mechanism, MECHANISMS) ?? 'auto',
  };
  const length = contentLength(raw);
  if (length !== undefined && opts.maxBytes !== undefined && length > opts.maxBytes) {
    countError();
    return Promise.reject(statusError('ZCOPY_ERR_TOO_LARGE', `request body of ${length} bytes exceeds the limit of ${opts.maxBytes} bytes`, 413, 0));
  }
  if (raw.readableDidRead) {
    countError();
    return Promise.reject(statusError('ZCOPY_ERR_BODY_CONSUMED', 'the request body was already read', 500, 0));
  }
  const plan = nativePlan(raw, length, opts.mechanism);
  if (plan.kind === 'native') {
    // Synchronously: the parser must not read past what it has now.
    const guard = stopReading(plan.socket);
    return viaKernel(raw as IncomingMessage, plan.socket, guard, length!, f, opts);
  }
  return viaNode(raw, length, f, opts, plan.reason);
}

function rawOf(req: BodyRequest): IncomingMessage | import('node:http2').Http2ServerRequest {
  const r = req as { raw?: unknown };
  if (!(req instanceof IncomingMessage) && r.raw !== undefined && typeof (r.raw as { on?: unknown }).on === 'function') {
    return r.raw as IncomingMessage;
  }
  const s = req as { on?: unknown; headers?: unknown };
  if (typeof s.on !== 'function' || typeof s.headers !== 'object') throw invalidArgType('req', 'an http.IncomingMessage, an Http2ServerRequest or a Fastify request', req);
  return req as IncomingMessage;
}

/** The declared body length, or undefined for a chunked body (or none given on HTTP/2). */
function contentLength(req: IncomingMessage | import('node:http2').Http2ServerRequest): number | undefined {
  const h = req.headers;
  const te = h['transfer-encoding'];
  if (te !== undefined && !isH2(req)) return undefined;
  const cl = h['content-length'];
  if (cl === undefined) return isH2(req) ? undefined : 0;
  const v = Array.isArray(cl) ? cl[0] : cl;
  if (!/^\d{1,16}$/.test(String(v).trim())) return undefined;
  return Number(String(v).trim());
}

function isH2(req: object): boolean {
  return (req as { stream?: unknown; httpVersionMajor?: number }).httpVersionMajor === 2;
}

interface Parser {
  incoming?: unknown;
  execute(b: Buffer): number | Error;
  [k: number]: unknown;
  constructor: { kOnBody?: number };
}

type Plan = { kind: 'native'; socket: net.Socket } | { kind: 'portable'; reason?: string };

function nativePlan(req: IncomingMessage | import('node:http2').Http2ServerRequest, length: number | undefined, mechanism: ReceiveMechanism): Plan {
  if (native === null) return { kind: 'portable', reason: process.env.ZCOPY_FORCE_FALLBACK === '1' ? 'forced' : 'no-native' };
  if (mechanism === 'copy') return { kind: 'portable' };
  if (isH2(req)) return { kind: 'portable', reason: 'http2' };
  if (length === undefined) return { kind: 'portable', reason: 'chunked' };
  if (length === 0) return { kind: 'portable' };
  const socket = (req as IncomingMessage).socket;
  if (!(socket instanceof net.Socket) || (socket as { encrypted?: boolean }).encrypted) return { kind: 'portable', reason: 'tls' };
  const parser = (socket as unknown as { parser?: Parser | null }).parser;
  if (!parser || parser.incoming !== req || typeof parser.constructor.kOnBody !== 'number' || typeof parser.execute !== 'function') {
    return { kind: 'portable', reason: 'no-parser' };
  }
  return { kind: 'native', socket };
}

/** Marks the response of this connection to close it: the rest of the body is unread. */
function closeAfterResponse(socket: net.Socket | undefined): void {
  const res = (socket as unknown as { _httpMessage?: { shouldKeepAlive?: boolean } } | undefined)?._httpMessage;
  if (res) res.shouldKeepAlive = false;
}

async function writeAll(fd: number, buf: Buffer, pos: number, path: string | undefined, before: number): Promise<void> {
  let off = 0;
  while (off < buf.length) {
    const n = await new Promise<number>((resolve, reject) => fs.write(fd, buf, off, buf.length - off, pos + off, (err, w) => (err ? reject(err) : resolve(w)))).catch(
      (err: NodeJS.ErrnoException) => {
        throw systemError(err.errno ?? -E.EIO, 'write', path, before + off);
      },
    );
    off += n;
  }
}

interface Opts {
  maxBytes: number | undefined;
  offset: number | undefined;
  signal: AbortSignal | undefined;
  mechanism: ReceiveMechanism;
}

async function viaKernel(req: IncomingMessage, socket: net.Socket, guard: ReadGuard, length: number, file: FileLike, o: Opts): Promise<number> {
  let opened: Awaited<ReturnType<typeof openTarget>> | undefined;
  let head = 0;
  let handedOver = false;
  try {
    if (o.signal?.aborted) throw abortError(o.signal);
    // One turn: the parser finishes the chunk it was executing when the
    // handler ran, so every body byte it read is in req's buffer now.
    await new Promise<void>((r) => setImmediate(r));
    opened = await openTarget(file, o.offset === undefined);
    const base = o.offset ?? 0;
    const parts: Buffer[] = [];
    for (let c: Buffer | null; (c = req.read() as Buffer | null) !== null; ) parts.push(c);
    const buf = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    if (buf.length > 0) {
      await writeAll(opened.fd, buf, base, opened.path, 0);
      head = buf.length;
      countBytes('portable', head);
    }
    if (req.complete || head >= length) {
      guard.restore('restart');
      req.resume();
      return head;
    }
    const parser = (socket as unknown as { parser: Parser }).parser;
    handedOver = true;
    const n = await receiveInto({
      source: socket,
      file: opened.fd,
      offset: base + head,
      length: length - head,
      signal: o.signal,
      mechanism: o.mechanism,
      guard,
      beforeResume: (taken) => feedParser(socket, parser, taken),
    });
    req.resume();
    return head + n;
  } catch (err) {
    const e = err as Error & { code?: string; bytesTransferred?: number };
    if (!handedOver) {
      countError();
      guard.restore(head > 0 ? 'stopped' : 'restart');
      if (head > 0) closeAfterResponse(socket);
      if (e.code === 'ABORT_ERR') socket.destroy();
      throw withBytes(e, head);
    }
    const total = head + (e.bytesTransferred ?? 0);
    if (e.code === 'ZCOPY_ERR_SHORT_READ') {
      throw statusError('ZCOPY_ERR_SHORT_READ', `the client closed after ${total} of ${length} body bytes`, 400, total);
    }
    closeAfterResponse(socket);
    try {
      e.bytesTransferred = total;
    } catch {
      // Frozen errors keep their shape.
    }
    throw e;
  } finally {
    if (opened) await opened.close();
  }
}

function withBytes(e: Error & { bytesTransferred?: number }, n: number): Error {
  if (e.bytesTransferred === undefined) {
    try {
      e.bytesTransferred = n;
    } catch {
      // Frozen errors keep their shape.
    }
  }
  return e;
}

/**
 * Tells node:http's parser that `taken` body bytes went by: with the body
 * callback unset, llhttp only counts them, then completes the message.
 */
function feedParser(socket: net.Socket, parser: Parser, taken: number): void {
  const k = parser.constructor.kOnBody!;
  const onBody = parser[k];
  zeroes ??= Buffer.alloc(ZEROES);
  parser[k] = undefined;
  try {
    for (let left = taken; left > 0; ) {
      const n = Math.min(left, zeroes.length);
      const r = parser.execute(zeroes.subarray(0, n));
      if (typeof r !== 'number') throw r;
      left -= n;
    }
  } catch {
    // The parser cannot follow: the connection cannot go on.
    socket.destroy();
  } finally {
    parser[k] = onBody;
  }
}

/** The portable path: Node reads the body, zcopy writes it at the offset. */
async function viaNode(req: IncomingMessage | import('node:http2').Http2ServerRequest, length: number | undefined, file: FileLike, o: Opts, reason: string | undefined): Promise<number> {
  if (reason) countFallback(reason);
  countTransfer('portable');
  let opened: Awaited<ReturnType<typeof openTarget>> | undefined;
  let total = 0;
  const socket = (req as IncomingMessage).socket as net.Socket | undefined;
  const onAbort = () => (req as { destroy(e?: Error): void }).destroy(abortError(o.signal));
  o.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    if (o.signal?.aborted) throw abortError(o.signal);
    opened = await openTarget(file, o.offset === undefined);
    const base = o.offset ?? 0;
    total = await new Promise<number>((resolve, reject) => {
      let n = 0;
      let writing: Promise<void> = Promise.resolve();
      let done = false;
      const r = req as IncomingMessage;
      const finish = (err: Error | undefined) => {
        if (done) return;
        done = true;
        r.off('data', onData);
        r.off('end', onEnd);
        r.off('error', onError);
        r.off('close', onClose);
        total = n;
        if (err) reject(withBytes(err, n));
        else resolve(n);
      };
      const onData = (chunk: Buffer | string) => {
        const c = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
        if (o.maxBytes !== undefined && n + c.length > o.maxBytes) {
          // Not destroyed: the caller answers 413, and the connection closes after it.
          r.pause();
          closeAfterResponse(socket);
          void writing.then(() => finish(statusError('ZCOPY_ERR_TOO_LARGE', `request body exceeds the limit of ${o.maxBytes} bytes`, 413, n)), finish);
          r.off('data', onData);
          return;
        }
        r.pause();
        writing = writing.then(async () => {
          await writeAll(opened!.fd, c, base + n, opened!.path, n);
          n += c.length;
          countBytes('portable', c.length);
          if (!done) r.resume();
        });
        writing.catch((e: Error) => {
          closeAfterResponse(socket);
          finish(e);
        });
      };
      const onEnd = () => void writing.then(() => finish(undefined), () => {});
      const onError = (err: Error) => void writing.then(() => finish(o.signal?.aborted ? abortError(o.signal) : shortRead(err)), () => {});
      const onClose = () => void writing.then(() => finish(o.signal?.aborted ? abortError(o.signal) : shortRead()), () => {});
      const shortRead = (cause?: Error) => {
        const e = statusError('ZCOPY_ERR_SHORT_READ', `the client closed after ${n}${length !== undefined ? ` of ${length}` : ''} body bytes`, 400, n);
        if (cause) (e as { cause?: unknown }).cause = cause;
        return e;
      };
      r.on('data', onData);
      r.once('end', onEnd);
      r.on('error', onError);
      r.once('close', onClose);
      r.resume();
    });
    if (length !== undefined && total < length) {
      throw statusError('ZCOPY_ERR_SHORT_READ', `the client closed after ${total} of ${length} body bytes`, 400, total);
    }
    return total;
  } catch (err) {
    countError();
    throw withBytes(err as Error, total);
  } finally {
    o.signal?.removeEventListener('abort', onAbort);
    if (opened) await opened.close();
  }
}
