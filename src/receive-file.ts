/**
 * receiveFile: network to disk without a user-space copy. What a socket
 * receives goes socket -> pipe -> file with splice(2) (the socket's pages
 * are moved into the pipe by reference; one in-kernel copy into the page
 * cache), never through JavaScript.
 *
 * How a socket source runs (see docs/receive.md):
 * 1. Node's reading of the socket is really stopped (`_handle.readStop()`,
 *    and `_read` shadowed so `resume()` or a 'data' listener cannot restart
 *    it), as splice() does.
 * 2. Bytes Node had already read (`readableLength`) are written to the file
 *    first, up to `length`; any excess goes back into Node's buffer.
 * 3. The kernel moves the rest on the threadpool: a job splices socket ->
 *    pipe (non-blocking) -> file (may wait for the disk, on the worker
 *    thread) until the socket has nothing (EAGAIN), EOF, `length`, or a
 *    budget; EAGAIN waits for readability with a uv_poll on a private dup
 *    (on TCP with SO_RCVLOWAT raised to min(1 MiB, the rest) for at most
 *    50 ms, so that a wake-up finds more to move; restored afterwards).
 *    Never more than the remaining count is asked of the socket, so bytes
 *    past `length` stay in the socket. A TCP urgent byte is kept in the
 *    stream (SO_OOBINLINE) and the job recv()s past its mark, where splice
 *    stops with EAGAIN while the socket stays readable.
 * 4. Node's reading restarts where it was (or EOF is pushed, as if Node had
 *    read it), so the socket goes on: the next HTTP request parses.
 *
 * @module
 */
import fs from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import { C, native } from './native.js';
import { FdWatch, READABLE } from './internal/fd-watch.js';
import { pipePool, type Pipe } from './internal/pipe-pool.js';
import { Canceller } from './internal/cancel.js';
import { validateFile, validateObject, validateOneOf, validateSignal, validateFd, type FileLike } from './internal/validate.js';
import { ZcopyError, abortError, invalidArgType, systemError, validateOffset } from './errors.js';
import { countBytes, countError, countFallback, countThreadpoolChunk, countTransfer, countWait, type Path } from './stats.js';
import { whenConnected } from './internal/when-connected.js';
import { takeBuffered } from './internal/node-buffered.js';

/**
 * How {@link receiveFile} moves bytes.
 * - `splice`: socket -> pipe -> file in the kernel (the default on Linux
 *   with the addon for plaintext sockets).
 * - `copy`: the portable path through Node (a reference, or to rule the
 *   kernel path out).
 * - `auto`: splice where it can, the portable path elsewhere.
 */
export type ReceiveMechanism = 'auto' | 'splice' | 'copy';

/** Options of {@link receiveFile}. */
export interface ReceiveFileOptions {
  /**
   * Where in the file the first byte goes. Default 0. A path given without
   * `offset` is created or truncated; with `offset` it is created if missing
   * and written in place.
   */
  offset?: number;
  /**
   * Stop after exactly this many bytes; the socket keeps what follows (the
   * next request on a keep-alive connection). Default: until EOF.
   */
  length?: number;
  /** Aborts the transfer: it rejects with an AbortError (carrying `bytesTransferred`) and the socket is destroyed. */
  signal?: AbortSignal;
  /** Default `'auto'`. */
  mechanism?: ReceiveMechanism;
}

const MECHANISMS = ['auto', 'splice', 'copy'] as const;
const E = os.constants.errno;
const EAGAIN = -E.EAGAIN;
/** Errors that say "this fd pair cannot splice", not "the transfer failed". */
const FALLBACK_ERRNO = new Set([-E.ENOSYS, -E.EINVAL, -E.EOPNOTSUPP, -E.EBADF, -E.EPERM]);
/** Bytes one threadpool job moves at most: bounds how long an abort waits for a job. */
const JOB_BUDGET = 8 * 1024 * 1024;
/**
 * SO_RCVLOWAT set on a TCP socket while the kernel path waits for it (never
 * more than the bytes still expected): its poll then reports readable only
 * once this much is queued (or FIN, an error, memory pressure), so each
 * threadpool job moves more and there are fewer wake-ups. The socket's own
 * value is restored before the transfer settles. See docs/receive.md.
 */
const RCV_LOWAT = 1024 * 1024;
/**
 * How long a wait keeps SO_RCVLOWAT above 1: then it drops to 1, so a peer
 * that slows to a trickle sees its bytes reach the file (and the socket's
 * timeout refreshed) within this, not after RCV_LOWAT bytes.
 */
const LOWAT_PATIENCE_MS = 50;
/** Portable path: pause the source while this much waits to be written. */
const PORTABLE_QUEUE = 1024 * 1024;
const PORTABLE_BUFFER = 256 * 1024;

/** rcvLowat(fd, bytes): SO_RCVLOWAT before the call, or -errno (-ENOPROTOOPT: not TCP); bytes < 0 only reads. */
type RcvLowat = (fd: number, bytes: number) => number;

type SpliceToFileAsync = (
  sockFd: number,
  pipeR: number,
  pipeW: number,
  pipeCap: number,
  fileFd: number,
  offset: number,
  max: number,
  cb: (moved: number, status: number, side: number, stuck: number) => void,
) => void | number;

interface JobResult {
  moved: number;
  status: number;
  side: number;
  stuck: number;
}

/** ENOSYS on splice is process-wide: latch it and stop trying. */
let spliceLatchedOff = false;

/**
 * Writes what arrives on `source` into `file` at `offset` until `length`
 * bytes arrived (then stops reading: the socket stays usable for what
 * follows) or EOF (when `length` is not given), and resolves with the
 * number of bytes written.
 *
 * On Linux with the addon, a plaintext socket's bytes go socket -> pipe ->
 * file with splice(2) on the threadpool: no copy through JavaScript, the
 * event loop free while the peer is slow or the disk is. Bytes Node already
 * read from the socket go to the file first. TLS sockets, non-socket
 * sources, `O_APPEND` or non-regular files, and everything without the addon
 * take a portable copy through Node with the same semantics. `stats()` says
 * which path the bytes took (`splice` or `portable`).
 *
 * Errors (each carries `bytesTransferred`, the bytes that reached the file):
 * - the peer closes before `length` bytes: `ZCOPY_ERR_SHORT_READ`
 *   (the EOF is delivered to the socket as if Node had read it);
 * - the file side fails (`ENOSPC`, `EFBIG`, `EDQUOT`, `EIO`): the system
 *   error; the socket is left open with reading stopped (its remaining
 *   input is unread: close it, e.g. answer with `Connection: close`);
 * - the socket fails (`ECONNRESET`) or is destroyed
 *   (`ZCOPY_ERR_SOCKET_CLOSED`), or `signal` aborts (`AbortError`): the
 *   socket is destroyed.
 *
 * @param source - a connected `net.Socket` (TCP, Unix or TLS) or a readable fd (socket, pipe, file)
 * @param file - a path (opened and closed here), an fd or a `FileHandle` (left open)
 *
 * @example
 * ```ts
 * import net from 'node:net';
 * import { receiveFile } from 'zcopy';
 *
 * net.createServer(async (socket) => {
 *   const n = await receiveFile(socket, '/srv/incoming.bin');
 *   socket.end(`got ${n} bytes\n`);
 * }).listen(9000, '127.0.0.1');
 * ```
 */
export function receiveFile(source: net.Socket | number, file: string | number | FileHandle, options?: ReceiveFileOptions): Promise<number> {
  if (typeof source === 'number') validateFd('source', source);
  else if (!(source instanceof net.Socket)) throw invalidArgType('source', 'an instance of net.Socket or a readable fd', source);
  const f = validateFile('file', file);
  const o = validateObject('options', options);
  const req: ReceiveRequest = {
    source,
    file: f,
    offset: validateOffset('options.offset', o.offset),
    length: validateOffset('options.length', o.length),
    signal: validateSignal('options.signal', o.signal),
    mechanism: validateOneOf('options.mechanism', o.mechanism, MECHANISMS) ?? 'auto',
  };
  const site: { stack?: string } = {};
  Error.captureStackTrace(site, receiveFile);
  // Stop Node's reading now, synchronously, so it buffers as little as
  // possible while the file opens (what it did buffer goes first anyway).
  if (typeof source !== 'number' && pathFor(source, req.mechanism).path === 'splice') {
    req.guard = stopReading(source);
  }
  return receiveInto(req).catch((err: unknown) => {
    if (err instanceof Error && site.stack && err.stack && !err.stack.includes('\n    at receiveFile ')) {
      err.stack = `${err.stack.split('\n')[0]}\n${site.stack.split('\n').slice(1).join('\n')}`;
    }
    throw err;
  });
}

/**
 * A validated request of the engine (receiveBody uses it too).
 * @internal
 */
export interface ReceiveRequest {
  source: net.Socket | number;
  file: FileLike;
  offset: number | undefined;
  length: number | undefined;
  signal: AbortSignal | undefined;
  mechanism: ReceiveMechanism;
  /** Node's reading, already stopped by the caller. */
  guard?: ReadGuard;
  /**
   * Called synchronously once the last byte reached the file, before Node's
   * reading restarts, with the bytes taken from the socket (its buffer and
   * the kernel). receiveBody tells the HTTP parser here.
   */
  beforeResume?(taken: number): void;
}

/** Stops Node reading a socket and keeps it stopped until restore(). */
export interface ReadGuard {
  /** 'restart': reading goes on as before; 'eof': Node is told EOF; 'stopped': stays stopped. */
  restore(how: 'restart' | 'eof' | 'stopped'): void;
}

interface StreamHandle {
  fd?: number;
  reading?: boolean;
  readStop?(): number;
  readStart?(): number;
}

function handleOf(s: net.Socket): StreamHandle | undefined {
  return (s as unknown as { _handle?: StreamHandle | null })._handle ?? undefined;
}

function fdOf(s: net.Socket): number {
  const fd = handleOf(s)?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : -1;
}

function isTls(s: net.Socket): boolean {
  return (s as { encrypted?: boolean }).encrypted === true;
}

/**
 * Stops Node's reading of `s` for real: the handle's readStop(), and `_read`
 * shadowed on the instance so that resume(), a 'data' listener or read()
 * cannot restart it behind us.
 * @internal
 */
export function stopReading(s: net.Socket): ReadGuard {
  const h = handleOf(s);
  const wasReading = h?.reading === true;
  // Unconditionally: node:http's parser reads a consumed handle without
  // the `reading` flag net.Socket keeps.
  if (h?.readStop) {
    h.reading = false;
    h.readStop();
  }
  // Whoever wants reading back while we hold the socket (Readable's _read;
  // node:http's 'resume' listener, which calls the handle's readStart
  // directly) is noted, not obeyed.
  let wanted = false;
  const own = Object.prototype.hasOwnProperty.call(s, '_read');
  const saved = (s as unknown as { _read: (n: number) => void })._read;
  Object.defineProperty(s, '_read', {
    configurable: true,
    writable: true,
    value() {
      wanted = true;
    },
  });
  const hOwn = h !== undefined && Object.prototype.hasOwnProperty.call(h, 'readStart');
  const hSaved = h?.readStart;
  if (h && hSaved) {
    Object.defineProperty(h, 'readStart', {
      configurable: true,
      writable: true,
      value() {
        wanted = true;
        return 0;
      },
    });
  }
  let done = false;
  return {
    restore(how) {
      if (done) return;
      done = true;
      if (own) (s as unknown as { _read: unknown })._read = saved;
      else delete (s as unknown as { _read?: unknown })._read;
      if (h && hSaved) {
        if (hOwn) h.readStart = hSaved;
        else delete h.readStart;
      }
      if (s.destroyed) return;
      if (how === 'eof') {
        s.push(null);
        return;
      }
      if (how !== 'restart') return;
      // Reading goes on if it was on, or was asked for meanwhile.
      const hh = handleOf(s);
      if ((wanted || wasReading) && hh?.readStart) {
        hh.reading = true;
        hh.readStart();
      }
    },
  };
}

/** The path a socket takes, and why when not splice. */
function pathFor(s: net.Socket, mechanism: ReceiveMechanism): { path: Path; reason?: string } {
  if (native === null) return { path: 'portable', reason: process.env.ZCOPY_FORCE_FALLBACK === '1' ? 'forced' : 'no-native' };
  if (mechanism === 'copy') return { path: 'portable' };
  if (isTls(s)) return { path: 'portable', reason: 'tls' };
  if (spliceLatchedOff) return { path: 'portable', reason: 'splice-ENOSYS' };
  if (s.connecting) return { path: 'splice' };
  if (fdOf(s) < 0) return { path: 'portable', reason: 'no-fd' };
  return { path: 'splice' };
}

interface Ctx {
  req: ReceiveRequest;
  fd: number;
  path: string | undefined;
  offset: number;
  limit: number;
  /** Bytes that reached the file. */
  total: number;
  /** Bytes taken from the socket (its buffer and the kernel); receiveBody's parser count. */
  taken: number;
  cancel: Canceller;
}

function account(ctx: Ctx, path: Path, n: number): void {
  ctx.total += n;
  countBytes(path, n);
}

function shortRead(ctx: Ctx): ZcopyError {
  return new ZcopyError('ZCOPY_ERR_SHORT_READ', `the peer closed after ${ctx.total} of ${ctx.limit} bytes`, { bytesTransferred: ctx.total });
}

function socketClosed(ctx: Ctx): ZcopyError {
  return new ZcopyError('ZCOPY_ERR_SOCKET_CLOSED', `socket closed after ${ctx.total} bytes of the receive`, { bytesTransferred: ctx.total });
}

/** A failure of the file side: the socket is intact, only its input is unread. */
class FileSideError {
  constructor(readonly error: Error) {}
}

function withBytes(err: unknown, n: number): unknown {
  if (err && typeof err === 'object' && (err as { bytesTransferred?: number }).bytesTransferred === undefined) {
    try {
      (err as { bytesTransferred?: number }).bytesTransferred = n;
    } catch {
      // Frozen errors keep their shape.
    }
  }
  return err;
}

/**
 * Opens the file for writing; a path without offset is truncated.
 * @internal
 */
export async function openTarget(file: FileLike, truncate: boolean): Promise<{ fd: number; path?: string; close(): Promise<void> }> {
  if (typeof file === 'number') return { fd: file, close: async () => {} };
  if (typeof file !== 'string') {
    if (file.fd < 0) throw systemError(-E.EBADF, 'write');
    return { fd: file.fd, close: async () => {} };
  }
  const flags = fs.constants.O_WRONLY | fs.constants.O_CREAT | (truncate ? fs.constants.O_TRUNC : 0);
  const h = await fs.promises.open(file, flags, 0o666);
  return { fd: h.fd, path: file, close: () => h.close() };
}

/**
 * The engine behind receiveFile and receiveBody. Arguments are validated.
 * @internal
 */
export async function receiveInto(req: ReceiveRequest): Promise<number> {
  const sock = typeof req.source === 'number' ? undefined : req.source;
  const ctx: Ctx = {
    req,
    fd: -1,
    path: undefined,
    offset: req.offset ?? 0,
    limit: req.length ?? Infinity,
    total: 0,
    taken: 0,
    cancel: new Canceller(),
  };
  let guard = req.guard;
  let opened: Awaited<ReturnType<typeof openTarget>> | undefined;
  const onAbort = () => ctx.cancel.cancel(abortError(req.signal));
  const onClose = () => ctx.cancel.cancel(socketClosed(ctx));
  req.signal?.addEventListener('abort', onAbort, { once: true });
  sock?.on('close', onClose);
  // After the end: how to give the socket back.
  let how: 'restart' | 'eof' | 'stopped' = 'restart';
  try {
    if (req.signal?.aborted) onAbort();
    if (sock?.destroyed) onClose();
    ctx.cancel.throwIfCancelled();
    opened = await ctx.cancel.race(openTarget(req.file, req.offset === undefined));
    ctx.fd = opened.fd;
    ctx.path = opened.path;
    const st = fstatOf(ctx);
    let fileReason: string | undefined;
    if (!st.isFile()) fileReason = 'not-regular-file';
    else if (native && (native.getFl(ctx.fd) & C.O_APPEND) !== 0) fileReason = 'append';
    if (ctx.limit === 0) return 0;

    if (sock) {
      if (sock.connecting) await ctx.cancel.race(whenConnected(sock));
      const choice = pathFor(sock, req.mechanism);
      const reason = choice.path === 'splice' ? fileReason : choice.reason;
      if (choice.path === 'portable' || reason !== undefined) {
        if (reason) countFallback(reason);
        countTransfer('portable');
        // The same bytes as the kernel path: an urgent byte inline. Not on
        // TLS (its record stream breaks either way), and not without the
        // addon (Node reads without SO_OOBINLINE: the kernel drops the byte).
        if (native && !isTls(sock) && fdOf(sock) >= 0) native.oobInline(fdOf(sock));
        guard?.restore('restart');
        guard = undefined;
        const eof = await portableFromSocket(ctx, sock);
        if (eof && ctx.total < ctx.limit && Number.isFinite(ctx.limit)) throw shortRead(ctx);
        req.beforeResume?.(ctx.taken);
        return ctx.total;
      }
      guard ??= stopReading(sock);
      countTransfer('splice');
      let out = await nativeFromSocket(ctx, sock);
      if (out === 'fallback') {
        // The pair cannot splice: Node reads the rest.
        guard.restore('restart');
        guard = undefined;
        out = (await portableFromSocket(ctx, sock)) ? 'eof' : 'limit';
      }
      const eof = out === 'eof';
      if (eof) how = 'eof';
      if (eof && ctx.total < ctx.limit && Number.isFinite(ctx.limit)) throw shortRead(ctx);
      req.beforeResume?.(ctx.taken);
      return ctx.total;
    }

    // A raw fd.
    const kind = native ? native.fstatKind(req.source as number) : -1;
    if (native && kind === C.S_IFSOCK && fileReason === undefined && req.mechanism !== 'copy' && !spliceLatchedOff) {
      countTransfer('splice');
      const eof = await nativeFromFd(ctx, req.source as number);
      if (eof && ctx.total < ctx.limit && Number.isFinite(ctx.limit)) throw shortRead(ctx);
      return ctx.total;
    }
    if (kind < 0 && native) throw systemError(kind, 'fstat');
    const r = !native ? (process.env.ZCOPY_FORCE_FALLBACK === '1' ? 'forced' : 'no-native') : req.mechanism === 'copy' ? undefined : (fileReason ?? 'not-socket');
    if (r) countFallback(r);
    countTransfer('portable');
    const eof = await portableFromFd(ctx, req.source as number);
    if (eof && ctx.total < ctx.limit && Number.isFinite(ctx.limit)) throw shortRead(ctx);
    return ctx.total;
  } catch (caught) {
    countError();
    let err: unknown = caught;
    if (caught instanceof FileSideError) {
      err = caught.error;
      // The socket is healthy; its unread input is the caller's to close.
      how = 'stopped';
    } else if (ctx.cancel.error === err || (err as { code?: string }).code === 'ABORT_ERR' || isSocketError(err)) {
      how = 'stopped';
      sock?.destroy();
    } else if ((err as { code?: string }).code === 'ZCOPY_ERR_SHORT_READ') {
      how = guard ? 'eof' : 'stopped';
    } else {
      // Nothing taken from the socket yet (the file did not open, say): it goes on as it was.
      how = ctx.taken === 0 ? 'restart' : 'stopped';
    }
    throw withBytes(err, ctx.total);
  } finally {
    guard?.restore(how);
    req.signal?.removeEventListener('abort', onAbort);
    sock?.off('close', onClose);
    if (opened) await opened.close();
  }
}

function isSocketError(err: unknown): boolean {
  const e = err as { syscall?: string; code?: string };
  return e?.syscall === 'splice' || e?.syscall === 'read' || e?.code === 'ZCOPY_ERR_SOCKET_CLOSED';
}

function fstatOf(ctx: Ctx): fs.Stats {
  try {
    return fs.fstatSync(ctx.fd);
  } catch (err) {
    throw systemError(-((err as NodeJS.ErrnoException).errno ?? 0) || -E.EBADF, 'fstat', ctx.path);
  }
}

/** Writes all of `buf` at `pos`; a failure is a FileSideError. */
async function writeAll(ctx: Ctx, buf: Buffer, pos: number): Promise<void> {
  let off = 0;
  while (off < buf.length) {
    const n = await new Promise<number>((resolve, reject) => {
      fs.write(ctx.fd, buf, off, buf.length - off, pos + off, (err, w) => (err ? reject(err) : resolve(w)));
    }).catch((err: NodeJS.ErrnoException) => {
      throw new FileSideError(systemError(err.errno ?? -E.EIO, 'write', ctx.path, ctx.total + off));
    });
    if (n === 0) throw new FileSideError(systemError(-E.EIO, 'write', ctx.path, ctx.total + off));
    off += n;
  }
}


function nodeSawEof(s: net.Socket): boolean {
  return (s as unknown as { _readableState?: { ended?: boolean } })._readableState?.ended === true;
}

/** The error a socket Node already destroyed stands for. */
function deadSocket(ctx: Ctx, s: net.Socket): Error {
  const e = (s as { errored?: NodeJS.ErrnoException | null }).errored;
  if (e && typeof e.errno === 'number' && e.syscall) return systemError(e.errno, e.syscall, undefined, ctx.total);
  return socketClosed(ctx);
}

function job(sockFd: number, p: Pipe, fileFd: number, offset: number, max: number): Promise<JobResult> {
  countThreadpoolChunk();
  return new Promise<JobResult>((resolve) => {
    const r = (native!.spliceToFileAsync as SpliceToFileAsync)(sockFd, p.readFd, p.writeFd, p.capacity, fileFd, offset, max, (moved, status, side, stuck) =>
      resolve({ moved, status, side, stuck }),
    );
    if (typeof r === 'number') resolve({ moved: 0, status: r, side: 0, stuck: 0 });
  });
}

/** Reads what a pipe holds (a file-side fallback mid-stream). */
function drainPipe(p: Pipe, bytes: number): Buffer {
  const buf = Buffer.allocUnsafe(bytes);
  let off = 0;
  while (off < bytes) {
    const r = native!.recv(p.readFd, buf, off, bytes - off);
    if (r <= 0) throw systemError(r === 0 ? -E.EIO : r, 'read');
    off += r;
  }
  return buf;
}

/** The kernel path for a net.Socket. Resolves true at EOF. */
async function nativeFromSocket(ctx: Ctx, sock: net.Socket): Promise<'eof' | 'limit' | 'fallback'> {
  // Node's own bytes first (the head of an upload Node read with the headers).
  const head = takeBuffered(sock, ctx.limit);
  if (head) {
    ctx.taken += head.length;
    await writeAll(ctx, head, ctx.offset);
    account(ctx, 'portable', head.length);
  }
  ctx.cancel.throwIfCancelled();
  if (ctx.total >= ctx.limit) return 'limit';
  if (nodeSawEof(sock)) return 'eof';
  if (sock.destroyed) throw deadSocket(ctx, sock);
  const fd = fdOf(sock);
  if (fd < 0) throw socketClosed(ctx);
  const watch = FdWatch.dup(fd);
  try {
    return await kernelLoop(ctx, watch, sock);
  } finally {
    watch.close();
  }
}

/** The kernel path for a raw socket fd (made non-blocking for the duration). */
async function nativeFromFd(ctx: Ctx, fd: number): Promise<boolean> {
  const n = native!;
  const watch = FdWatch.dup(fd);
  try {
    const fl = n.getFl(watch.fd);
    if (fl < 0) throw systemError(fl, 'fcntl');
    // A blocking socket would hold a worker thread until the peer writes.
    if (!(fl & C.O_NONBLOCK)) n.setFl(watch.fd, fl | C.O_NONBLOCK);
    try {
      const out = await kernelLoop(ctx, watch, undefined);
      if (out === 'fallback') return portableFromFd(ctx, fd);
      return out === 'eof';
    } finally {
      if (!(fl & C.O_NONBLOCK)) n.setFl(watch.fd, fl);
    }
  } finally {
    watch.close();
  }
}

/**
 * Socket -> pipe -> file jobs until EOF, `limit`, an error, or a fallback
 * (the pair cannot splice: the caller copies the rest).
 */
async function kernelLoop(ctx: Ctx, watch: FdWatch, sock: net.Socket | undefined): Promise<'eof' | 'limit' | 'fallback'> {
  const { cancel } = ctx;
  let pipe: Pipe | undefined;
  let clean = true;
  const offCancel = cancel.onCancel((err) => watch.cancel(err));
  const lowat = new LowatGuard(watch);
  // SO_OOBINLINE (as splice() and HAProxy set it): a TCP urgent byte stays
  // in the stream, in place, and reaches the file as an ordinary byte. The
  // job steps over the urgent mark, where splice stops (native/receive.c).
  // A failure only means the socket carries no urgent data (not TCP).
  native!.oobInline(watch.fd);
  try {
    try {
      pipe = pipePool.acquire();
    } catch (e) {
      countFallback(`pipe-${(e as { code?: string }).code ?? 'error'}`);
      return 'fallback';
    }
    for (;;) {
      cancel.throwIfCancelled();
      const max = Math.min(ctx.limit - ctx.total, JOB_BUDGET);
      // Awaited to the end even on cancel: the job uses the dup and the pipe.
      const r = await job(watch.fd, pipe, ctx.fd, ctx.offset + ctx.total, max);
      if (r.moved > 0) {
        ctx.taken += r.moved;
        account(ctx, 'splice', r.moved);
        refreshTimeout(sock);
      }
      if (r.status === 0) {
        if (ctx.total >= ctx.limit) return 'limit';
        continue;
      }
      if (r.status === 1) return 'eof';
      if (r.status === EAGAIN) {
        cancel.throwIfCancelled();
        countWait();
        // Never more than what is still expected: a length-bounded receive
        // must wake for its last bytes. (An EOF-bound one wakes on FIN.)
        const patience = lowat.set(Math.min(RCV_LOWAT, ctx.limit - ctx.total)) ? setTimeout(() => lowat.set(1), LOWAT_PATIENCE_MS) : undefined;
        try {
          await watch.wait(READABLE);
        } finally {
          clearTimeout(patience);
        }
        continue;
      }
      if (r.side === 1) {
        ctx.taken += r.stuck;
        if (FALLBACK_ERRNO.has(r.status)) {
          // This file cannot take splice: copy what the pipe holds, then go on copying.
          const reason = `splice-file-${codeOf(r.status)}`;
          countFallback(reason);
          if (r.stuck > 0) {
            const buf = drainPipe(pipe, r.stuck);
            await writeAll(ctx, buf, ctx.offset + ctx.total);
            account(ctx, 'portable', buf.length);
          }
          return 'fallback';
        }
        clean = r.stuck === 0;
        throw new FileSideError(systemError(r.status, 'write', ctx.path, ctx.total));
      }
      if (FALLBACK_ERRNO.has(r.status) && r.moved === 0) {
        if (r.status === -E.ENOSYS) spliceLatchedOff = true;
        countFallback(`splice-${codeOf(r.status)}`);
        return 'fallback';
      }
      throw systemError(r.status, 'splice', undefined, ctx.total);
    }
  } finally {
    offCancel();
    lowat.restore();
    if (pipe !== undefined) pipePool.release(pipe, clean);
  }
}

/**
 * SO_RCVLOWAT on the watch's private dup (the same socket as Node's fd, but
 * a number nobody else can close and reuse under us), and the socket's own
 * value put back by restore() while the dup is still open: on success,
 * error, abort, and after Node destroyed its socket alike.
 */
class LowatGuard {
  #watch: FdWatch;
  #saved = -1;
  #current = -1;
  #off = false;
  constructor(watch: FdWatch) {
    this.#watch = watch;
  }
  /** Sets SO_RCVLOWAT (at least 1); true when it is now above 1. */
  set(bytes: number): boolean {
    bytes = Math.max(1, bytes);
    if (this.#off || this.#watch.closed) return false;
    if (bytes === this.#current) return bytes > 1;
    const r = (native!.rcvLowat as RcvLowat | undefined)?.(this.#watch.fd, bytes);
    // Not TCP (a Unix socket's poll ignores it), an older addon, or an error:
    // wait as before.
    if (r === undefined || r < 0) {
      this.#off = true;
      return false;
    }
    if (this.#saved < 0) this.#saved = r;
    this.#current = bytes;
    return bytes > 1;
  }
  restore(): void {
    if (this.#saved < 0 || this.#watch.closed) return;
    if (this.#current !== this.#saved) (native!.rcvLowat as RcvLowat)(this.#watch.fd, this.#saved);
    this.#saved = -1;
    this.#current = -1;
  }
}

function codeOf(errno: number): string {
  return systemError(errno, 'splice').code;
}

/** Node's socket timeout counts only Node's reads; keep it honest. */
function refreshTimeout(s: net.Socket | undefined): void {
  (s as unknown as { _unrefTimer?: () => void } | undefined)?._unrefTimer?.();
}

/**
 * The portable path for a socket: Node reads, fs.write writes at the
 * offset, at most PORTABLE_QUEUE bytes waiting (the socket is paused
 * beyond). Resolves true at EOF, false at `limit`.
 */
function portableFromSocket(ctx: Ctx, sock: net.Socket): Promise<boolean> {
  const { cancel } = ctx;
  const flowing = sock.readableFlowing;
  const wasFlowing = flowing === true;
  return new Promise<boolean>((resolve, reject) => {
    let queued = 0;
    let writing: Promise<void> = Promise.resolve();
    let settled = false;
    let reading = true;
    let pos = ctx.offset + ctx.total;
    const finish = (err: unknown, eof?: boolean) => {
      if (settled) return;
      settled = true;
      stop();
      if (err) reject(err);
      else resolve(eof ?? false);
    };
    const stop = () => {
      reading = false;
      sock.off('data', onData);
      sock.off('end', onEnd);
      sock.off('error', onError);
      offCancel();
      if (!wasFlowing) {
        sock.pause();
        // Never switched to paused mode by its owner: put it back, so that
        // a 'data' listener added later starts the flow as it would have.
        const rs = (sock as unknown as { _readableState?: { flowing: boolean | null } })._readableState;
        if (flowing === null && rs) rs.flowing = null;
      }
    };
    const onData = (chunk: Buffer | string) => {
      if (!reading) return;
      let c = typeof chunk === 'string' ? Buffer.from(chunk, (sock.readableEncoding ?? 'utf8') as BufferEncoding) : chunk;
      const room = ctx.limit - ctx.taken;
      let last = false;
      if (c.length >= room) {
        last = true;
        sock.pause();
        if (c.length > room) sock.unshift(c.subarray(room));
        c = c.subarray(0, room);
        reading = false;
        sock.off('data', onData);
      }
      ctx.taken += c.length;
      const at = pos;
      pos += c.length;
      queued += c.length;
      if (queued > PORTABLE_QUEUE) sock.pause();
      writing = writing.then(async () => {
        if (settled) return;
        await writeAll(ctx, c, at);
        account(ctx, 'portable', c.length);
        queued -= c.length;
        if (!last && reading && queued <= PORTABLE_QUEUE && !settled) sock.resume();
      });
      writing.catch((e: unknown) => finish(e));
      if (last) void writing.then(() => finish(undefined, false), () => {});
    };
    const onEnd = () => {
      reading = false;
      void writing.then(() => finish(undefined, true), () => {});
    };
    const onError = (err: Error) => {
      const e = err as NodeJS.ErrnoException;
      finish(typeof e.errno === 'number' && e.syscall ? systemError(e.errno, e.syscall, undefined, ctx.total) : err);
    };
    // A cancel (abort, socket closed) waits for the write in flight: it holds the fd.
    const offCancel = cancel.onCancel((err) => {
      reading = false;
      void writing.then(() => finish(err), () => finish(err));
    });
    if (ctx.taken >= ctx.limit) {
      finish(undefined, false);
      return;
    }
    sock.on('data', onData);
    sock.once('end', onEnd);
    sock.on('error', onError);
    if (nodeSawEof(sock) && sock.readableLength === 0) {
      onEnd();
      return;
    }
    if (sock.destroyed) {
      finish(deadSocket(ctx, sock));
      return;
    }
    sock.resume();
  });
}

/** The portable path for a raw fd: fs.read (threadpool) into one buffer, fs.write to the file. */
async function portableFromFd(ctx: Ctx, fd: number): Promise<boolean> {
  const buf = Buffer.allocUnsafe(PORTABLE_BUFFER);
  let delay = 1;
  for (;;) {
    ctx.cancel.throwIfCancelled();
    const want = Math.min(buf.length, ctx.limit - ctx.taken);
    if (want <= 0) return false;
    let n: number;
    try {
      n = await new Promise<number>((resolve, reject) => fs.read(fd, buf, 0, want, null, (err, r) => (err ? reject(err) : resolve(r))));
      delay = 1;
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      // A non-blocking fd without the addon has no readiness poll: back off
      // with a bounded timer and retry (no busy loop).
      if (e.code === 'EAGAIN') {
        await ctx.cancel.race(new Promise((r) => setTimeout(r, delay)));
        delay = Math.min(delay * 2, 100);
        continue;
      }
      throw systemError(e.errno ?? -E.EIO, 'read', undefined, ctx.total);
    }
    if (n === 0) return true;
    ctx.taken += n;
    await writeAll(ctx, buf.subarray(0, n), ctx.offset + ctx.total);
    account(ctx, 'portable', n);
  }
}
