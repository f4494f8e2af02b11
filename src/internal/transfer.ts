// The engine behind sendFile and FileRegion: moves [offset, offset+length)
// of an open file to a socket by the best path available, without blocking
// the event loop on a slow peer or on disk.
//
//   native, regular file  -> sendfile / splice / native copy, on a private dup
//                            of the socket fd, EAGAIN -> one-shot uv_poll;
//                            chunks whose pages are not cached run on the
//                            threadpool; at most chunkSize per loop turn.
//   anything else         -> the portable path: fs.read into two reused
//                            buffers, socket.write with backpressure.
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { constants as osConstants } from 'node:os';
import { C, native } from '../native.js';
import { ZcopyError, abortError, systemError } from '../errors.js';
import { countBytes, countError, countFallback, countThreadpoolChunk, countTransfer, countWait, type Path } from '../stats.js';
import { Canceller } from './cancel.js';
import { chunkPool } from '../buffer-pool.js';
import { FdWatch, WRITABLE, type PumpResult } from './fd-watch.js';
import { enterSocket, type SocketTurn } from './hold-writes.js';
import { chooseMechanism, type ConcreteMechanism, type Mechanism, type Transport } from './mechanism.js';

const E = osConstants.errno;
/** sendfile errors that mean "this file/socket pair can't, copy instead". */
const SENDFILE_FALLBACK = new Set([-E.EINVAL, -E.ENOSYS, -E.EOPNOTSUPP, -E.EPERM, -(E.ENOTSUP ?? E.EOPNOTSUPP)]);
/** splice errors with the same meaning (EBADF: the fd type can't splice). */
const SPLICE_FALLBACK = new Set([-E.EINVAL, -E.ENOSYS, -E.EOPNOTSUPP, -E.EPERM, -E.EBADF]);

/** Latched process-wide when the kernel has no sendfile / splice. */
const latched = { sendfile: false, splice: false };

/** @internal Test hook: replace syscalls to inject errors. */
export const _syscalls = {
  sendfile: (out: number, inp: number, off: number, n: number): number => native!.sendfile(out, inp, off, n),
  splice: (inp: number, out: number, n: number, more: number): number => native!.splice(inp, out, n, more),
};

/** The real sendfile: a pump (sendfile in native code) only runs while no test replaced it. */
const nativeSendfile = _syscalls.sendfile;

/** @internal */
export function latchedOff(): { sendfile: boolean; splice: boolean } {
  return { ...latched };
}

export const DEFAULT_CHUNK = 2 * 1024 * 1024;
const COPY_BUFFER = 1024 * 1024;
const PORTABLE_BUFFER = 256 * 1024;

export interface TransferRequest {
  target: net.Socket | number;
  fd: number;
  path?: string;
  offset: number;
  /** Bytes to send; undefined: to the end of the file as it is now. */
  length: number | undefined;
  chunkSize: number;
  mechanism: Mechanism;
  /** SO_SNDBUF to ask for (never lower than the socket's); 0: leave it; undefined: auto. */
  sendBufferSize?: number;
  signal?: AbortSignal;
  /** The socket's queue place, taken synchronously at the API call. */
  turn?: SocketTurn;
}

/**
 * Takes `target`'s queue place now (synchronously, at the API call) so the
 * caller's next writes and transfers come after this one.
 */
export function reserve(target: net.Socket | number): SocketTurn | undefined {
  if (typeof target === 'number' || target.destroyed) return undefined;
  return enterSocket(target);
}

/**
 * The error for a socket that was never connected (`new net.Socket()`
 * without connect()), or undefined. Checked up front: writing to one emits
 * 'error' (a crash without a listener) and it never becomes writable.
 */
export function notConnected(target: net.Socket | number): ZcopyError | undefined {
  if (typeof target === 'number' || target.destroyed) return undefined;
  if (target.connecting || !(target as { pending?: boolean }).pending) return undefined;
  return new ZcopyError('ZCOPY_ERR_NOT_CONNECTED', 'target socket is not connected (connect() it first)', { bytesTransferred: 0 });
}

/** Live counters of one transfer (FileRegion reads them). */
export interface TransferProgress {
  sent: number;
  zeroCopy: number;
  path?: Path;
  fallbackReason?: string;
}

interface Ctx extends TransferRequest {
  cancel: Canceller;
  progress: TransferProgress;
  socket?: net.Socket;
  total: number; // bytes owed; Infinity: until EOF (non-regular files)
  regular: boolean;
}

function truncated(ctx: Ctx): ZcopyError {
  return new ZcopyError(
    'ZCOPY_ERR_FILE_TRUNCATED',
    `file ${ctx.path !== undefined ? `'${ctx.path}' ` : ''}ended after ${ctx.progress.sent} of ${ctx.total} bytes (truncated during the transfer?)`,
    { bytesTransferred: ctx.progress.sent },
  );
}

function withBytes(err: unknown, sent: number): unknown {
  if (err && typeof err === 'object' && (err as { bytesTransferred?: number }).bytesTransferred === undefined) {
    try {
      (err as { bytesTransferred?: number }).bytesTransferred = sent;
    } catch {
      // Frozen error objects keep their shape.
    }
  }
  return err;
}

function account(ctx: Ctx, path: Path, n: number): void {
  ctx.progress.sent += n;
  if (path === 'sendfile' || path === 'splice') ctx.progress.zeroCopy += n;
  ctx.progress.path = path;
  countBytes(path, n);
}

function fallback(ctx: Ctx, reason: string): void {
  ctx.progress.fallbackReason ??= reason;
  countFallback(reason);
}

const yieldTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * Runs one transfer. Validation of arguments has been done; this rejects for
 * anything found at run time (file type, range, socket state).
 */
export async function transfer(req: TransferRequest, progress: TransferProgress): Promise<number> {
  const cancel = new Canceller();
  const ctx: Ctx = { ...req, cancel, progress, total: 0, regular: true };
  const start = progress.sent;
  const cleanups: Array<() => void> = [];
  let failed = true;
  if (req.turn) cleanups.push(() => req.turn!.leave(failed));
  try {
    if (req.signal) {
      if (req.signal.aborted) throw abortError(req.signal);
      const onAbort = (): void => cancel.cancel(abortError(req.signal));
      req.signal.addEventListener('abort', onAbort, { once: true });
      cleanups.push(() => req.signal!.removeEventListener('abort', onAbort));
    }

    // The file: fstat the fd we will read (never a path stat, then open).
    let st: fs.Stats;
    try {
      st = fs.fstatSync(req.fd);
    } catch (err) {
      throw systemError(-((err as NodeJS.ErrnoException).errno ?? 0) || -E.EBADF, 'fstat', req.path);
    }
    if (st.isDirectory()) throw systemError(-E.EISDIR, 'sendfile', req.path);
    ctx.regular = st.isFile();
    if (ctx.regular) {
      if (req.offset > st.size) {
        throw new ZcopyError('ZCOPY_ERR_OUT_OF_RANGE', `offset ${req.offset} is past the end of the file (${st.size} bytes)`);
      }
      const end = req.length === undefined ? st.size : req.offset + req.length;
      if (end > st.size) {
        throw new ZcopyError('ZCOPY_ERR_OUT_OF_RANGE', `range [${req.offset}, ${end}) is past the end of the file (${st.size} bytes)`);
      }
      ctx.total = end - req.offset;
    } else {
      ctx.total = req.length ?? Infinity;
    }
    ctx.total -= start; // a resumed FileRegion owes only the rest
    ctx.offset += start;
    ctx.progress.sent = 0;

    if (typeof req.target === 'number') {
      await toFd(ctx, req.target);
    } else {
      ctx.socket = req.target;
      await toSocket(ctx, req.target, cleanups);
    }
    failed = false;
    return ctx.progress.sent;
  } catch (err) {
    countError();
    throw withBytes(err, ctx.progress.sent);
  } finally {
    for (const c of cleanups.reverse()) c();
    ctx.progress.sent += start;
  }
}

function socketClosed(ctx: Ctx): ZcopyError {
  return new ZcopyError('ZCOPY_ERR_SOCKET_CLOSED', `socket closed after ${ctx.progress.sent} bytes of the transfer`, { bytesTransferred: ctx.progress.sent });
}

async function toSocket(ctx: Ctx, socket: net.Socket, cleanups: Array<() => void>): Promise<void> {
  const closed = (): ZcopyError => socketClosed(ctx);
  if (socket.destroyed || !ctx.turn) throw closed();
  const turn = ctx.turn;
  // One 'close' listener per socket, shared by its queued transfers.
  cleanups.push(turn.onClose(() => ctx.cancel.cancel(closed())));
  // Earlier transfers (and the writes queued between them) go first.
  await ctx.cancel.race(turn.ready);
  if (socket.destroyed || socket.writableEnded) throw closed();
  const unconnected = notConnected(socket);
  if (unconnected) throw unconnected;

  if (socket.connecting) {
    await ctx.cancel.race(
      new Promise<void>((resolve, reject) => {
        const ok = (): void => {
          socket.removeListener('error', bad);
          resolve();
        };
        const bad = (e: Error): void => {
          socket.removeListener('connect', ok);
          reject(e);
        };
        socket.once('connect', ok);
        socket.once('error', bad);
      }),
    );
  }

  const handleFd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  let reason: string | undefined;
  if (socket instanceof tls.TLSSocket || (socket as { encrypted?: boolean }).encrypted) reason = 'tls';
  else if (!native) reason = process.env.ZCOPY_FORCE_FALLBACK === '1' ? 'forced' : 'no-native';
  else if (typeof handleFd !== 'number' || handleFd < 0) reason = 'no-fd';
  else if (!ctx.regular) reason = 'not-regular-file';

  if (reason !== undefined) {
    fallback(ctx, reason);
    countTransfer('portable');
    await ctx.cancel.race(turn.flushed());
    await portableToSocket(ctx, turn);
    return;
  }

  const watch = FdWatch.dup(handleFd!);
  cleanups.push(() => watch.close());
  ctx.cancel.onCancel((err) => watch.cancel(err));
  const transport = checkSocket(watch.fd, 'ZCOPY_ERR_INVALID_TARGET');
  await ctx.cancel.race(turn.flushed());
  await nativeLoop(ctx, watch, transport, socket);
}

/** Checks a socket fd is a connected stream socket; returns its transport. */
function checkSocket(fd: number, code: string): Transport {
  const info = native!.sockInfo(fd);
  if (typeof info === 'number') {
    if (info === -E.ENOTSOCK) throw new ZcopyError(code, 'target is not a socket');
    throw systemError(info, 'getsockopt');
  }
  const [type, listening, family, connected, loopback] = info;
  if (type !== C.SOCK_STREAM) throw new ZcopyError(code, 'target is not a stream socket');
  if (listening) throw new ZcopyError(code, 'target is a listening socket, not a connection');
  if (!connected) throw new ZcopyError('ZCOPY_ERR_NOT_CONNECTED', 'target socket is not connected');
  if (family === C.AF_UNIX) return 'unix';
  return loopback ? 'tcp-loopback' : 'tcp';
}

async function toFd(ctx: Ctx, fd: number): Promise<void> {
  if (!native || !ctx.regular) {
    fallback(ctx, !native ? (process.env.ZCOPY_FORCE_FALLBACK === '1' ? 'forced' : 'no-native') : 'not-regular-file');
    countTransfer('portable');
    await portableToFd(ctx, fd);
    return;
  }
  const watch = FdWatch.dup(fd);
  try {
    ctx.cancel.onCancel((err) => watch.cancel(err));
    const transport = checkSocket(watch.fd, 'ZCOPY_ERR_INVALID_TARGET');
    // The fd may be blocking: a blocking sendfile would stall the loop. The
    // flag lives on the open file description, so restore it afterwards.
    const fl = native.getFl(watch.fd);
    if (fl < 0) throw systemError(fl, 'fcntl');
    if (!(fl & C.O_NONBLOCK)) native.setFl(watch.fd, fl | C.O_NONBLOCK);
    try {
      await nativeLoop(ctx, watch, transport, undefined);
    } finally {
      if (!(fl & C.O_NONBLOCK)) native.setFl(watch.fd, fl);
    }
  } finally {
    watch.close();
  }
}

// ---- the native loop --------------------------------------------------------

/** One mechanism's step: moves some of [pos, pos+want) to the socket. */
interface Mover {
  readonly path: Path;
  /** >0 bytes that reached the socket, 0 end of file, <0 -errno. */
  step(pos: number, want: number): number | Promise<number>;
  /** Bytes read from the file but not yet sent (copy buffer, pipe). */
  readonly held: number;
  /**
   * The last step's write to the socket was short: its send buffer is full,
   * so the next write would only fail with EAGAIN. The loop waits for
   * writability at once instead of making that failing call.
   */
  readonly full: boolean;
  /**
   * Bytes from `pos` (at most `want`) that native code may send at each
   * writability wake-up without JavaScript (FdWatch.pump): the part found in
   * the page cache; 0 when the next bytes must go through step().
   */
  pumpable?(pos: number, want: number): number;
  /**
   * Before a wait for the socket (`stalled`) or a yield to other
   * connections: let go of memory not needed until the next step.
   */
  idle?(stalled: boolean): void;
  close(): void;
}

/** How often a pump (sendfile at each wake-up, in native code) reports back. */
const PUMP_REPORT_MS = 200;

/** How long a range found in the page cache is trusted without asking again. */
const CACHED_TRUST_MS = 500;
/**
 * How far ahead of a chunk the page cache is asked about at once. One
 * cachestat over 32 MiB costs about what one over a 2 MiB chunk does (a walk
 * of the cache's tree, no I/O), and a fully cached file then needs two probe
 * syscalls per 32 MiB instead of per chunk.
 */
const PROBE_AHEAD = 32 * 1024 * 1024;

/**
 * How many bytes from `pos` (of the `want` asked for) can be read without
 * waiting for the disk: 0 means [pos, pos+want) is not all cached, so the
 * chunk goes to the threadpool. A range found cached is trusted for a short
 * while: a slow reader splits it into many short sends, one per writability
 * wait, and asking the page cache again for each (cachestat plus a 1-byte
 * read) would double the syscalls of a stalled transfer. The range asked
 * about is up to PROBE_AHEAD past `pos` (not past the transfer's end); when
 * that is not all cached, only the chunk itself, and no look-ahead again
 * until past the range that failed (a partly cached file must not pay two
 * probes per chunk). The caller sends at most what is returned, so the next
 * probe starts where this range ends.
 */
function cacheProbe(ctx: Ctx): (pos: number, want: number) => number {
  let from = -1;
  let until = -1;
  let at = 0;
  let noAheadUntil = -1;
  const trust = (pos: number, end: number): void => {
    from = pos;
    until = end;
    at = performance.now();
  };
  return (pos, want) => {
    if (pos >= from && pos < until && performance.now() - at < CACHED_TRUST_MS) return Math.min(want, until - pos);
    const end = ctx.offset + ctx.total;
    const span = Number.isFinite(end) ? Math.min(PROBE_AHEAD, end - pos) : want;
    if (span > want && pos >= noAheadUntil) {
      if (native!.uncachedPages(ctx.fd, pos, span) === 0) {
        trust(pos, pos + span);
        return want;
      }
      noAheadUntil = pos + span;
    }
    if (native!.uncachedPages(ctx.fd, pos, want) > 0) return 0;
    trust(pos, pos + want);
    return want;
  };
}

function sendfileMover(ctx: Ctx, out: number): Mover {
  const cached = cacheProbe(ctx);
  let full = false;
  return {
    path: 'sendfile',
    held: 0,
    get full() {
      return full;
    },
    step(pos, want) {
      const ok = cached(pos, want);
      if (ok === 0) {
        // sendfile would wait for the disk on this thread: run it on the pool.
        countThreadpoolChunk();
        return new Promise<number>((resolve) =>
          native!.sendfileAsync(out, ctx.fd, pos, want, (n: number) => {
            full = n > 0 && n < want;
            resolve(n);
          }),
        );
      }
      const n = _syscalls.sendfile(out, ctx.fd, pos, ok);
      // A non-blocking sendfile stops short only when the socket is full
      // (or the file ended: the next call returns 0 and says so).
      full = n > 0 && n < ok;
      return n;
    },
    pumpable(pos, want) {
      if (_syscalls.sendfile !== nativeSendfile) return 0;
      return cached(pos, Math.min(want, PROBE_AHEAD));
    },
    close() {},
  };
}

function copyMover(ctx: Ctx, out: number): Mover {
  // A pooled buffer, taken for a burst of sends and given back before every
  // wait: a stalled reader must not pin a buffer (1 MiB each, for as long as
  // it stalls). Bytes read but not sent when the socket fills are dropped
  // and read again from the page cache after the wait; to keep that re-read
  // small, a read after a wait is sized to what the socket took in the last
  // burst, and grows back (doubling) while whole reads go out.
  const pool = chunkPool(Math.max(4096, Math.min(COPY_BUFFER, Number.isFinite(ctx.total) ? ctx.total : COPY_BUFFER)));
  const max = Math.min(pool.size, COPY_BUFFER);
  const MIN_READ = 64 * 1024;
  let buf: Buffer | undefined;
  let readSize = max;
  let burst = 0; // bytes the socket took since the last wait
  let start = 0;
  let end = 0;
  let full = false;
  const send = (): number => {
    const n = native!.write(out, buf!, start, end - start);
    full = n > 0 && n < end - start;
    if (n > 0) {
      start += n;
      burst += n;
      if (start === end && end === readSize) readSize = Math.min(max, readSize * 2);
    }
    return n;
  };
  const cached = cacheProbe(ctx);
  return {
    path: 'nativeCopy',
    get held() {
      return end - start;
    },
    get full() {
      return full;
    },
    step(pos, want) {
      full = false;
      if (end > start) return send();
      buf ??= pool.acquire();
      const n = Math.min(want, readSize);
      const fill = (r: number): number => {
        if (r <= 0) return r;
        start = 0;
        end = r;
        return send();
      };
      const ok = cached(pos, n);
      if (ok === 0) {
        countThreadpoolChunk();
        const b = buf;
        return new Promise<number>((resolve) => {
          fs.read(ctx.fd, b, 0, n, pos, (err, r) => resolve(err ? -(err.errno ?? E.EIO) : fill(r)));
        });
      }
      return fill(native!.pread(ctx.fd, buf, 0, ok, pos));
    },
    idle(stalled) {
      // Called between steps only: no read is using the buffer. The unsent
      // bytes are [pos, pos + held) of the file: forget them, the next step
      // reads them again.
      if (stalled) {
        readSize = Math.max(MIN_READ, Math.min(max, 2 ** Math.ceil(Math.log2(Math.max(1, burst)))));
        burst = 0;
      }
      start = end = 0;
      if (buf) pool.release(buf);
      buf = undefined;
    },
    close() {
      if (buf) pool.release(buf);
      buf = undefined;
    },
  };
}

function spliceMover(ctx: Ctx, out: number): Mover | number {
  const p = native!.pipe(Math.min(ctx.chunkSize, 1024 * 1024));
  if (typeof p === 'number') return p;
  const [rfd, wfd, cap] = p;
  let inPipe = 0;
  let closed = false;
  let full = false;
  const cached = cacheProbe(ctx);
  return {
    path: 'splice',
    get held() {
      return inPipe;
    },
    get full() {
      return full;
    },
    step(pos, want) {
      full = false;
      if (inPipe === 0) {
        const n = Math.min(want, cap);
        const ok = cached(pos, n);
        if (ok === 0) {
          // Filling the pipe would wait for disk: send this chunk with
          // sendfile on the pool instead (still zero-copy).
          countThreadpoolChunk();
          return new Promise<number>((resolve) =>
            native!.sendfileAsync(out, ctx.fd, pos, n, (m: number) => {
              full = m > 0 && m < n;
              resolve(m);
            }),
          );
        }
        const r = native!.spliceFile(ctx.fd, pos, wfd, ok);
        if (r <= 0) return r;
        inPipe = r;
      }
      const m = _syscalls.splice(rfd, out, inPipe, inPipe < want ? 1 : 0);
      if (m > 0) inPipe -= m;
      full = m > 0 && inPipe > 0;
      return m;
    },
    close() {
      if (closed) return;
      closed = true;
      native!.close(rfd);
      native!.close(wfd);
    },
  };
}

/**
 * The send buffer a large zero-copy transfer to a Unix socket asks for
 * (SO_SNDBUF; Linux doubles it and caps the request at net.core.wmem_max).
 * A Unix socket's writer is woken when its queue drains to a quarter of the
 * buffer: with the default ~208 KiB that is a wake-up (a sendfile and two
 * epoll_pwait in Node's loop) per ~160 KiB, ~6,600 per GiB. What the queue
 * holds on this path are references to page-cache pages, not copies.
 * Measured with `zcopy bench` (docs/zero-copy-explained.md).
 */
const AUTO_SEND_BUFFER = 4 * 1024 * 1024;
/** Transfers shorter than this keep the socket's buffer as it is. */
const AUTO_SEND_BUFFER_MIN = 4 * 1024 * 1024;

let wmemMax: number | undefined;
/** net.core.wmem_max (the cap of an SO_SNDBUF request), or 0 when unknown. */
function wmemMaxBytes(): number {
  if (wmemMax === undefined) {
    try {
      wmemMax = Number(fs.readFileSync('/proc/sys/net/core/wmem_max', 'latin1').trim()) || 0;
    } catch {
      wmemMax = 0;
    }
  }
  return wmemMax;
}

/**
 * Raises the socket's send buffer for this transfer: to `sendBufferSize`
 * when given (it stays so, as a setsockopt by the caller would), or, for a
 * zero-copy transfer of AUTO_SEND_BUFFER_MIN or more to a Unix socket, to
 * AUTO_SEND_BUFFER until the transfer ends (then put back). Never lowers a
 * buffer. Not on TCP unless asked: setting SO_SNDBUF there turns off the
 * kernel's send-buffer autotuning for the socket. Returns the undo, if any.
 */
function raiseSendBuffer(ctx: Ctx, fd: number, transport: Transport, path: Path): (() => void) | undefined {
  const explicit = ctx.sendBufferSize;
  if (explicit === 0) return undefined;
  if (explicit === undefined && (transport !== 'unix' || (path !== 'sendfile' && path !== 'splice') || ctx.total < AUTO_SEND_BUFFER_MIN)) return undefined;
  const want = explicit ?? AUTO_SEND_BUFFER;
  const cur = native!.sendBuffer(fd, 0);
  if (cur < 0) {
    if (explicit !== undefined) throw systemError(cur, 'getsockopt', undefined, ctx.progress.sent);
    return undefined;
  }
  const cap = wmemMaxBytes();
  // Unknown cap: only an explicit request is made (and undone if it shrank).
  if (explicit === undefined && cap === 0) return undefined;
  if (2 * (cap > 0 ? Math.min(want, cap) : want) <= cur) return undefined;
  const got = native!.sendBuffer(fd, want);
  if (got < 0) {
    if (explicit !== undefined) throw systemError(got, 'setsockopt', undefined, ctx.progress.sent);
    return undefined;
  }
  if (got < cur) {
    native!.sendBuffer(fd, Math.floor(cur / 2));
    return undefined;
  }
  if (explicit !== undefined) return undefined;
  return () => {
    native!.sendBuffer(fd, Math.floor(cur / 2));
  };
}

async function nativeLoop(ctx: Ctx, watch: FdWatch, transport: Transport, socket: net.Socket | undefined): Promise<void> {
  let mech: ConcreteMechanism = chooseMechanism(ctx.mechanism, transport, latched);
  let mover: Mover;
  const made = mech === 'splice' ? spliceMover(ctx, watch.fd) : undefined;
  if (typeof made === 'number') {
    fallback(ctx, `splice-${made === -E.EMFILE ? 'EMFILE' : 'pipe'}`);
    mech = 'copy';
  }
  mover = typeof made === 'object' ? made : mech === 'sendfile' ? sendfileMover(ctx, watch.fd) : copyMover(ctx, watch.fd);
  countTransfer(mover.path);
  const sock = socket as (net.Socket & { timeout?: number }) | undefined;
  const restore = raiseSendBuffer(ctx, watch.fd, transport, mover.path);
  try {
    const check = (): void => {
      ctx.cancel.throwIfCancelled();
      if (sock?.destroyed) throw new ZcopyError('ZCOPY_ERR_SOCKET_CLOSED', `socket destroyed after ${ctx.progress.sent} bytes of the transfer`, { bytesTransferred: ctx.progress.sent });
    };
    // Counts `m` bytes that reached the socket after the transfer was
    // cancelled (a threadpool job or a pump still ran) and returns the error
    // to throw: `err`, or, when the socket's 'close' cancelled with an error
    // made before they were counted, that one made again.
    const counted = (m: number, err: unknown): unknown => {
      if (m <= 0) return err;
      account(ctx, mover.path, m);
      if (err instanceof ZcopyError && err.code === 'ZCOPY_ERR_SOCKET_CLOSED') return socketClosed(ctx);
      return err;
    };
    while (ctx.progress.sent < ctx.total) {
      check();
      let budget = ctx.chunkSize;
      let waited = false;
      while (budget > 0 && ctx.progress.sent < ctx.total) {
        const want = Math.min(ctx.total - ctx.progress.sent, budget);
        let r = mover.step(ctx.offset + ctx.progress.sent, want);
        if (typeof r !== 'number') {
          r = await r;
          try {
            check();
          } catch (err) {
            throw counted(r, err);
          }
        }
        if (r > 0) {
          account(ctx, mover.path, r);
          budget -= r;
          if (!mover.full || ctx.progress.sent >= ctx.total) continue;
        } else if (r === 0) {
          throw truncated(ctx);
        }
        if (r > 0 || r === -E.EAGAIN) {
          countWait();
          mover.idle?.(true);
          waited = true;
          const pos = ctx.offset + ctx.progress.sent;
          const pumpable = mover.pumpable?.(pos, ctx.total - ctx.progress.sent) ?? 0;
          if (pumpable === 0) {
            await watch.wait(WRITABLE);
            break;
          }
          // The socket is full and the next bytes are cached: native code
          // sends them at each wake-up, and this loop hears back when they
          // are sent, on an error, or after PUMP_REPORT_MS (to keep the
          // idle timer, the cache check and the socket state current).
          let pumped: PumpResult;
          try {
            pumped = await watch.pump(ctx.fd, pos, pumpable, ctx.chunkSize, PUMP_REPORT_MS);
          } catch (err) {
            throw counted(watch.takePumped(), err);
          }
          if (pumped.moved > 0) account(ctx, mover.path, pumped.moved);
          // Sent, time to look, or the file ended (the next step finds 0).
          if (pumped.result === 0 || pumped.result === -E.EAGAIN) break;
          r = pumped.result;
        }
        const canFall = mover.path === 'sendfile' ? SENDFILE_FALLBACK.has(r) : mover.path === 'splice' ? SPLICE_FALLBACK.has(r) && mover.held === 0 : false;
        if (canFall) {
          // Switch to the native copy from the current offset, mid-stream.
          const code = systemError(r, mover.path).code;
          if (r === -E.ENOSYS) latched[mover.path as 'sendfile' | 'splice'] = true;
          fallback(ctx, `${mover.path}-${code}`);
          mover.close();
          mover = copyMover(ctx, watch.fd);
          continue;
        }
        const syscall = mover.path === 'nativeCopy' ? (r === -E.EPIPE || r === -E.ECONNRESET ? 'write' : 'read') : mover.path;
        throw systemError(r, syscall, undefined, ctx.progress.sent);
      }
      // Keep the caller's idle timer (socket.setTimeout) alive: we wrote.
      if (sock && sock.timeout) sock.setTimeout(sock.timeout);
      // Fairness: after chunkSize, let other connections' I/O run.
      if (!waited && ctx.progress.sent < ctx.total) {
        mover.idle?.(false);
        await yieldTurn();
      }
    }
  } finally {
    mover.close();
    restore?.();
  }
}

// ---- the portable path ------------------------------------------------------

function readAsync(fd: number, buf: Buffer, len: number, pos: number | null): Promise<number> {
  return new Promise((resolve, reject) => {
    fs.read(fd, buf, 0, len, pos, (err, n) => (err ? reject(err) : resolve(n)));
  });
}

function fsError(err: unknown, syscall: string, path: string | undefined, sent: number): unknown {
  const e = err as NodeJS.ErrnoException;
  if (typeof e?.errno === 'number') return systemError(e.errno, syscall, path, sent);
  return err;
}

/**
 * A sink's answer for one chunk: `done` settles when the chunk's buffer is
 * free again (the write really completed, successfully or not), `result`
 * when the transfer may go on (it may reject early, on cancel).
 */
interface Sunk {
  done: Promise<unknown>;
  result: Promise<void>;
}

/**
 * Reads the file in chunks into two pooled buffers, alternating: one is read
 * while the other's write completes. A buffer goes back to the pool only
 * when its write is done, even if the transfer ended early.
 */
async function portableLoop(ctx: Ctx, sink: (chunk: Buffer) => Sunk): Promise<void> {
  const want0 = Math.min(PORTABLE_BUFFER, ctx.chunkSize, Number.isFinite(ctx.total) ? ctx.total : PORTABLE_BUFFER);
  const pool = chunkPool(Math.max(4096, want0));
  const bufs = [pool.acquire(), pool.acquire()];
  const size = Math.min(bufs[0]!.length, Math.max(4096, want0));
  const busy = new Map<Buffer, Promise<unknown>>();
  let inFlight: Promise<void> | undefined;
  let i = 0;
  let readPos = ctx.offset + ctx.progress.sent;
  let queued = ctx.progress.sent;
  try {
    while (queued < ctx.total) {
      ctx.cancel.throwIfCancelled();
      const buf = bufs[i++ & 1]!;
      const want = Math.min(size, ctx.total - queued);
      let n: number;
      try {
        // Sequential reads for pipes and devices; positioned for files.
        n = await readAsync(ctx.fd, buf, want, ctx.regular ? readPos : null);
      } catch (err) {
        throw fsError(err, 'read', ctx.path, ctx.progress.sent);
      }
      if (inFlight) await inFlight;
      inFlight = undefined;
      ctx.cancel.throwIfCancelled();
      if (n === 0) {
        if (ctx.total === Infinity) break;
        throw truncated(ctx);
      }
      readPos += n;
      queued += n;
      const w = sink(buf.subarray(0, n));
      busy.set(buf, w.done);
      const p = w.result.then(() => account(ctx, 'portable', n));
      p.catch(() => {});
      inFlight = p;
    }
    if (inFlight) await inFlight;
  } finally {
    if (inFlight) await inFlight.catch(() => {});
    for (const b of bufs) {
      const done = busy.get(b);
      if (done) void done.then(() => pool.release(b), () => pool.release(b));
      else pool.release(b);
    }
  }
}

async function portableToSocket(ctx: Ctx, turn: SocketTurn): Promise<void> {
  const socket = ctx.socket!;
  await portableLoop(ctx, (chunk) => {
    const done = new Promise<Error | null | undefined>((resolve) => {
      turn.write(chunk, (err) => resolve(err));
    });
    const result = done.then((err) => {
      if (err) throw streamError(ctx, socket, err);
    });
    // A cancelled transfer stops waiting; the buffer waits for `done`.
    return { done, result: ctx.cancel.race(result) };
  });
}

/** The error a failed stream write stands for, shaped like the native path's. */
function streamError(ctx: Ctx, socket: net.Socket, err: Error): Error {
  if (ctx.cancel.error) return ctx.cancel.error;
  const cause = (socket as { errored?: Error | null }).errored ?? err;
  const c = cause as NodeJS.ErrnoException;
  // Same shape as the native path's errors (Node's net says 'write EPIPE').
  if (typeof c.errno === 'number' && c.syscall) return systemError(c.errno, c.syscall, undefined, ctx.progress.sent);
  return new ZcopyError('ZCOPY_ERR_SOCKET_CLOSED', `socket closed after ${ctx.progress.sent} bytes of the transfer`, { cause, bytesTransferred: ctx.progress.sent });
}

async function portableToFd(ctx: Ctx, fd: number): Promise<void> {
  await portableLoop(ctx, (chunk) => {
    const done = (async () => {
      let off = 0;
      let delay = 1;
      while (off < chunk.length) {
        ctx.cancel.throwIfCancelled();
        try {
          off += await new Promise<number>((resolve, reject) => fs.write(fd, chunk, off, chunk.length - off, null, (e, n) => (e ? reject(e) : resolve(n))));
          delay = 1;
        } catch (err) {
          // A non-blocking fd without the addon has no readiness poll: back
          // off with a timer (bounded, no busy loop) and retry.
          if ((err as NodeJS.ErrnoException).code === 'EAGAIN') {
            await new Promise((r) => setTimeout(r, delay));
            delay = Math.min(delay * 2, 100);
            continue;
          }
          throw fsError(err, 'write', undefined, ctx.progress.sent);
        }
      }
    })();
    return { done: done.catch(() => {}), result: done };
  });
}
