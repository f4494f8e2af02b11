/**
 * Socket-to-socket forwarding inside the kernel: `splice()` moves the bytes
 * one socket receives into another, socket -> pipe -> socket with splice(2)
 * (HAProxy's and Netty's epoll transport), never through JavaScript.
 *
 * How one direction runs (see docs/proxy.md):
 * 1. Node's reading of `from` is really stopped (`_handle.readStop()`, and
 *    `_read` shadowed so `resume()` or a 'data' listener cannot restart it),
 *    and the bytes Node had already read (`readableLength`) are forwarded
 *    first, through Node, after Node's own pending writes on `to`.
 * 2. Then the kernel moves the rest: splice `from` -> pipe -> `to` on the
 *    fds Node owns (read afresh every turn, never across an await), waiting
 *    for readability/writability on a private epoll set that both
 *    directions of a connection share (src/internal/socket-poll.ts): an
 *    idle connection holds its two sockets and one epoll fd. The pipe's byte
 *    count is tracked here, since EAGAIN on socket -> pipe is ambiguous
 *    (socket empty, or pipe full). A TCP urgent byte is kept in the stream
 *    (SO_OOBINLINE) and read past with recv(), where splice stops.
 * 3. EOF on `from` half-closes `to` (`end()`: shutdown(SHUT_WR)) unless
 *    `end: false`.
 *
 * @module
 */
import net from 'node:net';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { native, C } from './native.js';
import { SocketPoll, fdOf } from './internal/socket-poll.js';
import { enterSocket, type SocketTurn } from './internal/hold-writes.js';
import { notConnected } from './internal/transfer.js';
import { pipePool, type Pipe } from './internal/pipe-pool.js';
import { Canceller } from './internal/cancel.js';
import { validateObject, validateOneOf, validateSignal } from './internal/validate.js';
import { ZcopyError, abortError, invalidArgType, systemError, validateOffset } from './errors.js';
import { countBytes, countError, countFallback, countTransfer, countWait, type Path } from './stats.js';
import { whenConnected } from './internal/when-connected.js';
import { takeBuffered } from './internal/node-buffered.js';

/**
 * How a direction moves its bytes natively.
 * - `splice`: socket -> pipe -> socket with splice(2); no user-space copy.
 * - `copy`: recv()/send() through one reused buffer, driven by the same
 *   readiness machinery (what a C copy proxy does).
 * - `auto`: the faster of the two for the sockets at hand, as measured by
 *   bench/proxy (see {@link AUTO_SPLICE}).
 */
export type SpliceMechanism = 'auto' | 'splice' | 'copy';

/** Options of {@link splice}. */
export interface SpliceOptions {
  /** Stop after this many bytes (default: until EOF on `from`). */
  length?: number;
  /** Half-close `to` (shutdown(SHUT_WR)) when `from` reaches EOF. Default true. */
  end?: boolean;
  /** Aborts the transfer: the promise rejects with an AbortError and both sockets are destroyed. */
  signal?: AbortSignal;
  /** Native mechanism; default `'auto'`. Ignored on the portable path. */
  mechanism?: SpliceMechanism;
}

/** Live counters of one direction (createProxy reads them for idle timeouts and logs). */
export interface SpliceProgress {
  /** Bytes delivered to `to` so far. */
  bytes: number;
  /** performance.now() of the last byte moved (or of the start). */
  lastActive: number;
  /** The path that moves bytes now ('splice', 'nativeCopy' or 'portable'). */
  path: Path | undefined;
  /** Bytes by path (the head Node had buffered counts as 'portable'). */
  byPath: Partial<Record<Path, number>>;
  /** Why the direction left the native path, if it did. */
  fallback?: string;
}

/** A fresh progress record. */
export function newProgress(): SpliceProgress {
  return { bytes: 0, lastActive: performance.now(), path: undefined, byPath: {} };
}

const MECHANISMS = ['auto', 'splice', 'copy'] as const;

/**
 * What `mechanism: 'auto'` picks, by transport of the two sockets; the
 * evidence is bench/proxy (docs/benchmarks-issue5.md):
 * - unix: splice. Between Unix sockets it moves 1.4-1.6x the bytes of the
 *   native copy at about half the CPU per GB.
 * - tcp-loopback: copy. Over this kernel's loopback TCP the native copy
 *   moves 10-20% more bytes per second than splice (which, in exchange, uses
 *   15-45% less CPU per GB: ask for `mechanism: 'splice'` to prefer that).
 * - tcp (a real NIC, not measurable here): splice, as HAProxy does: the
 *   bytes never cross into user space.
 * A pair with a loopback-TCP end copies.
 */
export const AUTO_SPLICE: Readonly<Record<'unix' | 'tcp-loopback' | 'tcp', 'splice' | 'copy'>> = {
  unix: 'splice',
  'tcp-loopback': 'copy',
  tcp: 'splice',
};

/** Bytes one direction moves per event-loop turn before yielding to others (nginx's sendfile_max_chunk). */
const TURN_BUDGET = 2 * 1024 * 1024;
/** Size of the shared recv buffer of the copy mechanism. */
const COPY_CHUNK = 256 * 1024;

const E = os.constants.errno;
const EAGAIN = -E.EAGAIN;
/** Errors that say "this fd pair can't do that here", not "the connection failed". */
const FALLBACK_ERRNO = new Set([-E.ENOSYS, -E.EBADF, -E.EINVAL, -E.EOPNOTSUPP]);

/** ENOSYS on splice is process-wide: latch it and stop trying. */
let spliceLatchedOff = false;

let K: Record<string, number> | undefined;
function k(): Record<string, number> {
  return (K ??= native!.spliceConstants());
}

/** One scratch buffer for every copying direction: the event loop is single-threaded and each recv is written out before the next. */
let scratch: Buffer | undefined;

interface StreamHandle {
  fd?: number;
  reading?: boolean;
  readStop?(): number;
}

function handleOf(s: net.Socket): StreamHandle | undefined {
  return (s as unknown as { _handle?: StreamHandle | null })._handle ?? undefined;
}

function isTls(s: net.Socket): boolean {
  return (s as { encrypted?: boolean }).encrypted === true;
}

/**
 * Moves the bytes `from` receives to `to` until EOF on `from` (or `length`
 * bytes), and resolves with the count. With `end: true` (the default) EOF
 * on `from` half-closes `to` (shutdown(SHUT_WR)), so protocols that rely on
 * half-close keep working; `false` leaves `to` open. Either way `from` then
 * ends as if Node had read the EOF, and emits 'end' (splice consumes it, as
 * pipe() does): without `allowHalfOpen`, Node then ends its writable side.
 *
 * On Linux with the addon the kernel moves the bytes (splice(2) through a
 * pooled pipe, or a native copy where that measures faster); TLS sockets,
 * and everything without the addon, take a portable copy through Node with
 * backpressure. Bytes Node had already read from `from` go first, and
 * writes the caller makes on `to` while a splice runs go out after it.
 *
 * On an error, a reset of either side, or `signal` aborting, both sockets
 * are destroyed (as `stream.pipeline` does) and the promise rejects; the
 * error carries `bytesTransferred`.
 *
 * While the kernel moves bytes, Node sees no traffic on these sockets:
 * `bytesRead`/`bytesWritten` don't count them (use the result, or
 * `stats()`), and `socket.setTimeout()` timers are refreshed by zcopy.
 *
 * @example
 * ```ts
 * import net from 'node:net';
 * import { splice } from 'zcopy';
 * net.createServer({ allowHalfOpen: true }, (client) => {
 *   const upstream = net.connect({ port: 8080, allowHalfOpen: true }, () => {
 *     void Promise.allSettled([splice(client, upstream), splice(upstream, client)]);
 *   });
 * }).listen(9000, '127.0.0.1');
 * ```
 */
export function splice(from: net.Socket, to: net.Socket, options?: SpliceOptions): Promise<number> {
  if (!(from instanceof net.Socket)) throw invalidArgType('from', 'an instance of net.Socket', from);
  if (!(to instanceof net.Socket)) throw invalidArgType('to', 'an instance of net.Socket', to);
  const o = validateObject('options', options);
  const length = validateOffset('options.length', o.length);
  if (o.end !== undefined && typeof o.end !== 'boolean') throw invalidArgType('options.end', 'of type boolean', o.end);
  const signal = validateSignal('options.signal', o.signal);
  const mechanism = validateOneOf('options.mechanism', o.mechanism, MECHANISMS) ?? 'auto';
  // A never-connected socket would never become readable/writable.
  const unconnected = notConnected(from) ?? notConnected(to);
  if (unconnected) return Promise.reject(unconnected);
  // Keep the caller's frame: the rejection happens turns later, in a poll callback.
  const site: { stack?: string } = {};
  Error.captureStackTrace(site, splice);
  return spliceSockets(from, to, { length, end: o.end ?? true, signal, mechanism }, newProgress()).catch((err: unknown) => {
    if (err instanceof Error && site.stack && err.stack && !err.stack.includes('\n    at splice ')) {
      err.stack = `${err.stack.split('\n')[0]}\n${site.stack.split('\n').slice(1).join('\n')}`;
    }
    throw err;
  });
}

/** Validated options of the internal entry point. */
export interface SpliceRequest {
  length: number | undefined;
  end: boolean;
  signal: AbortSignal | undefined;
  mechanism: SpliceMechanism;
}

/** Everything one direction needs while it runs. */
interface Ctx {
  from: net.Socket;
  to: net.Socket;
  limit: number;
  end: boolean;
  total: number;
  progress: SpliceProgress;
  cancel: Canceller;
  /** Our place in `to`'s write queue: earlier writes first, the caller's later ones after. */
  turn: SocketTurn;
}

/**
 * The engine behind {@link splice} (createProxy uses it for the live
 * counters). Arguments are already validated.
 * @internal
 */
export async function spliceSockets(from: net.Socket, to: net.Socket, req: SpliceRequest, progress: SpliceProgress): Promise<number> {
  const ctx: Ctx = {
    from,
    to,
    limit: req.length ?? Infinity,
    end: req.end,
    total: 0,
    progress,
    cancel: new Canceller(),
    // Taken synchronously, at the call: `splice(a, b); b.write(x)` sends x after.
    turn: enterSocket(to),
  };
  const onClose = () => ctx.cancel.cancel(new ZcopyError('ZCOPY_ERR_SOCKET_CLOSED', 'socket closed during splice', { bytesTransferred: ctx.total }));
  const onAbort = () => ctx.cancel.cancel(abortError(req.signal));
  // A failure of either socket before the splice ends is the splice's failure.
  const onError = (err: Error) => ctx.cancel.cancel(err);
  from.on('close', onClose);
  to.on('close', onClose);
  from.on('error', onError);
  to.on('error', onError);
  req.signal?.addEventListener('abort', onAbort, { once: true });
  if (req.signal?.aborted) onAbort();
  if (from.destroyed || to.destroyed) onClose();

  try {
    await ctx.cancel.race(Promise.all([whenConnected(from), whenConnected(to)]));
    await ctx.cancel.race(ctx.turn.ready);
    if (to.writableEnded) throw new ZcopyError('ZCOPY_ERR_SOCKET_CLOSED', 'cannot splice into a socket that has ended');
    if (ctx.limit === 0) return 0;
    const choice = choosePath(from, to, req.mechanism);
    const path = choice.path;
    if (choice.fallback) {
      countFallback(choice.fallback);
      progress.fallback = choice.fallback;
    }
    countTransfer(path);
    let eof: boolean;
    if (path === 'portable') {
      eof = await runPortable(ctx, undefined);
    } else {
      eof = await runNative(ctx, path === 'splice' ? 'splice' : 'copy');
    }
    ctx.turn.leave();
    if (eof && ctx.end) to.end();
    return ctx.total;
  } catch (err) {
    countError();
    const e = err instanceof Error ? err : new Error(String(err));
    const withBytes = e as Error & { bytesTransferred?: number };
    if (withBytes.bytesTransferred === undefined) withBytes.bytesTransferred = ctx.total;
    ctx.turn.leave();
    // Like stream.pipeline: a failed splice takes both connections down, so
    // both peers learn it now. No error argument: the promise reports it, and
    // an 'error' event nobody listens for would crash the process.
    from.destroy();
    to.destroy();
    throw e;
  } finally {
    ctx.turn.leave();
    from.off('close', onClose);
    to.off('close', onClose);
    from.off('error', onError);
    to.off('error', onError);
    req.signal?.removeEventListener('abort', onAbort);
  }
}

function transportOf(fd: number): 'unix' | 'tcp-loopback' | 'tcp' {
  const info = native!.sockInfo(fd);
  if (typeof info === 'number') return 'tcp';
  if (info[2] === C.AF_UNIX) return 'unix';
  return info[4] ? 'tcp-loopback' : 'tcp';
}

/** Picks the path for this pair of sockets, and the fallback reason when it is not the native one. */
function choosePath(from: net.Socket, to: net.Socket, requested: SpliceMechanism): { path: Path; fallback?: string } {
  if (native === null) {
    return { path: 'portable', fallback: process.env.ZCOPY_FORCE_FALLBACK === '1' ? 'forced' : 'no-native' };
  }
  if (isTls(from) || isTls(to)) return { path: 'portable', fallback: 'tls' };
  const inFd = fdOf(from);
  const outFd = fdOf(to);
  if (inFd < 0 || outFd < 0) return { path: 'portable', fallback: 'no-fd' };
  // Node already saw EOF: only its buffer is left, which Node itself forwards.
  if (from.readableEnded || !from.readable) {
    return { path: 'portable' };
  }
  const m = requested === 'auto' ? autoSplice(transportOf(inFd), transportOf(outFd)) : requested;
  if (m === 'splice' && spliceLatchedOff) return { path: 'nativeCopy', fallback: 'splice-ENOSYS' };
  return { path: m === 'splice' ? 'splice' : 'nativeCopy' };
}

type SockTransport = 'unix' | 'tcp-loopback' | 'tcp';

/** Both ends must favour splice: one loopback-TCP end makes it a copy. */
function autoSplice(from: SockTransport, to: SockTransport): 'splice' | 'copy' {
  return AUTO_SPLICE[from] === 'splice' && AUTO_SPLICE[to] === 'splice' ? 'splice' : 'copy';
}

/**
 * The path a direction between sockets of these transports starts on, as
 * the engine decides it (TLS, fd-less sockets and run-time fallbacks
 * aside): what `zcopy proxy` prints at start.
 * @internal
 */
export function spliceMechanismFor(requested: SpliceMechanism, from: SockTransport, to: SockTransport): 'splice' | 'nativeCopy' | 'portable' {
  if (native === null) return 'portable';
  const m = requested === 'auto' ? autoSplice(from, to) : requested;
  if (m === 'splice' && spliceLatchedOff) return 'nativeCopy';
  return m === 'splice' ? 'splice' : 'nativeCopy';
}

/** Stops Node reading `from` and keeps it stopped until restore(). */
interface ReadGuard {
  restore(restart: boolean): void;
}

function stopReading(s: net.Socket): ReadGuard {
  const h = handleOf(s);
  if (h?.readStop) {
    h.reading = false;
    h.readStop();
  }
  // Readable calls _read whenever it wants data (resume(), a 'data'
  // listener, read()); net.Socket's _read restarts the handle. Shadow it on
  // the instance so nothing restarts Node's reading behind us.
  const own = Object.prototype.hasOwnProperty.call(s, '_read');
  const saved = (s as unknown as { _read: (n: number) => void })._read;
  let wanted = false;
  Object.defineProperty(s, '_read', {
    configurable: true,
    writable: true,
    value() {
      wanted = true;
    },
  });
  let done = false;
  return {
    restore(restart) {
      if (done) return;
      done = true;
      if (own) (s as unknown as { _read: unknown })._read = saved;
      else delete (s as unknown as { _read?: unknown })._read;
      // Readable thinks a read is in flight (it called our shadow): start it for real.
      if (restart && wanted && !s.destroyed) saved.call(s, s.readableHighWaterMark);
    },
  };
}


function writeThrough(ctx: Ctx, buf: Buffer): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    ctx.turn.write(buf, (err) => (err ? reject(err) : resolve()));
  });
}

function account(ctx: Ctx, path: Path, n: number): void {
  ctx.total += n;
  ctx.progress.bytes += n;
  ctx.progress.byPath[path] = (ctx.progress.byPath[path] ?? 0) + n;
  countBytes(path, n);
}

/**
 * The kernel path. Resolves true at EOF on `from`, false when `limit` bytes
 * moved. Falls back to the portable path for this connection on
 * ENOSYS/EBADF/EINVAL.
 */
async function runNative(ctx: Ctx, mech: 'splice' | 'copy'): Promise<boolean> {
  const out = await nativeLoop(ctx, mech);
  if (out.kind === 'eof') return true;
  if (out.kind === 'limit') return false;
  // This pair can't be moved natively: go on through Node from here.
  return runPortable(ctx, out.head);
}

type Outcome = { kind: 'eof' } | { kind: 'limit' } | { kind: 'fallback'; head: Buffer | undefined };
const EOF: Outcome = { kind: 'eof' };
const LIMIT: Outcome = { kind: 'limit' };

/** What a direction does after a turn of syscalls. */
type Next = { kind: 'done'; outcome: Outcome } | { kind: 'yield' } | { kind: 'wait'; on: 'from' | 'to' };
const DONE_EOF: Next = { kind: 'done', outcome: EOF };
const DONE_LIMIT: Next = { kind: 'done', outcome: LIMIT };
const YIELD: Next = { kind: 'yield' };
const WAIT_FROM: Next = { kind: 'wait', on: 'from' };
const WAIT_TO: Next = { kind: 'wait', on: 'to' };
/** One step's result: progress made (the bytes it delivered to `to`, maybe 0), or what to do next. */
type Step = number | Next;

/**
 * The kernel path of one direction: the head Node already read first, then
 * turns of syscalls (at most TURN_BUDGET bytes each) separated by waits on
 * the connection's epoll set. Resolves at EOF, at `limit`, or with a
 * fallback to the portable path.
 */
async function nativeLoop(ctx: Ctx, mech: 'splice' | 'copy'): Promise<Outcome> {
  const { from, cancel } = ctx;
  const guard = stopReading(from);
  const mover = new NativeMover(ctx, mech);
  try {
    ctx.progress.path = mech === 'splice' ? 'splice' : 'nativeCopy';
    // Bytes Node already read go first, after Node's own pending writes.
    await cancel.race(ctx.turn.flushed());
    const head = takeBuffered(from, ctx.limit);
    if (head) {
      await cancel.race(writeThrough(ctx, head));
      account(ctx, 'portable', head.length);
    }
    cancel.throwIfCancelled();
    if (ctx.total >= ctx.limit) return LIMIT;
    try {
      mover.open();
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code !== 'EMFILE' && code !== 'ENFILE') throw e;
      // No fd for the epoll set: the portable path needs none.
      const reason = `epoll-${code}`;
      countFallback(reason);
      ctx.progress.fallback = reason;
      return { kind: 'fallback', head: undefined };
    }
    for (;;) {
      cancel.throwIfCancelled();
      const next = mover.turn();
      if (next.kind === 'done') return next.outcome;
      if (next.kind === 'yield') {
        // Budget spent while both sides were ready: let other connections run.
        await cancel.race(new Promise<void>((r) => setImmediate(r)));
      } else {
        await mover.wait(next.on);
      }
    }
  } finally {
    mover.close();
    if (cancel.error) {
      guard.restore(false);
    } else if (mover.eof) {
      guard.restore(false);
      // Node never read the EOF; tell its stream, as if it had, and consume
      // it as the portable path (and pipe()) does: 'end' is emitted, and a
      // socket without allowHalfOpen then ends its writable side too. Left
      // unconsumed, 'end' never came and such a client was never closed.
      from.push(null);
      from.resume();
    } else {
      // `length` reached or a fallback: Node may read `from` again.
      guard.restore(true);
    }
  }
}

/**
 * The state of one direction on the kernel path, and its syscalls.
 *
 * The syscalls use the fds Node owns, read from the sockets at the start of
 * each turn and never kept across an await: Node closes a socket's fd
 * synchronously in destroy(), so a number read from a live handle in this
 * turn is still that socket's (see src/internal/socket-poll.ts). No dup(2)
 * is made; an idle connection holds its two sockets and one epoll fd.
 */
class NativeMover {
  readonly #ctx: Ctx;
  #useSplice: boolean;
  #poll: SocketPoll | undefined;
  #pipe: Pipe | undefined;
  /** Bytes in the pipe, by our count (EAGAIN on socket -> pipe is ambiguous: socket empty, or pipe full). */
  #inPipe = 0;
  /** copy: received, not yet sent. */
  #pending: Buffer | undefined;
  #pendingOff = 0;
  /** The last wait was for `from`: an EAGAIN now may be a TCP urgent mark. */
  #suspectMark = false;
  /** EOF read on `from`. */
  eof = false;

  constructor(ctx: Ctx, mech: 'splice' | 'copy') {
    this.#ctx = ctx;
    this.#useSplice = mech === 'splice';
  }

  /** Joins the connection's epoll set; keeps a TCP urgent byte in the stream. */
  open(): void {
    const [fromFd] = this.#fds();
    // SO_OOBINLINE (as HAProxy sets it): an urgent byte is forwarded in
    // place, as an ordinary byte. Without it recv() drops it from the
    // stream, and splice() stops in front of it. A failure only means no
    // urgent data can arrive (not TCP), so it is not an error.
    native!.oobInline(fromFd);
    this.#poll = SocketPoll.acquire(this.#ctx.from, this.#ctx.to);
  }

  /** Leaves the epoll set (the last user closes it) and gives the pipe back, in this turn. */
  close(): void {
    this.#poll?.release();
    this.#poll = undefined;
    if (this.#pipe !== undefined) pipePool.release(this.#pipe, this.#inPipe === 0);
    this.#pipe = undefined;
  }

  /** Both fds as Node holds them now; a socket Node closed ends the direction. */
  #fds(): [number, number] {
    const f = fdOf(this.#ctx.from);
    const t = fdOf(this.#ctx.to);
    if (f < 0 || t < 0) throw new ZcopyError('ZCOPY_ERR_SOCKET_CLOSED', 'socket closed during splice', { bytesTransferred: this.#ctx.total });
    return [f, t];
  }

  /** Moves bytes until both sides block, the end, or the turn's budget. */
  turn(): Next {
    const [fromFd, toFd] = this.#fds();
    let moved = 0;
    try {
      while (moved < TURN_BUDGET) {
        const step = this.#useSplice ? this.#spliceStep(fromFd, toFd) : this.#copyStep(fromFd, toFd);
        if (typeof step !== 'number') return step;
        moved += step;
      }
      return YIELD;
    } finally {
      if (moved > 0) {
        this.#ctx.progress.lastActive = performance.now();
        refreshTimeouts(this.#ctx.from, this.#ctx.to);
      }
    }
  }

  /**
   * Waits until `from` is readable or `to` writable. Waiting on `from`
   * also watches `to` for a reset (an idle `from` would otherwise never
   * learn it).
   */
  async wait(on: 'from' | 'to'): Promise<void> {
    const { from, to, cancel } = this.#ctx;
    const C = k();
    countWait();
    const r = on === 'from' ? await this.#poll!.wait(from, C.EPOLLIN!, to, cancel) : await this.#poll!.wait(to, C.EPOLLOUT!, undefined, cancel);
    cancel.throwIfCancelled();
    this.#suspectMark = on === 'from';
    if (r.otherError) {
      // `to` was reset. Reading SO_ERROR clears it, and a direction that
      // reads `to` (a proxy's other half) would then see a plain EOF
      // instead of the reset: give it this turn to read it first.
      await cancel.race(new Promise<void>((res) => setImmediate(res)));
      const so = native!.sockError(this.#fds()[1]);
      throw systemError(so < 0 ? so : -E.EPIPE, this.#useSplice ? 'splice' : 'send');
    }
  }

  /** splice: one fill of the pipe from `from`, one drain of it into `to`. */
  #spliceStep(fromFd: number, toFd: number): Step {
    const ctx = this.#ctx;
    const n = native!;
    let progress = false;
    let delivered = 0;
    let drainBlocked = false;
    const want = ctx.limit - ctx.total - this.#inPipe;
    if (!this.eof && want > 0 && (this.#pipe === undefined || this.#inPipe < this.#pipe.capacity)) {
      if (this.#pipe === undefined) {
        try {
          this.#pipe = pipePool.acquire();
        } catch (e) {
          // Out of fds or pipe quota: copy instead; it needs none.
          this.#toCopy(`pipe-${(e as { code?: string }).code ?? 'error'}`);
          return 0;
        }
      }
      const r = n.splice(fromFd, this.#pipe.writeFd, Math.min(this.#pipe.capacity - this.#inPipe, want), 0);
      if (r > 0) {
        this.#inPipe += r;
        this.#suspectMark = false;
        progress = true;
      } else if (r === 0) {
        this.eof = true;
        progress = true;
      } else if (r === EAGAIN) {
        if (this.#inPipe === 0 && this.#suspectMark) progress = this.#stepOverMark(fromFd, want);
      } else {
        if (!FALLBACK_ERRNO.has(r)) throw systemError(r, 'splice');
        // This pair can't splice: move what the pipe holds by copying.
        if (r === -E.ENOSYS) spliceLatchedOff = true;
        this.#toCopy(`splice-${codeOf(r)}`);
        return 0;
      }
    }
    if (this.#inPipe > 0) {
      const w = n.splice(this.#pipe!.readFd, toFd, this.#inPipe, 0);
      if (w > 0) {
        this.#inPipe -= w;
        delivered = w;
        account(ctx, 'splice', w);
        progress = true;
      } else if (w === EAGAIN) {
        drainBlocked = true;
      } else {
        throw systemError(w === 0 ? -E.EIO : w, 'splice');
      }
    }
    if (this.#inPipe === 0 && (this.eof || ctx.total >= ctx.limit)) return this.eof ? DONE_EOF : DONE_LIMIT;
    if (progress) return delivered;
    // Nothing moved. With bytes in the pipe the drain was tried and
    // blocked: wait for `to`. With an empty pipe the fill was tried and
    // blocked; an empty pipe is never full, so `from` is drained: wait for
    // it, without holding a pipe while idle.
    if (drainBlocked) return WAIT_TO;
    pipePool.release(this.#pipe!, true);
    this.#pipe = undefined;
    return WAIT_FROM;
  }

  /**
   * `from` was reported readable, yet splice() said EAGAIN with the pipe
   * empty: TCP's splice stops in front of an urgent byte (tcp_read_sock),
   * and would say so forever while EPOLLIN stays set. recv() reads past the
   * mark (the byte itself included, with SO_OOBINLINE): put what it reads
   * in the empty pipe and carry on splicing. Returns whether it moved.
   */
  #stepOverMark(fromFd: number, want: number): boolean {
    const n = native!;
    this.#suspectMark = false;
    if (n.atMark(fromFd) !== 1) return false;
    const buf = (scratch ??= Buffer.allocUnsafe(COPY_CHUNK));
    const r = n.recv(fromFd, buf, 0, Math.min(buf.length, this.#pipe!.capacity, want));
    if (r === EAGAIN) return false;
    if (r < 0) throw systemError(r, 'recv');
    if (r === 0) {
      this.eof = true;
      return true;
    }
    // An empty pipe takes up to its capacity in one write.
    const w = n.write(this.#pipe!.writeFd, buf, 0, r);
    if (w !== r) throw systemError(w < 0 ? w : -E.EIO, 'write');
    this.#inPipe += r;
    return true;
  }

  /** Leaves splice for the native copy, from the current byte: what the pipe holds goes first. */
  #toCopy(reason: string): void {
    const ctx = this.#ctx;
    countFallback(reason);
    ctx.progress.fallback = reason;
    ctx.progress.path = 'nativeCopy';
    this.#useSplice = false;
    if (this.#pipe === undefined) return;
    if (this.#inPipe > 0) {
      this.#pending = drainPipe(this.#pipe, this.#inPipe);
      this.#pendingOff = 0;
      this.#inPipe = 0;
    }
    pipePool.release(this.#pipe, true);
    this.#pipe = undefined;
  }

  /** copy: send what is pending, or one recv() into the shared buffer and a send() of it. */
  #copyStep(fromFd: number, toFd: number): Step {
    const ctx = this.#ctx;
    const n = native!;
    let progress = false;
    let delivered = 0;
    let drainBlocked = false;
    if (this.#pending !== undefined) {
      const p = this.#pending;
      const w = n.write(toFd, p, this.#pendingOff, p.length - this.#pendingOff);
      if (w > 0) {
        this.#pendingOff += w;
        delivered = w;
        account(ctx, 'nativeCopy', w);
        progress = true;
        if (this.#pendingOff === p.length) this.#pending = undefined;
      } else if (w === EAGAIN) {
        drainBlocked = true;
      } else if (FALLBACK_ERRNO.has(w)) {
        return { kind: 'done', outcome: fallback(ctx, w, p.subarray(this.#pendingOff)) };
      } else {
        throw systemError(w, 'send');
      }
    } else if (!this.eof && ctx.total < ctx.limit) {
      const buf = (scratch ??= Buffer.allocUnsafe(COPY_CHUNK));
      const r = n.recv(fromFd, buf, 0, Math.min(buf.length, ctx.limit - ctx.total));
      if (r > 0) {
        progress = true;
        const w = n.write(toFd, buf, 0, r);
        if (w === r) {
          delivered = w;
          account(ctx, 'nativeCopy', w);
        } else if (w >= 0 || w === EAGAIN) {
          const sent = w > 0 ? w : 0;
          delivered = sent;
          account(ctx, 'nativeCopy', sent);
          // Keep only the unsent tail; the scratch buffer is shared.
          this.#pending = Buffer.from(buf.subarray(sent, r));
          this.#pendingOff = 0;
        } else if (FALLBACK_ERRNO.has(w)) {
          return { kind: 'done', outcome: fallback(ctx, w, Buffer.from(buf.subarray(0, r))) };
        } else {
          throw systemError(w, 'send');
        }
      } else if (r === 0) {
        this.eof = true;
        progress = true;
      } else if (r !== EAGAIN) {
        if (FALLBACK_ERRNO.has(r)) return { kind: 'done', outcome: fallback(ctx, r, undefined) };
        throw systemError(r, 'recv');
      }
    }
    if (this.#pending === undefined && (this.eof || ctx.total >= ctx.limit)) return this.eof ? DONE_EOF : DONE_LIMIT;
    if (progress) return delivered;
    return this.#pending !== undefined || drainBlocked ? WAIT_TO : WAIT_FROM;
  }
}

function codeOf(errno: number): string {
  return systemError(errno, 'splice').code;
}

function fallback(ctx: Ctx, errno: number, head: Buffer | undefined): Outcome {
  const reason = `copy-${codeOf(errno)}`;
  countFallback(reason);
  ctx.progress.fallback = reason;
  return { kind: 'fallback', head };
}

/** Reads what a pipe holds (the splice path failed mid-stream). */
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

/** Node's own socket timeouts count only Node's I/O; keep them honest. */
function refreshTimeouts(a: net.Socket, b: net.Socket): void {
  (a as unknown as { _unrefTimer?: () => void })._unrefTimer?.();
  if (b !== a) (b as unknown as { _unrefTimer?: () => void })._unrefTimer?.();
}

/**
 * The portable path: Node reads `from`, writes `to`, with backpressure.
 * `head` (bytes a failed native path still owed) goes first.
 */
async function runPortable(ctx: Ctx, head: Buffer | undefined): Promise<boolean> {
  const { from, cancel } = ctx;
  ctx.progress.path = 'portable';
  if (head && head.length > 0) {
    await cancel.race(writeThrough(ctx, head));
    account(ctx, 'portable', head.length);
  }
  if (ctx.total >= ctx.limit) return false;
  let pendingWrites = 0;
  let eof = false;
  let stopped = false;
  let settle: ((eof: boolean) => void) | undefined;
  let waitingDrain = false;
  const finished = new Promise<boolean>((resolve) => {
    settle = resolve;
  });
  const maybeDone = () => {
    if (stopped && pendingWrites === 0) settle?.(eof);
  };
  const onDrain = () => {
    waitingDrain = false;
    if (!stopped) from.resume();
  };
  const stop = () => {
    stopped = true;
    from.off('data', onData);
    from.off('end', onEnd);
    ctx.to.off('drain', onDrain);
  };
  const onData = (chunk: Buffer | string) => {
    let c = typeof chunk === 'string' ? Buffer.from(chunk, (from.readableEncoding ?? 'utf8') as BufferEncoding) : chunk;
    const room = ctx.limit - ctx.total;
    let last = false;
    if (c.length >= room) {
      last = true;
      from.pause();
      if (c.length > room) from.unshift(c.subarray(room));
      c = c.subarray(0, room);
    }
    account(ctx, 'portable', c.length);
    ctx.progress.lastActive = performance.now();
    pendingWrites++;
    const ok = ctx.turn.write(c, () => {
      pendingWrites--;
      maybeDone();
    });
    if (last) {
      stop();
      maybeDone();
    } else if (!ok && !waitingDrain) {
      waitingDrain = true;
      from.pause();
      ctx.to.once('drain', onDrain);
    }
  };
  const onEnd = () => {
    eof = true;
    stop();
    maybeDone();
  };
  from.on('data', onData);
  from.once('end', onEnd);
  from.resume();
  try {
    return await cancel.race(finished);
  } finally {
    if (!stopped) {
      stop();
      from.pause();
    }
  }
}
