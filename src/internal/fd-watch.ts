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
}

export class FdWatch {
  /** The private dup: pass this to syscalls. -1 once closed. */
  fd: number;
  #poller: PollerHandle | undefined;
  #waiter: Waiter | undefined;
  #closed = false;

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
    if (this.#poller === undefined) {
      const p = n.pollerNew(this.fd, (status, ev) => this.#onPoll(status, ev));
      if (typeof p === 'number') return Promise.reject(systemError(p, 'uv_poll_init'));
      this.#poller = p;
    }
    const r = n.pollerStart(this.#poller, events);
    if (r < 0) return Promise.reject(systemError(r, 'uv_poll_start'));
    return new Promise<number>((resolve, reject) => {
      this.#waiter = { resolve, reject };
    });
  }

  #onPoll(status: number, events: number): void {
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
    // libuv reports EPOLLERR as status UV_EBADF even when the fd is fine
    // (a reset peer, say). Report "ready": the next syscall on the fd tells
    // the real error (ECONNRESET, EPIPE), with its own syscall name.
    w.resolve(status < 0 ? events | 4 : events);
  }

  /** Rejects a pending wait() with `err` and stops polling. */
  cancel(err: Error): void {
    const w = this.#waiter;
    this.#waiter = undefined;
    if (this.#poller) native!.pollerStop(this.#poller);
    w?.reject(err);
  }

  /** Stops the poll (synchronously out of epoll), then closes the dup. */
  close(err?: Error): void {
    if (this.#closed) return;
    this.#closed = true;
    const w = this.#waiter;
    this.#waiter = undefined;
    if (this.#poller) {
      native!.pollerClose(this.#poller);
      this.#poller = undefined;
    }
    native!.close(this.fd);
    this.fd = -1;
    w?.reject(err ?? systemError(-9, 'poll'));
  }
}
