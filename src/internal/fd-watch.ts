// A private dup of a socket fd with a lazily created readiness poll.
//
// zcopy makes its syscalls on the dup, never on the fd libuv owns: a second
// uv_poll on libuv's fd hangs or asserts (libuv #2058, #2387), and a worker
// thread using Node's fd number could race with Node closing it and the
// number being reused. The dup keeps the connection open after Node closes
// its socket, so the owner must close() this watch on the socket's 'close'.
import { native, type PollerHandle } from '../native.js';
import { systemError } from '../errors.js';

/** Events for {@link FdWatch.wait}. */
export const READABLE = 1;
export const WRITABLE = 2;

interface Waiter {
  resolve(events: number): void;
  reject(err: Error): void;
  /** Set for a pump: its end. */
  pumped?(r: PumpResult): void;
}

/** How a {@link FdWatch.pump} ended. */
export interface PumpResult {
  /** Bytes sendfile moved during the pump. */
  moved: number;
  /**
   * 0: the range is sent (or, with `moved` short of it, the file ended);
   * -EAGAIN: the pump's time is up, more is left; else sendfile's -errno.
   */
  result: number;
}

export class FdWatch {
  /** The private dup: pass this to syscalls. -1 once closed. */
  fd: number;
  #poller: PollerHandle | undefined;
  #waiter: Waiter | undefined;
  #closed = false;
  #unreported = 0;

  private constructor(fd: number) {
    this.fd = fd;
  }

  /** Dups `fd`. Throws a system error ('dup') if the fd is not open. */
  static dup(fd: number): FdWatch {
    const n = native!;
    const r = n.dup(fd);
    if (r < 0) throw systemError(r, 'dup');
    return new FdWatch(r);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** True while a wait() is pending. */
  get waiting(): boolean {
    return this.#waiter !== undefined;
  }

  /**
   * Resolves with the ready events (bit 1 readable, 2 writable, 4
   * disconnect or error: the next syscall says which) once the fd is ready
   * for `events`; level-triggered, so an idle peer costs no CPU. Only one
   * wait at a time. The registration outlives the wait (cheap re-waits) and
   * is dropped at the first wake-up with no wait pending.
   */
  wait(events: number): Promise<number> {
    if (this.#closed) return Promise.reject(systemError(-9, 'poll'));
    if (this.#waiter) return Promise.reject(new Error('zcopy: concurrent wait on one FdWatch'));
    const n = native!;
    const made = this.#ensurePoller();
    if (made) return Promise.reject(made);
    const r = n.pollerStart(this.#poller!, events);
    if (r < 0) return Promise.reject(systemError(r, 'uv_poll_start'));
    return new Promise<number>((resolve, reject) => {
      this.#waiter = { resolve, reject };
    });
  }

  /**
   * Waits for writability and sends `[offset, offset + count)` of `inFd`
   * with sendfile at every wake-up, in native code, until the range is sent,
   * sendfile fails, or `maxMs` passed; no second sendfile in a wake-up past
   * `budget` bytes (then other I/O runs), and one sendfile moves at most
   * what the socket's free send buffer takes. The range must be in the page cache (sendfile
   * runs on the loop thread). A socket drained by its reader in many small
   * steps so costs a sendfile per wake-up and no JavaScript. If the pump is
   * cancelled or closed, {@link takePumped} says what it had sent.
   */
  pump(inFd: number, offset: number, count: number, budget: number, maxMs: number): Promise<PumpResult> {
    if (this.#closed) return Promise.reject(systemError(-9, 'poll'));
    if (this.#waiter) return Promise.reject(new Error('zcopy: concurrent wait on one FdWatch'));
    const n = native!;
    const made = this.#ensurePoller();
    if (made) return Promise.reject(made);
    const r = n.pollerPump(this.#poller!, inFd, offset, count, budget, maxMs);
    if (r < 0) return Promise.reject(systemError(r, 'uv_poll_start'));
    return new Promise<PumpResult>((resolve, reject) => {
      this.#waiter = { resolve: () => {}, reject, pumped: resolve };
    });
  }

  /** Creates the poll on first use; returns the error if it cannot. */
  #ensurePoller(): Error | undefined {
    if (this.#poller !== undefined) return undefined;
    const p = native!.pollerNew(this.fd, (status, ev, moved, result) => this.#onPoll(status, ev, moved, result));
    if (typeof p === 'number') return systemError(p, 'uv_poll_init');
    this.#poller = p;
    return undefined;
  }

  /** Bytes a cancelled or closed pump had sent (reported once). */
  takePumped(): number {
    const m = this.#unreported;
    this.#unreported = 0;
    return m;
  }

  #onPoll(status: number, events: number, moved = 0, result = 0): void {
    const w = this.#waiter;
    this.#waiter = undefined;
    // The poll stays registered after a wait it ends: the owner usually does
    // its I/O in this same turn and waits again for the same events, and a
    // registration kept saves the epoll_ctl calls of stopping and starting
    // it per wait. Level-triggered, so a readiness nobody waits for would
    // wake every loop turn: the first such wake-up stops the poll.
    if (!w) {
      if (this.#poller) native!.pollerStop(this.#poller);
      return;
    }
    if (w.pumped) {
      w.pumped({ moved, result });
      return;
    }
    // libuv reports EPOLLERR as status UV_EBADF even when the fd is fine
    // (a reset peer, say). Report "ready": the next syscall on the fd tells
    // the real error (ECONNRESET, EPIPE), with its own syscall name.
    w.resolve(status < 0 ? events | 4 : events);
  }

  /** Rejects a pending wait() with `err` and stops polling. */
  cancel(err: Error): void {
    const w = this.#waiter;
    this.#waiter = undefined;
    if (this.#poller) this.#unreported += native!.pollerStop(this.#poller);
    w?.reject(err);
  }

  /** Stops the poll (synchronously out of epoll), then closes the dup. */
  close(err?: Error): void {
    if (this.#closed) return;
    this.#closed = true;
    const w = this.#waiter;
    this.#waiter = undefined;
    if (this.#poller) {
      this.#unreported += native!.pollerClose(this.#poller);
      this.#poller = undefined;
    }
    native!.close(this.fd);
    this.fd = -1;
    w?.reject(err ?? systemError(-9, 'poll'));
  }
}
