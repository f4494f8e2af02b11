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
 *  - streamed: HTTP/2 (single range and multipart), a response whose
 *    write/end a middleware replaced, and injected requests: 64 KiB reads of
 *    the fd written through the response, with backpressure. HTTP/2 does not
 *    use `respondWithFD`: Node 20 crashes (SIGSEGV in
 *    `ReportWritesToJSStreamListener::OnStreamAfterReqFinished`) when a
 *    client cancels a stream while its fd pipe is mid-body.
 *
 * Every way watches the response: a client that goes away, a reset stream
 * or a destroyed socket settles the send at once (never a wait for a
 * 'drain' that cannot come), and a client that stops reading for
 * `sendTimeout` ms gets its connection (HTTP/2: its stream) destroyed.
 *
 * A file that ends early (truncated while being sent) destroys the
 * connection: a short body under a Content-Length would desync keep-alive.
 *
 * @module
 */
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import type { ServerResponse } from 'node:http';
import http2, { type Http2ServerResponse } from 'node:http2';
import net from 'node:net';
import { constants as osConstants } from 'node:os';
import { BufferPool, FileRegion, ZcopyError, type Mechanism } from '../index.js';
import { native } from '../native.js';
import type { AnyRequest, AnyResponse, TransferPath } from './response.js';

/**
 * Bodies shorter than this are sent with one buffered write of head + body
 * instead of a head write followed by a zero-copy transfer. Measured with
 * bench/http/threshold.mjs (docs/benchmarks.md): over a Unix socket a
 * transfer starts to win between 128 KiB (0.88x the buffered req/s) and
 * 256 KiB (1.43x); over loopback TCP the buffered write still won at 1 MiB.
 * 256 KiB also bounds the memory one small response holds.
 */
export const DEFAULT_SENDFILE_THRESHOLD = 256 * 1024;

/** Largest read made on the event loop (`preadv2(RWF_NOWAIT)`): a transfer's default per-turn chunk. */
const LOOP_READ_MAX = 2 * 1024 * 1024;

/**
 * Default `sendTimeout`: a response whose client accepts no byte for this
 * long is destroyed (nginx's `send_timeout` default).
 */
export const DEFAULT_SEND_TIMEOUT = 60_000;

/**
 * Responses of one HTTP/1.1 connection that may wait for their turn
 * (pipelined behind the one being written) before zcopy stops reading
 * requests from that connection; reading resumes when half of them are done.
 */
export const PIPELINE_LIMIT = 16;

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
  /** How the file bytes went out (the last part's path for a multipart body). */
  transfer?: TransferPath;
  error?: Error;
  /** @internal A pooled buffer the response wrote, released once it finished. */
  pooled?: Buffer;
}

/**
 * The file a body is read from; `close` (idempotent) is called once no byte
 * of it is needed any more. `body` / `offerBody` come from the open-file
 * cache's body cache (open-file-cache.ts): the whole file as of the fstat
 * the headers came from, and where to offer a whole body just read.
 */
export interface BodyFile {
  fd: number;
  close?(): void;
  body?: Buffer;
  offerBody?(buf: Buffer, readStartedAt: number): void;
  claimBody?(): boolean;
}

/** How to send. */
export interface SendOptions {
  threshold: number;
  mechanism: Mechanism;
  /** Inactivity timeout in ms; 0 disables. */
  sendTimeout: number;
}

const PORTABLE_CHUNK = 64 * 1024;

/**
 * Chunks of the streamed path on HTTP/2 (whose compat `write` calls back
 * once nghttp2 is done with the bytes). A response wrapped by a middleware
 * gets fresh buffers instead: the wrapper may keep a chunk (to compress or
 * collect it) past any callback.
 */
const chunks = new BufferPool({ size: PORTABLE_CHUNK, max: 64 });

/** The error for a file that ended before the bytes its headers promised. */
function truncatedError(sent: number): Error {
  const err = new Error(`file ended early (truncated while being served) after ${sent} body bytes`) as Error & { code: string; bytesTransferred: number };
  err.code = 'ZCOPY_ERR_FILE_TRUNCATED';
  err.bytesTransferred = sent;
  return err;
}

function closedError(sent: number, what = 'response closed before the body was sent'): ZcopyError {
  return new ZcopyError('ZCOPY_ERR_SOCKET_CLOSED', `${what} (after ${sent} body bytes)`, { bytesTransferred: sent });
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

/**
 * Buffers of buffered bodies that the body cache does not keep, by size
 * class (powers of two, 8 KiB to 256 KiB), reused once the response
 * finished: a fresh buffer per response costs a page fault per 4 KiB page
 * touched (measured: most of the CPU of a 64 KiB response on a VM, where a
 * fault is a hypervisor exit).
 */
const POOL_MIN = 8 * 1024;
const POOL_MAX = 256 * 1024;
const bodyPools = new Map<number, BufferPool>();

function pooledBuffer(n: number): Buffer | undefined {
  // Below 4 KiB allocUnsafe slices Node's own shared pool.
  if (n < 4096 || n > POOL_MAX) return undefined;
  let size = POOL_MIN;
  while (size < n) size *= 2;
  let pool = bodyPools.get(size);
  if (pool === undefined) {
    pool = new BufferPool({ size, max: Math.max(4, Math.floor((2 * 1024 * 1024) / size)) });
    bodyPools.set(size, pool);
  }
  return pool.acquire();
}

export function releasePooled(buf: Buffer): void {
  bodyPools.get(buf.length)?.release(buf);
}

/** @internal Buffers of buffered bodies created and reused, over all size classes (tests). */
export function bodyPoolStats(): { created: number; reused: number; outstanding: number } {
  const t = { created: 0, reused: 0, outstanding: 0 };
  for (const p of bodyPools.values()) {
    const s = p.stats();
    t.created += s.created;
    t.reused += s.reused;
    t.outstanding += s.outstanding;
  }
  return t;
}

const ENOSYS = osConstants.errno.ENOSYS;
/** preadv2(RWF_NOWAIT) exists (latched off on ENOSYS). */
let nowaitReads = typeof native?.preadNowait === 'function';

/**
 * @internal How buffered bodies were read: on the loop from the page cache
 * (`nowait`, no thread hop), on the threadpool (`pool`: the pages were
 * not cached, or no addon), or not at all (`memory`: the body cache had
 * them). Tests and the bench read it.
 */
export const bufferedReads = { nowait: 0, pool: 0, memory: 0 };

/**
 * Reads what the page cache holds of `length` bytes at `position` with
 * preadv2(RWF_NOWAIT) on the loop: no threadpool round trip. Returns the
 * bytes read (short when a page is not cached, the read would wait for the
 * disk, or there is no addon); throws truncated at end of file.
 */
function readNowait(fd: number, buf: Buffer, offset: number, length: number, position: number, sentSoFar: number): number {
  let done = 0;
  if (!nowaitReads) return 0;
  while (done < length) {
    const r = native!.preadNowait!(fd, buf, offset + done, length - done, position + done);
    if (r > 0) {
      done += r;
      continue;
    }
    if (r === 0) throw truncatedError(sentSoFar + done);
    if (r === -ENOSYS) nowaitReads = false;
    break;
  }
  return done;
}

/**
 * Reads exactly `length` bytes like {@link readExact}, on the loop from the
 * page cache when it holds them ({@link readNowait}: then synchronously,
 * returning undefined), the rest on the threadpool (EAGAIN: it would wait
 * for the disk, or any error, which the pool read then reports).
 */
function readBody(fd: number, buf: Buffer, offset: number, length: number, position: number, sentSoFar: number): Promise<void> | undefined {
  const done = readNowait(fd, buf, offset, length, position, sentSoFar);
  if (done === length) {
    bufferedReads.nowait++;
    return undefined;
  }
  bufferedReads.pool++;
  return readExact(fd, buf, offset + done, length - done, position + done, sentSoFar + done);
}

/**
 * TCP_CORK (nginx's tcp_nopush) on a plain TCP socket's fd: the head written
 * before a zero-copy body then leaves in the same segment as its first
 * bytes instead of a packet of its own. Returns the fd to uncork, or -1
 * (no addon, not TCP: a Unix socket refuses the option).
 */
function cork(socket: net.Socket): number {
  const setCork = native?.setCork;
  if (setCork === undefined) return -1;
  const fd = (socket as net.Socket & { _handle?: { fd?: number } | null })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) return -1;
  return setCork(fd, 1) === 0 ? fd : -1;
}

function uncork(fd: number): void {
  if (fd >= 0) native!.setCork!(fd, 0);
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

/**
 * True when the body of a response on this connection would be copied by
 * the CPU whatever zcopy did: TLS (every byte is encrypted), no addon (the
 * portable path), or loopback TCP under `auto` (which picks the native copy
 * loop there: no NIC gathers from pages, see internal/mechanism.ts). There,
 * a body held in the body cache is the cheapest copy there is: one write
 * from memory, against a read of the file and a write. A mechanism asked
 * for explicitly is honoured.
 */
export function copiedAnyway(res: AnyResponse, mechanism: Mechanism): boolean {
  if (mechanism !== 'auto') return false;
  const s = (res as ServerResponse).socket as (net.Socket & { encrypted?: boolean }) | null | undefined;
  if (s === null || s === undefined) return false;
  if (s.encrypted === true || native === null) return true;
  const a = s.remoteAddress;
  return a !== undefined && (a.startsWith('127.') || a === '::1' || a.startsWith('::ffff:127.'));
}

/** True once nothing more can be written to `res` (closed, destroyed, reset). */
function isGone(res: AnyResponse): boolean {
  if (isHttp2(res)) return res.stream.destroyed || res.stream.closed;
  const r = res as ServerResponse;
  return r.destroyed || (r.socket !== null && r.socket.destroyed);
}

/** Ends a response that cannot be completed: the connection (HTTP/2: the stream) goes. */
function abortResponse(res: AnyResponse): void {
  if (isHttp2(res)) {
    if (!res.stream.destroyed) res.stream.close(http2.constants.NGHTTP2_CANCEL);
    return;
  }
  res.destroy();
}

interface ConnQueue {
  waiting: number;
  paused: boolean;
  onResume: () => void;
  /** Settles every waiting response when the connection closes: one listener per connection. */
  onClose: Set<() => void>;
}

const queues = new WeakMap<net.Socket, ConnQueue>();

/**
 * Resolves true once `res` is the response being written on its connection
 * (HTTP/1.1 pipelining: node:http dispatches every request it has parsed,
 * but a response only gets the socket, `res.socket` and the 'socket' event,
 * when the previous one finished), false if the connection closed first.
 * Returns true synchronously when it already is (the common case, HTTP/2,
 * injected requests).
 *
 * While more than {@link PIPELINE_LIMIT} responses of one connection wait,
 * the connection is not read: a client cannot queue thousands of requests
 * (nginx serves pipelined requests one at a time). File I/O waits for the
 * turn, so a queued request holds no fd and no body.
 */
export function responseTurn(req: AnyRequest, res: AnyResponse): true | Promise<boolean> {
  if (isHttp2(res)) return true;
  const r = res as ServerResponse;
  if (r.socket) return true;
  const conn = req.socket as net.Socket | null | undefined;
  // An injected request (light-my-request) has no kernel socket to wait for.
  if (!(conn instanceof net.Socket)) return true;
  if (conn.destroyed || r.destroyed) return Promise.resolve(false);
  let q = queues.get(conn);
  if (q === undefined) {
    const nq: ConnQueue = {
      waiting: 0,
      paused: false,
      // node:http resumes the socket when a response finishes; while too
      // many responses wait, pause it again (the same tick: no read happens).
      onResume: () => {
        if (nq.paused) conn.pause();
      },
      onClose: new Set(),
    };
    conn.once('close', () => {
      for (const f of [...nq.onClose]) f();
    });
    q = nq;
    queues.set(conn, q);
  }
  const queue = q;
  queue.waiting++;
  if (queue.waiting > PIPELINE_LIMIT && !queue.paused) {
    queue.paused = true;
    conn.on('resume', queue.onResume);
    conn.pause();
  }
  return new Promise((resolve) => {
    let settled = false;
    const settle = (ok: boolean): void => {
      if (settled) return;
      settled = true;
      r.removeListener('socket', onSocket);
      r.removeListener('close', onClose);
      queue.onClose.delete(onClose);
      queue.waiting--;
      if (queue.paused && queue.waiting <= PIPELINE_LIMIT / 2) {
        queue.paused = false;
        conn.removeListener('resume', queue.onResume);
        if (!conn.destroyed) conn.resume();
      }
      resolve(ok);
    };
    const onSocket = (): void => settle(true);
    const onClose = (): void => settle(false);
    r.once('socket', onSocket);
    r.once('close', onClose);
    queue.onClose.add(onClose);
  });
}

/**
 * What a body send listens to, attached once per response: 'drain' (a
 * middleware may route it elsewhere, as compression routes it to its
 * zlib stream, so it is never re-added per wait), and everything that
 * ends the response: its 'close', 'finish' and 'error', and the
 * transport's 'close' (the socket, or the HTTP/2 stream).
 */
class Outlet {
  readonly #res: AnyResponse;
  readonly #transport: EventEmitter | null;
  #gone = false;
  #finished = false;
  #waiter: { resolve: () => void; reject: (e: Error) => void } | undefined;
  #onEnd: Array<() => void> = [];
  /** Body bytes handed to the response (the streamed and buffered paths). */
  written = 0;
  /** Set by the send timer: the reason the response was destroyed. */
  reason: Error | undefined;

  constructor(res: AnyResponse) {
    this.#res = res;
    this.#transport = isHttp2(res) ? res.stream : (res as ServerResponse).socket;
    res.on('drain', this.#onDrain);
    res.on('finish', this.#onFinish);
    res.on('close', this.#onGone);
    res.on('error', this.#onGone);
    this.#transport?.on('close', this.#onGone);
    if (isGone(res)) this.#gone = true;
  }

  get gone(): boolean {
    if (!this.#gone && isGone(this.#res)) this.#gone = true;
    return this.#gone;
  }

  #onDrain = (): void => {
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.resolve();
  };

  #onFinish = (): void => {
    this.#finished = true;
    // Unended, a finish means the stream was cut (HTTP/2 emits it on RST).
    this.#onGone();
  };

  #onGone = (): void => {
    this.#gone = true;
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.reject(this.reason ?? closedError(this.written));
    const cbs = this.#onEnd;
    this.#onEnd = [];
    for (const cb of cbs) cb();
  };

  /** Resolves at the next 'drain'; rejects at once if the response is gone, or when it goes. */
  writable(): Promise<void> {
    if (this.gone) return Promise.reject(this.reason ?? closedError(this.written));
    return new Promise((resolve, reject) => {
      this.#waiter = { resolve, reject };
    });
  }

  /**
   * After `end()`: resolves with nothing once the response finished (its
   * last byte handed to the kernel, HTTP/2: the stream closed cleanly), or
   * with the reason it did not.
   */
  settled(): Promise<Error | undefined> {
    const res = this.#res;
    const verdict = (): Error | undefined => {
      if (this.reason) return this.reason;
      if (isHttp2(res)) {
        const code = res.stream.rstCode;
        return code !== undefined && code !== 0 ? new ZcopyError('ZCOPY_ERR_SOCKET_CLOSED', `HTTP/2 stream reset (code ${code})`) : undefined;
      }
      return (res as ServerResponse).writableFinished || this.#finished ? undefined : closedError(this.written, 'connection closed before the response finished');
    };
    const done = (): boolean => (isHttp2(res) ? res.stream.closed || res.stream.destroyed : (res as ServerResponse).writableFinished || this.#finished || this.gone);
    if (done()) return Promise.resolve(verdict());
    return new Promise((resolve) => {
      const check = (): void => {
        if (done()) resolve(verdict());
        else this.#onEnd.push(check);
      };
      this.#onEnd.push(check);
    });
  }

  detach(): void {
    const res = this.#res;
    res.removeListener('drain', this.#onDrain);
    res.removeListener('finish', this.#onFinish);
    res.removeListener('close', this.#onGone);
    res.removeListener('error', this.#onGone);
    this.#transport?.removeListener('close', this.#onGone);
  }
}

/**
 * The inactivity timeout: fires when the client accepted no byte for `ms`.
 * Progress is read, not pushed: the flushed byte count of the socket (or
 * of the HTTP/2 stream), plus the bytes of the core's transfer under way.
 * A check runs every quarter of `ms`, so it fires between `ms` and 1.25x.
 */
class SendTimer {
  readonly #ms: number;
  readonly #step: number;
  readonly #res: AnyResponse;
  readonly #onFire: (err: Error) => void;
  #timer: NodeJS.Timeout | undefined;
  #last = Number.NaN;
  #lastAt = performance.now();
  /** Bytes moved by the core's transfer under way and done, live (sendfile and the native copy bypass the socket's counters). */
  direct: () => number = () => 0;
  written: () => number = () => 0;

  constructor(res: AnyResponse, ms: number, onFire: (err: Error) => void) {
    this.#res = res;
    this.#ms = ms;
    this.#step = Math.max(10, Math.floor(ms / 4));
    this.#onFire = onFire;
    this.#last = this.#progress();
    this.#arm(this.#step);
  }

  #arm(ms: number): void {
    this.#timer = setTimeout(this.#check, ms);
    this.#timer.unref();
  }

  #progress(): number {
    const res = this.#res;
    let flushed: number;
    if (isHttp2(res)) {
      flushed = this.written() - (res.stream.bufferSize ?? 0);
    } else {
      const s = (res as ServerResponse).socket as (net.Socket & { _handle?: { writeQueueSize?: number } | null }) | null;
      flushed = s ? s.bytesWritten - s.writableLength - (s._handle?.writeQueueSize ?? 0) : 0;
    }
    return flushed + this.direct();
  }

  #check = (): void => {
    this.#timer = undefined;
    const now = performance.now();
    const p = this.#progress();
    if (p !== this.#last) {
      this.#last = p;
      this.#lastAt = now;
    } else if (now - this.#lastAt >= this.#ms) {
      this.#onFire(new ZcopyError('ZCOPY_ERR_TIMEOUT', `send timeout: the client accepted no byte for ${this.#ms} ms`));
      return;
    }
    this.#arm(Math.max(1, Math.min(this.#step, this.#lastAt + this.#ms - now)));
  };

  stop(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}

/**
 * Sends `plan` as the body of `res` (status and Content-Length set here; the
 * other headers already are). Never rejects: a failure after the head went
 * out destroys the connection (HTTP/2: resets the stream) and is reported in
 * `error`. Resolves once the response finished or failed; `file.close()` is
 * called as soon as no more of the file is needed (before the last bytes
 * are flushed).
 */
export async function sendBody(req: AnyRequest, res: AnyResponse, file: BodyFile, plan: BodyPlan, o: SendOptions): Promise<BodyOutcome> {
  res.statusCode = plan.status;
  res.setHeader('Content-Length', plan.contentLength);
  const turn = responseTurn(req, res);
  if (turn !== true && !(await turn)) {
    file.close?.();
    abortResponse(res);
    return { bytes: 0, bytesZeroCopy: 0, error: closedError(0, 'connection closed before the response started') };
  }
  const small = req.method === 'HEAD' || plan.contentLength === 0 || plan.contentLength < o.threshold;
  if (small && !isHttp2(res) && socketWritable(res)) return sendSmall(req, res as ServerResponse, file, plan, o);
  const out = new Outlet(res);
  // Only a zero-copy transfer takes a signal: an AbortController per
  // buffered response would be a cost on the small-body fast path.
  let abort: AbortController | undefined;
  const timer =
    o.sendTimeout > 0
      ? new SendTimer(res, o.sendTimeout, (err) => {
          out.reason = err;
          abort?.abort(err);
          abortResponse(res);
        })
      : undefined;
  if (timer) timer.written = () => out.written;
  let result: BodyOutcome;
  try {
    const r = res as ServerResponse;
    if (req.method === 'HEAD' || plan.contentLength === 0) {
      r.end();
      result = { bytes: 0, bytesZeroCopy: 0 };
    } else if (plan.contentLength < o.threshold) {
      result = await sendBuffered(r, file, plan, out);
    } else if (isHttp2(res) || !socketWritable(res)) {
      result = await sendStream(res, file.fd, plan, out);
    } else {
      abort = new AbortController();
      if (out.reason) abort.abort(out.reason);
      result = await sendZeroCopy(r, file.fd, plan, o, out, abort.signal, timer);
    }
  } catch (err) {
    // Only reached before any body byte left (buffered read failed) or for a
    // failure of the response itself: the connection cannot be trusted.
    abortResponse(res);
    result = { bytes: 0, bytesZeroCopy: 0, error: err as Error };
  }
  file.close?.();
  try {
    if (!result.error) {
      const err = await out.settled();
      if (err) result.error = err;
    }
  } finally {
    timer?.stop();
    out.detach();
  }
  // Handed to the kernel in full: the buffer can serve another response.
  // After a failure a write may still hold it: it is left to the GC.
  if (result.pooled !== undefined) {
    if (!result.error) releasePooled(result.pooled);
    result.pooled = undefined;
  }
  // The timeout is the reason, whatever error it caused downstream.
  if (out.reason) result.error = out.reason;
  return result;
}

/** A buffered body: the bytes to end() the response with, and the pooled buffer under them (released once it finished). */
export interface BufferedBody {
  buf: Buffer;
  pooled?: Buffer;
}

/**
 * The bytes of a buffered body: from the body cache when it has the file,
 * else read. Synchronous (no promise) when nothing waits for the disk.
 */
export function bufferedBody(file: BodyFile, plan: BodyPlan): BufferedBody | Promise<BufferedBody> {
  const n = plan.contentLength;
  const only = plan.parts.length === 1 && plan.parts[0]!.head === undefined && plan.tail === undefined ? plan.parts[0]! : undefined;
  const cached = file.body;
  if (cached !== undefined) {
    // The whole file as of the fstat these headers came from.
    bufferedReads.memory++;
    if (only !== undefined) return { buf: only.start === 0 && only.length === cached.length ? cached : cached.subarray(only.start, only.start + only.length) };
    const buf = Buffer.allocUnsafe(n);
    let o = 0;
    for (const part of plan.parts) {
      if (part.head) o += part.head.copy(buf, o);
      o += cached.copy(buf, o, part.start, part.start + part.length);
    }
    if (plan.tail) plan.tail.copy(buf, o);
    return { buf };
  }
  if (only !== undefined && only.start === 0 && file.offerBody !== undefined) {
    // The whole file: read into a buffer of its own, which the body cache
    // may keep (allocUnsafeSlow: a slice of Node's shared pool would pin
    // the whole slab).
    const buf = Buffer.allocUnsafeSlow(n);
    const startedAt = Date.now();
    const offer = file.offerBody;
    // A body above the threshold (read to be cached where it is copied
    // anyway) is read on the threadpool when larger than a transfer's
    // per-turn chunk: no longer memcpy on the loop than a transfer makes.
    let pending: Promise<void> | undefined;
    if (n > LOOP_READ_MAX) {
      bufferedReads.pool++;
      pending = readExact(file.fd, buf, 0, n, 0, 0);
    } else pending = readBody(file.fd, buf, 0, n, 0, 0);
    if (pending === undefined) {
      offer(buf, startedAt);
      return { buf };
    }
    return pending.then(() => {
      offer(buf, startedAt);
      return { buf };
    });
  }
  const pooled = pooledBuffer(n);
  const buf = pooled === undefined ? Buffer.allocUnsafe(n) : pooled.subarray(0, n);
  try {
    let o = 0;
    for (let i = 0; i < plan.parts.length; i++) {
      const part = plan.parts[i]!;
      if (part.head) o += part.head.copy(buf, o);
      const pending = readBody(file.fd, buf, o, part.length, part.start, 0);
      o += part.length;
      if (pending !== undefined) return pending.then(() => readRest(file.fd, buf, plan, i + 1, o)).then(() => ({ buf, pooled }), (err: unknown) => {
        if (pooled) releasePooled(pooled);
        throw err;
      });
    }
    if (plan.tail) plan.tail.copy(buf, o);
  } catch (err) {
    if (pooled) releasePooled(pooled);
    throw err;
  }
  return { buf, pooled };
}

/** The parts from `from` on (and the tail), after a read that had to wait. */
async function readRest(fd: number, buf: Buffer, plan: BodyPlan, from: number, o: number): Promise<void> {
  for (let i = from; i < plan.parts.length; i++) {
    const part = plan.parts[i]!;
    if (part.head) o += part.head.copy(buf, o);
    await readBody(fd, buf, o, part.length, part.start, 0);
    o += part.length;
  }
  if (plan.tail) plan.tail.copy(buf, o);
}

async function sendBuffered(res: ServerResponse, file: BodyFile, plan: BodyPlan, out: Outlet): Promise<BodyOutcome> {
  const got = await bufferedBody(file, plan);
  // This path serves wrapped responses (middleware in front of write/end)
  // and HTTP/2: the chunk reaches code that may keep or change it. It gets
  // bytes of its own, never a pooled buffer (reused for the next response
  // once this one finished) nor the body cache's (shared by every client).
  const buf = Buffer.from(got.buf);
  if (got.pooled) releasePooled(got.pooled);
  if (out.gone) throw out.reason ?? closedError(0);
  out.written += buf.length;
  res.end(buf);
  return { bytes: buf.length, bytesZeroCopy: 0, transfer: 'buffered' };
}

/**
 * The small-body fast path of a plain node:http response (the one that
 * owns its socket, write/end not wrapped): HEAD, an empty body, or a body
 * below the threshold, ended in one write of head + body. No Outlet and no
 * send timer when the write went to the kernel at once (the common case):
 * the response is finished when end() returns. Otherwise it waits for
 * 'finish' or 'close', with the send timer armed.
 */
async function sendSmall(req: AnyRequest, res: ServerResponse, file: BodyFile, plan: BodyPlan, o: SendOptions, head?: Array<string | number>): Promise<BodyOutcome> {
  let got: BufferedBody | undefined;
  if (req.method !== 'HEAD' && plan.contentLength > 0) {
    try {
      const g = bufferedBody(file, plan);
      got = 'buf' in g ? g : await g;
    } catch (err) {
      file.close?.();
      res.destroy();
      return { bytes: 0, bytesZeroCopy: 0, error: err as Error };
    }
  }
  file.close?.();
  if (isGone(res)) {
    if (got?.pooled) releasePooled(got.pooled);
    res.destroy();
    return { bytes: 0, bytesZeroCopy: 0, error: closedError(0) };
  }
  const bytes = got === undefined ? 0 : got.buf.length;
  if (head !== undefined) res.writeHead(plan.status, head);
  res.end(got?.buf);
  const result: BodyOutcome = got === undefined ? { bytes, bytesZeroCopy: 0 } : { bytes, bytesZeroCopy: 0, transfer: 'buffered' };
  // writableFinished: ended, and every byte handed to the kernel.
  if (!res.writableFinished) {
    const err = await whenFinished(res, o.sendTimeout, bytes);
    if (err) {
      // A write may still hold the pooled buffer: left to the GC.
      result.error = err;
      return result;
    }
  }
  if (got?.pooled) releasePooled(got.pooled);
  return result;
}

/**
 * True when a response can take {@link sendWholeSmall}: a plain node:http
 * response (write/end not wrapped) that owns its socket (not waiting behind
 * a pipelined one) and has sent nothing yet.
 */
export function canSendSmall(res: AnyResponse): res is ServerResponse {
  const r = res as ServerResponse;
  return r.socket !== null && r.socket !== undefined && !r.headersSent && !isHttp2(res) && socketWritable(res);
}

/**
 * The fast path of a whole small file (or HEAD): status and every header
 * given at once (`head`: name, value, name, value...; Content-Length
 * included) to one writeHead, the body from the body cache or read on the
 * loop, one write. Only for a response {@link canSendSmall} accepts.
 */
export function sendWholeSmall(req: AnyRequest, res: ServerResponse, file: BodyFile, size: number, head: Array<string | number>, o: SendOptions): Promise<BodyOutcome> {
  return sendSmall(req, res, file, { status: 200, contentLength: size, parts: [{ start: 0, length: size }] }, o, head);
}

/** Resolves once an ended response finished (undefined) or its connection went first (the error), the send timer armed meanwhile. */
function whenFinished(res: ServerResponse, ms: number, bytes: number): Promise<Error | undefined> {
  return new Promise((resolve) => {
    let reason: Error | undefined;
    const timer =
      ms > 0
        ? new SendTimer(res, ms, (err) => {
            reason = err;
            res.destroy();
          })
        : undefined;
    const done = (): void => {
      res.removeListener('finish', onFinish);
      res.removeListener('close', onClose);
      res.removeListener('error', onError);
      timer?.stop();
    };
    const onFinish = (): void => {
      done();
      resolve(reason);
    };
    const onClose = (): void => {
      done();
      resolve(reason ?? (res.writableFinished ? undefined : closedError(bytes, 'connection closed before the response finished')));
    };
    // 'close' follows an error of the response.
    const onError = (): void => {};
    res.on('finish', onFinish);
    res.on('close', onClose);
    res.on('error', onError);
  });
}

/** Parts at least this long go zero-copy inside a large multipart body; shorter ones are copied with their part header. */
const MIN_ZERO_COPY_PART = 16 * 1024;

async function sendZeroCopy(res: ServerResponse, fd: number, plan: BodyPlan, o: SendOptions, out: Outlet, signal: AbortSignal, timer: SendTimer | undefined): Promise<BodyOutcome> {
  const socket = res.socket;
  if (!socket) throw closedError(0, 'connection closed before the response started');
  // An injected request (light-my-request, tests) has no kernel socket.
  if (!(socket instanceof net.Socket)) return sendStream(res, fd, plan, out);
  let bytes = 0;
  let zc = 0;
  let transfer: TransferPath | undefined;
  let region: FileRegion | undefined;
  if (timer) timer.direct = () => bytes + (region?.transferred ?? 0);
  // Corked until the file bytes are handed over: the head does not leave
  // as a packet of its own (only delayed, never reordered).
  let corked = -1;
  try {
    for (let i = 0; i < plan.parts.length; i++) {
      const part = plan.parts[i]!;
      if (out.gone) throw out.reason ?? closedError(bytes);
      if (part.head && part.length < Math.min(MIN_ZERO_COPY_PART, o.threshold)) {
        const b = Buffer.allocUnsafe(part.head.length + part.length);
        part.head.copy(b, 0);
        await readExact(fd, b, part.head.length, part.length, part.start, bytes);
        res.write(b);
        bytes += b.length;
        transfer ??= 'buffered';
        continue;
      }
      if (part.head) {
        res.write(part.head);
        bytes += part.head.length;
      } else if (!res.headersSent) {
        if (part.length > 0) corked = cork(socket);
        res.flushHeaders();
      }
      if (part.length === 0) continue;
      region = new FileRegion(fd, part.start, part.length);
      try {
        await region.transferTo(socket, { mechanism: o.mechanism, signal });
      } finally {
        bytes += region.transferred;
        zc += region.bytesZeroCopy;
        const p = region.path;
        if (p !== undefined) transfer = p === 'nativeCopy' ? 'copy' : p === 'sendfile' || p === 'splice' ? p : 'portable';
        region.release();
        region = undefined;
      }
    }
    if (plan.tail) bytes += plan.tail.length;
    res.end(plan.tail);
    uncork(corked);
    corked = -1;
    return { bytes, bytesZeroCopy: zc, transfer };
  } catch (err) {
    // Truncated file, reset peer, destroyed socket: the byte count promised
    // in Content-Length cannot be met, so the connection must go.
    if (!socket.destroyed) uncork(corked);
    res.destroy();
    return { bytes, bytesZeroCopy: zc, transfer, error: out.reason ?? (err as Error) };
  }
}

/**
 * The streamed path: reads of the fd written through the response, waiting
 * for 'drain' when it says so, and checking before every read and write that
 * the response still exists, so an abort settles at once and the caller
 * closes the fd.
 */
async function sendStream(res: AnyResponse, fd: number, plan: BodyPlan, out: Outlet): Promise<BodyOutcome> {
  const w = res as ServerResponse;
  // Pooled buffers only where the write callback means "done with the bytes".
  const pooled = isHttp2(res) && socketWritable(res);
  let bytes = 0;
  const put = async (b: Buffer, pooledBuf?: Buffer): Promise<void> => {
    if (out.gone) {
      if (pooledBuf) chunks.release(pooledBuf);
      throw out.reason ?? closedError(bytes);
    }
    out.written += b.length;
    const ok = pooledBuf
      ? w.write(b, (err) => {
          // A failed write may still be referenced below: leave it to the GC.
          if (!err) chunks.release(pooledBuf);
        })
      : w.write(b);
    bytes += b.length;
    if (!ok) await out.writable();
  };
  try {
    for (const part of plan.parts) {
      if (part.head) await put(part.head);
      let done = 0;
      while (done < part.length) {
        if (out.gone) throw out.reason ?? closedError(bytes);
        const n = Math.min(PORTABLE_CHUNK, part.length - done);
        const b = pooled ? chunks.acquire() : Buffer.allocUnsafe(n);
        try {
          await readExact(fd, b, 0, n, part.start + done, bytes);
        } catch (err) {
          if (pooled) chunks.release(b);
          throw err;
        }
        done += n;
        await put(pooled ? b.subarray(0, n) : b, pooled ? b : undefined);
      }
    }
    if (out.gone) throw out.reason ?? closedError(bytes);
    if (plan.tail) {
      bytes += plan.tail.length;
      out.written += plan.tail.length;
    }
    w.end(plan.tail);
    return { bytes, bytesZeroCopy: 0, transfer: 'portable' };
  } catch (err) {
    abortResponse(res);
    return { bytes, bytesZeroCopy: 0, transfer: bytes > 0 ? 'portable' : undefined, error: out.reason ?? (err as Error) };
  }
}
