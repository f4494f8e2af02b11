// One private epoll set per forwarded connection, shared by its two
// directions (issue 8 item 10: fds per idle connection).
//
// Why a private set: a uv_poll on a socket also asks for UV_DISCONNECT
// (EPOLLRDHUP, level-triggered), so a direction waiting to write to a peer
// that half-closed would be woken forever; and libuv refuses a second poll on
// the fd Node already watches. An epoll set of our own, watched by one
// uv_poll (FdWatch), is woken only by what a direction asked for.
//
// Why one set per connection, holding Node's own fds: a proxied connection
// then costs its two sockets and this one epoll fd, also while idle
// (HAProxy: 2-3). The sockets are registered by the fd numbers Node owns,
// with no dup(2): every syscall here and in splice.ts runs on the main
// thread, and reads the fd from `socket._handle` in the same synchronous turn
// that uses it. Node closes a socket's fd synchronously in destroy(), and
// sets `_handle` to null in the same call, so a number read from a live
// handle cannot have been closed and reused yet. After a close, the kernel
// drops the registration by itself (the file is gone); an EPOLL_CTL_DEL is
// only issued while the socket still owns its fd, so a reused number is
// never touched. The set is closed when the last direction using it ends,
// which also drops any registration a still-open dup elsewhere kept alive.
import type net from 'node:net';
import { native } from '../native.js';
import { systemError } from '../errors.js';
import { FdWatch, READABLE } from './fd-watch.js';
import type { Canceller } from './cancel.js';

/** What a wait returns. */
export interface PollResult {
  /** Events reported for the awaited socket (0 when woken for `other`). */
  events: number;
  /** `other` reported EPOLLERR (it was reset): the caller decides what that means. */
  otherError: boolean;
}

interface Registration {
  readonly sock: net.Socket;
  /** The fd number registered (the socket's, at the time). */
  readonly fd: number;
  readonly tag: number;
  /** Registered interest; -1 when not in the set. */
  mask: number;
  /** EPOLLHUP seen: no longer watched for errors alone (it would wake every wait). */
  hup: boolean;
}

interface Waiter {
  readonly reg: Registration;
  readonly events: number;
  readonly other: Registration | undefined;
  resolve(r: PollResult): void;
  reject(err: Error): void;
  off(): void;
}

let K: Record<string, number> | undefined;
function k(): Record<string, number> {
  return (K ??= native!.spliceConstants());
}

/** The fd Node holds for `s` now, or -1 once it is closed. */
export function fdOf(s: net.Socket): number {
  const fd = (s as unknown as { _handle?: { fd?: number } | null })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : -1;
}

const sets = new WeakMap<net.Socket, SocketPoll>();

export class SocketPoll {
  readonly #regs: Registration[] = [];
  readonly #waiters = new Set<Waiter>();
  readonly #evbuf = new Int32Array(16);
  #watch: FdWatch;
  #users = 0;
  #armed = false;
  #rearm: NodeJS.Immediate | undefined;
  #closed = false;

  private constructor(watch: FdWatch) {
    this.#watch = watch;
  }

  /**
   * The set of the connection `a` <-> `b` (either order), created on first
   * use. Each acquire() is matched by one release(). Throws a system error
   * when no epoll fd can be made (EMFILE).
   */
  static acquire(a: net.Socket, b: net.Socket): SocketPoll {
    const found = sets.get(a);
    if (found && !found.#closed && found.#has(a) && found.#has(b)) {
      found.#users++;
      return found;
    }
    const n = native!;
    const ep = n.epollNew();
    if (ep < 0) throw systemError(ep, 'epoll_create1');
    let watch: FdWatch;
    try {
      watch = FdWatch.dup(ep);
    } finally {
      n.close(ep);
    }
    const set = new SocketPoll(watch);
    set.#add(a);
    set.#add(b);
    set.#users = 1;
    if (!sets.has(a)) sets.set(a, set);
    if (!sets.has(b)) sets.set(b, set);
    return set;
  }

  /** One user is done; the last one closes the epoll fd, in this turn. */
  release(): void {
    if (--this.#users > 0 || this.#closed) return;
    this.#closed = true;
    if (this.#rearm) clearImmediate(this.#rearm);
    for (const w of [...this.#waiters]) this.#settle(w);
    for (const r of this.#regs) {
      if (sets.get(r.sock) === this) sets.delete(r.sock);
    }
    // Closing the epoll fd drops every registration with it.
    this.#watch.close();
  }

  /**
   * Resolves once `target` is ready for `events` (EPOLLIN or EPOLLOUT) or
   * reports an error or hang-up, or once `other` reports an error (its reset
   * must end a wait on an idle `target`). A peer's half-close (EPOLLRDHUP) is
   * never asked for. Rejects with the canceller's error when it fires.
   */
  wait(target: net.Socket, events: number, other: net.Socket | undefined, cancel: Canceller): Promise<PollResult> {
    if (cancel.error) return Promise.reject(cancel.error);
    if (this.#closed) return Promise.reject(systemError(-9, 'epoll_wait'));
    const reg = this.#regs.find((r) => r.sock === target);
    const oreg = other === undefined ? undefined : this.#regs.find((r) => r.sock === other);
    if (reg === undefined) return Promise.reject(new Error('zcopy: socket not in this poll set'));
    return new Promise<PollResult>((resolve, reject) => {
      const w: Waiter = {
        reg,
        events,
        other: oreg,
        resolve,
        reject,
        off: () => {},
      };
      this.#waiters.add(w);
      w.off = cancel.onCancel((err) => {
        if (!this.#waiters.delete(w)) return;
        reject(err);
        if (this.#closed) return;
        try {
          this.#update();
        } catch {
          // Only less interest is asked for here; a failure leaves a
          // registration that the set's close drops.
        }
      });
      try {
        this.#arm();
      } catch (err) {
        this.#waiters.delete(w);
        w.off();
        reject(err as Error);
      }
    });
  }

  #has(s: net.Socket): boolean {
    return this.#regs.some((r) => r.sock === s);
  }

  #add(s: net.Socket): void {
    if (this.#has(s)) return;
    this.#regs.push({ sock: s, fd: fdOf(s), tag: this.#regs.length + 1, mask: -1, hup: false });
  }

  #settle(w: Waiter, r: PollResult = { events: k().EPOLLERR!, otherError: false }): void {
    if (!this.#waiters.delete(w)) return;
    w.off();
    w.resolve(r);
  }

  /** Sets each socket's interest to what the waiters need now, then polls if anyone waits. */
  #arm(): void {
    this.#update();
    if (this.#armed || this.#waiters.size === 0 || this.#closed) return;
    this.#armed = true;
    this.#watch.wait(READABLE).then(
      () => this.#fired(),
      (err: Error) => {
        this.#armed = false;
        if (this.#closed) return;
        for (const w of [...this.#waiters]) {
          this.#waiters.delete(w);
          w.off();
          w.reject(err);
        }
      },
    );
  }

  /**
   * Brings the kernel's interest in line with the waiters. A socket is in
   * the set only while a waiter awaits it, or watches it for errors and it
   * has not hung up: an unwatched socket's EPOLLERR/EPOLLHUP, always
   * reported and level-triggered, would otherwise wake the set forever.
   */
  #update(): void {
    const C = k();
    const n = native!;
    for (const r of this.#regs) {
      let want = 0;
      let needed = false;
      for (const w of this.#waiters) {
        if (w.reg === r) {
          want |= w.events;
          needed = true;
        } else if (w.other === r && !r.hup) {
          needed = true;
        }
      }
      if (fdOf(r.sock) !== r.fd || r.fd < 0) {
        // Node closed it: the kernel dropped the registration with the file.
        // Whoever waits on it learns it from its next syscall.
        r.mask = -1;
        for (const w of [...this.#waiters]) if (w.reg === r || w.other === r) this.#settle(w);
        continue;
      }
      if (!needed) {
        if (r.mask >= 0) {
          n.epollCtl(this.#watch.fd, C.EPOLL_CTL_DEL!, r.fd, 0, r.tag);
          r.mask = -1;
        }
        continue;
      }
      if (r.mask === want) continue;
      const op = r.mask < 0 ? C.EPOLL_CTL_ADD! : C.EPOLL_CTL_MOD!;
      const e = n.epollCtl(this.#watch.fd, op, r.fd, want, r.tag);
      if (e < 0) throw systemError(e, 'epoll_ctl');
      r.mask = want;
    }
  }

  #fired(): void {
    this.#armed = false;
    if (this.#closed) return;
    const C = k();
    const cnt = native!.epollWait(this.#watch.fd, this.#evbuf);
    for (let i = 0; i < cnt; i++) {
      const r = this.#regs[this.#evbuf[2 * i]! - 1];
      const ev = this.#evbuf[2 * i + 1]!;
      if (r === undefined) continue;
      if (ev & C.EPOLLHUP!) r.hup = true;
      for (const w of [...this.#waiters]) {
        if (w.reg === r) {
          if (ev & (w.events | C.EPOLLERR! | C.EPOLLHUP!)) this.#settle(w, { events: ev, otherError: false });
        } else if (w.other === r && ev & C.EPOLLERR!) {
          this.#settle(w, { events: 0, otherError: true });
        }
      }
    }
    if (this.#waiters.size === 0) return;
    // Poll again for those still waiting, once the directions just woken
    // have run and asked for their next wait: their interest is then
    // current, and unchanged interest costs no epoll_ctl.
    this.#rearm ??= setImmediate(() => {
      this.#rearm = undefined;
      if (this.#closed) return;
      try {
        this.#arm();
      } catch (err) {
        for (const w of [...this.#waiters]) {
          this.#waiters.delete(w);
          w.off();
          w.reject(err as Error);
        }
      }
    });
  }
}
