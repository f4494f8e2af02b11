/**
 * BufferPool: reference-counted, reusable Buffers of one size, so a hot loop
 * (a copy loop, a frame reader) reuses a few buffers instead of allocating
 * one per chunk and leaving them to the garbage collector.
 *
 * Every pooled Buffer owns its ArrayBuffer (`Buffer.allocUnsafeSlow`), which
 * is how the pool recognises it, including from a `subarray` of it. The pool
 * holds only idle buffers: one acquired and never released is simply
 * collected. In debug mode a FinalizationRegistry reports such leaks.
 *
 * Pure TypeScript: identical with or without the native addon.
 *
 * @module
 */
import { ZcopyError, invalidArgType, outOfRange } from './errors.js';

/** Options of {@link BufferPool}. */
export interface BufferPoolOptions {
  /** Bytes per buffer. Default 64 KiB. */
  size?: number;
  /** Idle buffers kept for reuse; extra released buffers are left to the GC. Default 64. */
  max?: number;
  /**
   * Report buffers that were garbage-collected without `release()`: `true`
   * emits a process warning (code `ZCOPY_POOL_LEAK`) with the stack that
   * acquired the buffer; a function receives the report instead. Released
   * buffers are also filled with 0xdb so a use after release shows.
   * Default: `process.env.ZCOPY_DEBUG_POOL === '1'`.
   */
  debug?: boolean | ((leak: PoolLeak) => void);
}

/** A buffer collected while still acquired (debug mode). */
export interface PoolLeak {
  /** The pool's buffer size. */
  size: number;
  /** Stack of the `acquire()` call. */
  stack: string;
}

/** Counters of a {@link BufferPool}. */
export interface BufferPoolStats {
  size: number;
  max: number;
  /** Buffers waiting in the pool. */
  idle: number;
  /** Buffers acquired and not yet released (or collected). */
  outstanding: number;
  /** Buffers allocated since the pool was made. */
  created: number;
  /** acquire() calls served from the idle list. */
  reused: number;
  /** Buffers collected without release (debug mode only). */
  leaked: number;
}

interface Entry {
  refs: number;
  /** The whole pooled Buffer (the caller may release a subarray of it). */
  buf: Buffer;
  /** Acquire stack, debug mode only. */
  stack: string | undefined;
}

const POISON = 0xdb;

/**
 * A pool of equally sized Buffers with reference counts.
 *
 * `acquire()` hands out a buffer with a count of 1; `retain(buf)` adds a
 * holder; `release(buf)` drops one, and the last release returns the
 * buffer to the pool. Releasing more often than acquired/retained, or a
 * buffer of another pool, throws `ZCOPY_ERR_POOL`. A released buffer may be
 * handed out again at once: never touch it after your last `release()`.
 * Its bytes are not cleared between uses (like `Buffer.allocUnsafe`).
 *
 * @example
 * ```ts
 * const pool = new BufferPool({ size: 64 * 1024, max: 256 });
 * const b = pool.acquire();
 * const n = fs.readSync(fd, b, 0, b.length, pos);
 * socket.write(b.subarray(0, n), () => pool.release(b));
 * ```
 */
export class BufferPool {
  /** Bytes per buffer. */
  readonly size: number;
  /** Idle buffers kept. */
  readonly max: number;
  #idle: Buffer[] = [];
  /** Buffers of this pool, by their own ArrayBuffer: subarrays are recognised too. */
  #entries = new WeakMap<ArrayBufferLike, Entry>();
  #outstanding = 0;
  #created = 0;
  #reused = 0;
  #leaked = 0;
  #onLeak: ((leak: PoolLeak) => void) | undefined;
  #registry: FinalizationRegistry<string> | undefined;

  constructor(options: BufferPoolOptions = {}) {
    if (options === null || typeof options !== 'object') throw invalidArgType('options', 'of type object', options);
    this.size = int('options.size', options.size, 64 * 1024, 1, 2 ** 31 - 1);
    this.max = int('options.max', options.max, 64, 0, 2 ** 31 - 1);
    const debug = options.debug ?? process.env.ZCOPY_DEBUG_POOL === '1';
    if (typeof debug === 'function') this.#onLeak = debug;
    else if (typeof debug !== 'boolean') throw invalidArgType('options.debug', 'of type boolean or function', debug);
    else if (debug) this.#onLeak = warnLeak;
    if (this.#onLeak !== undefined) {
      const onLeak = this.#onLeak;
      const size = this.size;
      this.#registry = new FinalizationRegistry((stack) => {
        this.#leaked++;
        this.#outstanding--;
        onLeak({ size, stack });
      });
    }
  }

  /** A buffer of `size` bytes with a reference count of 1. Never fails: beyond the idle ones it allocates. */
  acquire(): Buffer {
    let buf = this.#idle.pop();
    let entry: Entry;
    if (buf !== undefined) {
      this.#reused++;
      entry = this.#entries.get(buf.buffer)!;
    } else {
      buf = Buffer.allocUnsafeSlow(this.size);
      this.#created++;
      entry = { refs: 0, buf, stack: undefined };
      this.#entries.set(buf.buffer, entry);
    }
    entry.refs = 1;
    this.#outstanding++;
    if (this.#registry !== undefined) {
      const site: { stack?: string } = {};
      Error.captureStackTrace(site, this.acquire);
      entry.stack = site.stack ?? '';
      this.#registry.register(buf.buffer, entry.stack, entry);
    }
    return buf;
  }

  #entry(buf: unknown, what: string): Entry {
    if (!(buf instanceof Uint8Array)) throw invalidArgType('buf', 'an instance of Buffer or Uint8Array', buf);
    const entry = this.#entries.get(buf.buffer);
    if (entry === undefined) throw new ZcopyError('ZCOPY_ERR_POOL', `Cannot ${what} a buffer that does not belong to this pool`);
    if (entry.refs === 0) {
      throw new ZcopyError('ZCOPY_ERR_POOL', what === 'release'
        ? 'Buffer released more times than it was acquired and retained (double release)'
        : 'Cannot retain a buffer that was already released to the pool');
    }
    return entry;
  }

  /** Adds a holder to an acquired buffer (or a subarray of one); returns `buf`. */
  retain<T extends Uint8Array>(buf: T): T {
    this.#entry(buf, 'retain').refs++;
    return buf;
  }

  /** Drops a holder; the last release returns the buffer to the pool. */
  release(buf: Uint8Array): void {
    const entry = this.#entry(buf, 'release');
    if (--entry.refs > 0) return;
    this.#outstanding--;
    this.#registry?.unregister(entry);
    entry.stack = undefined;
    if (this.#onLeak !== undefined) entry.buf.fill(POISON);
    if (this.#idle.length < this.max) this.#idle.push(entry.buf);
    else this.#entries.delete(buf.buffer);
  }

  /** Current reference count of an acquired buffer; 0 once released; -1 for a buffer not of this pool. */
  refCount(buf: Uint8Array): number {
    if (!(buf instanceof Uint8Array)) throw invalidArgType('buf', 'an instance of Buffer or Uint8Array', buf);
    return this.#entries.get(buf.buffer)?.refs ?? -1;
  }

  /** Drops the idle buffers (outstanding ones are unaffected). */
  clear(): void {
    for (const b of this.#idle) this.#entries.delete(b.buffer);
    this.#idle = [];
  }

  /** A snapshot of the pool's counters. */
  stats(): BufferPoolStats {
    return {
      size: this.size,
      max: this.max,
      idle: this.#idle.length,
      outstanding: this.#outstanding,
      created: this.#created,
      reused: this.#reused,
      leaked: this.#leaked,
    };
  }
}

function int(name: string, v: unknown, dflt: number, min: number, max: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number') throw invalidArgType(name, 'of type number', v);
  if (!Number.isInteger(v) || v < min || v > max) throw outOfRange(name, `an integer >= ${min} and <= ${max}`, v);
  return v;
}

function warnLeak(leak: PoolLeak): void {
  process.emitWarning(`A ${leak.size}-byte BufferPool buffer was garbage-collected without release()`, {
    code: 'ZCOPY_POOL_LEAK',
    detail: `Acquired at:\n${leak.stack.slice(leak.stack.indexOf('\n') + 1)}`,
  });
}

/** Size classes of the shared chunk pools: 64 KiB .. 1 MiB, powers of two. */
const CHUNK_MIN = 64 * 1024;
const CHUNK_MAX = 1024 * 1024;
/** Idle buffers kept per class: at most 8 x (64K + ... + 1M), under 16 MiB. */
const CHUNK_IDLE = 8;
const chunkPools = new Map<number, BufferPool>();

/**
 * The process-wide pool for transfer chunks of about `chunkSize` bytes: the
 * size is rounded up to a power of two between 64 KiB and 1 MiB (larger
 * requests get the 1 MiB pool), so `pool.size >= chunkSize` except above
 * 1 MiB. For the portable (copying) transfer paths:
 *
 * ```ts
 * const pool = chunkPool(chunkSize);
 * const buf = pool.acquire();
 * try { ...read into buf.subarray(0, n), write it, await the write... }
 * finally { pool.release(buf); }
 * ```
 *
 * @internal
 */
export function chunkPool(chunkSize: number): BufferPool {
  let size = CHUNK_MIN;
  while (size < chunkSize && size < CHUNK_MAX) size *= 2;
  let pool = chunkPools.get(size);
  if (pool === undefined) {
    pool = new BufferPool({ size, max: CHUNK_IDLE });
    chunkPools.set(size, pool);
  }
  return pool;
}
