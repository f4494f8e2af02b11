// A bounded pool of kernel pipes for socket -> pipe -> socket splicing.
//
// Creating a pipe and growing it with F_SETPIPE_SZ costs three syscalls and
// a slot array; a proxy under load would pay that for every burst. The pool
// keeps up to `maxIdle` empty pipes and hands them out again. A pipe that
// may still hold bytes is closed, never reused (HAProxy `src/pipe.c`):
// another connection would otherwise receive them. Idle pipes are trimmed by
// an unref'd timer so a long-lived process gives its fds back. The pool is
// sized to the process's fd limit: a pool of 64 idle pipes (128 fds) would
// take half of what `ulimit -n 256` leaves a proxy for its connections.
import { readFileSync } from 'node:fs';
import { native } from '../native.js';
import { systemError } from '../errors.js';

/** A non-blocking pipe: read end, write end, and the capacity the kernel granted. */
export interface Pipe {
  readonly readFd: number;
  readonly writeFd: number;
  readonly capacity: number;
}

/** Largest pipe the kernel lets us make (/proc/sys/fs/pipe-max-size, 1 MiB by default). */
const DEFAULT_SIZE = 1 << 20;
const DEFAULT_MAX_IDLE = 64;

/**
 * Idle pipes to keep: 1/32 of the soft RLIMIT_NOFILE in fds (each pipe is
 * two), between 2 and 64 pipes. Node raises the soft limit to the hard one
 * at start, so this is 64 unless the fd limit is small.
 */
export function maxIdleForLimit(nofile: number): number {
  return Math.max(2, Math.min(DEFAULT_MAX_IDLE, Math.floor(nofile / 64)));
}

function softNoFile(): number {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    if (m) return Number(m[1]);
  } catch {
    // Not Linux, or no /proc: no limit known.
  }
  return Infinity;
}
const TRIM_MS = 10_000;

export class PipePool {
  readonly size: number;
  readonly maxIdle: number;
  #idle: Pipe[] = [];
  #inUse = 0;
  #lastUse = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(size = DEFAULT_SIZE, maxIdle = maxIdleForLimit(softNoFile())) {
    this.size = size;
    this.maxIdle = maxIdle;
  }

  /** Pipes handed out and not yet released. */
  get inUse(): number {
    return this.#inUse;
  }

  /** Empty pipes waiting in the pool. */
  get idle(): number {
    return this.#idle.length;
  }

  /** An empty pipe from the pool, or a new one. Throws a system error ('pipe') on EMFILE and the like. */
  acquire(): Pipe {
    let p = this.#idle.pop();
    if (p === undefined) {
      const r = native!.pipe(this.size);
      if (typeof r === 'number') throw systemError(r, 'pipe');
      p = { readFd: r[0], writeFd: r[1], capacity: r[2] };
    }
    this.#inUse++;
    this.#lastUse = Date.now();
    return p;
  }

  /**
   * Gives a pipe back. `empty` is the caller's own count; the kernel's
   * (FIONREAD) must agree, or the pipe is closed. A full pool closes it too.
   */
  release(p: Pipe, empty: boolean): void {
    this.#inUse--;
    if (empty && this.#idle.length < this.maxIdle && native!.fionread(p.readFd) === 0) {
      this.#idle.push(p);
      this.#armTrim();
      return;
    }
    closePipe(p);
  }

  /** Closes every idle pipe (tests compare fd counts; shutdown frees fds). */
  drain(): void {
    for (const p of this.#idle.splice(0)) closePipe(p);
    if (this.#timer) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
  }

  #armTrim(): void {
    if (this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      // Unused for a whole period: the burst is over, give the fds back.
      if (Date.now() - this.#lastUse >= TRIM_MS) this.drain();
      else if (this.#idle.length > 0) this.#armTrim();
    }, TRIM_MS);
    this.#timer.unref();
  }
}

function closePipe(p: Pipe): void {
  native!.close(p.readFd);
  native!.close(p.writeFd);
}

/** The process-wide pool used by splice() and createProxy(). */
export const pipePool = new PipePool();
