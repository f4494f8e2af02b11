/**
 * The open-file cache of serveStatic: nginx's `open_file_cache` for Node.
 *
 * A request path under a root maps to an open fd, the verdict of the checks
 * made when it was opened (real path inside the root, not hidden) and the
 * misses of its precompressed siblings. A hit costs no threadpool round
 * trip: instead of open + fstat + readlink + close on the threadpool and the
 * loop, it does an `fstat` of the cached fd and (Linux) a `readlink` of
 * `/proc/self/fd/N`, both on the loop and neither reading a disk:
 *
 *  - the fstat is fresh per response, so headers (Content-Length, ETag,
 *    Last-Modified) always describe the inode whose bytes are sent: a file
 *    rewritten in place never gets an old ETag with new bytes;
 *  - `nlink` 0 means the file was deleted, or replaced by a rename over
 *    it (the atomic way deploy tools write): the entry is dropped at once
 *    and the path opened afresh;
 *  - the fd's real path must still be the one that was judged: a file moved
 *    into a hidden directory or out of the root is dropped at once.
 *
 * What a hit cannot see without a path lookup is a path that now names
 * another inode while the cached one still exists elsewhere (a symlink
 * re-pointed, a file renamed away and another put in its place): that is
 * noticed when the entry is revalidated, `validMs` after its last check, by
 * a `stat` of the path on the threadpool compared with the fd's fstat (as
 * nginx's `open_file_cache_valid`). Another inode: the entry is dropped and
 * the path opened afresh.
 *
 * Entries are reference counted: each response holds a reference until its
 * body needs no more of the file, and eviction (LRU beyond `max`, a changed
 * file, inactivity, `clear()`) only drops the cache's own reference, so an
 * fd is closed when its last transfer is done, never under it.
 *
 * @module
 */
import fs from 'node:fs';
import { stat as statPath } from 'node:fs/promises';
import { PROC_FD, type OpenedFile, type OpenFailure } from './open.js';

/** `openFileCache` option of serveStatic. */
export interface OpenFileCacheOptions {
  /** Most cached paths (so most fds held open). Default 1000. */
  max?: number;
  /**
   * How long (ms) a cached path is trusted to name the cached file before a
   * `stat` of the path checks it again (nginx's `open_file_cache_valid`).
   * Default 1000.
   */
  validMs?: number;
}

/**
 * Default open-file cache: 1000 paths, revalidated after 1 s. 1000 fds fit
 * under the usual soft limit Node raises at start (and is what a site's hot
 * set needs); 1 s matches how long the root's real path is trusted, so a
 * file replaced in a way a hit cannot see is served fresh within a second,
 * while a revalidation costs one `stat` per path per second, nothing next
 * to thousands of requests a second.
 */
export const DEFAULT_OPEN_FILE_CACHE: Readonly<Required<OpenFileCacheOptions>> = Object.freeze({ max: 1000, validMs: 1000 });

/**
 * Files larger than this are not cached: their open costs well under 1% of
 * their send, and a cached fd of a big deleted file keeps its blocks on disk
 * until the entry goes.
 */
export const OPEN_FILE_CACHE_MAX_SIZE = 8 * 1024 * 1024;

/** An entry not used for this long is closed (nginx's `inactive`). */
const INACTIVE_MS = 20_000;

interface Entry {
  key: string;
  fd: number;
  path: string;
  realPath: string | undefined;
  /** readlink of /proc/self/fd/N when the entry was made (Linux). */
  link: string | undefined;
  stat: fs.Stats;
  /** performance.now() of the open or the last path stat that confirmed it. */
  checkedAt: number;
  usedAt: number;
  /** One for the cache while the entry is in it, one per response holding it. */
  refs: number;
  cached: boolean;
  revalidating: Promise<boolean> | undefined;
}

interface Miss {
  failure: OpenFailure;
  at: number;
}

/** What {@link OpenFileCache.lookup} found. */
export type CacheLookup = { file: OpenedFile } | { failure: OpenFailure } | { revalidate: Promise<OpenedFile | undefined> } | undefined;

function sameFile(a: fs.Stats, b: fs.Stats): boolean {
  return a.ino === b.ino && a.dev === b.dev;
}

/** @internal The cache of one StaticRoot. */
export class OpenFileCache {
  readonly max: number;
  readonly validMs: number;
  readonly #entries = new Map<string, Entry>();
  readonly #misses = new Map<string, Miss>();
  #sweep: NodeJS.Timeout | undefined;
  /** Counters (tests and the bench read them). */
  readonly counts = { hits: 0, misses: 0, revalidations: 0, dropped: 0 };

  constructor(max: number, validMs: number) {
    this.max = max;
    this.validMs = validMs;
  }

  /** Entries held (each one fd). */
  get size(): number {
    return this.#entries.size;
  }

  /**
   * A cached answer for `key`: an open file (a new reference: close it when
   * done), a cached miss, a revalidation to await, or undefined (open it
   * and {@link insert} it).
   */
  lookup(key: string): CacheLookup {
    const now = performance.now();
    const e = this.#entries.get(key);
    if (e === undefined) {
      const m = this.#misses.get(key);
      if (m !== undefined) {
        if (now - m.at < this.validMs) {
          this.counts.hits++;
          return { failure: m.failure };
        }
        this.#misses.delete(key);
      }
      this.counts.misses++;
      return undefined;
    }
    let st: fs.Stats;
    try {
      st = fs.fstatSync(e.fd);
    } catch {
      this.#drop(e);
      return undefined;
    }
    // Deleted, or replaced by a rename over it; or moved since it was judged.
    if (st.nlink === 0 || !sameFile(st, e.stat) || (e.link !== undefined && readLink(e.fd) !== e.link)) {
      this.#drop(e);
      this.counts.misses++;
      return undefined;
    }
    e.stat = st;
    if (now - e.checkedAt >= this.validMs) return { revalidate: this.#revalidate(e) };
    this.counts.hits++;
    return { file: this.#ref(e, now) };
  }

  async #revalidate(e: Entry): Promise<OpenedFile | undefined> {
    if (e.revalidating === undefined) {
      this.counts.revalidations++;
      const started = performance.now();
      e.refs++; // the fd must outlive the stat even if the entry is evicted meanwhile
      e.revalidating = statPath(e.path).then(
        (st) => sameFile(st, e.stat),
        () => false,
      );
      void e.revalidating.then((ok) => {
        e.revalidating = undefined;
        if (ok) e.checkedAt = started;
        else this.#drop(e);
        this.#release(e);
      });
    }
    const ok = await e.revalidating;
    if (!ok || !e.cached) {
      this.counts.misses++;
      return undefined;
    }
    this.counts.hits++;
    return this.#ref(e, performance.now());
  }

  /**
   * Takes over `file` (opened by `path`, already judged servable) under
   * `key` and returns a reference to it. A file that is not cacheable (too
   * big, not a regular file (a directory is opened per request: listings
   * and redirects are not the hot path), or `key` already cached by a
   * concurrent miss) is returned as it is.
   */
  insert(key: string, file: OpenedFile): OpenedFile {
    const st = file.stat;
    if (this.max === 0 || this.#entries.has(key) || !st.isFile() || st.size > OPEN_FILE_CACHE_MAX_SIZE) return file;
    const link = PROC_FD !== undefined && file.realPath !== undefined ? readLink(file.fd) : undefined;
    const now = performance.now();
    const e: Entry = { key, fd: file.fd, path: file.path, realPath: file.realPath, link, stat: st, checkedAt: now, usedAt: now, refs: 1, cached: true, revalidating: undefined };
    this.#entries.set(key, e);
    this.#misses.delete(key);
    while (this.#entries.size > this.max) {
      const oldest = this.#entries.values().next().value as Entry;
      this.#drop(oldest);
    }
    this.#armSweep();
    // The entry owns the fd now; `file` is dropped without closing it.
    return this.#ref(e, now);
  }

  /** Remembers that opening `key` failed (precompressed siblings that do not exist). */
  insertMiss(key: string, failure: OpenFailure): void {
    if (this.max === 0) return;
    this.#misses.delete(key);
    this.#misses.set(key, { failure, at: performance.now() });
    while (this.#misses.size > this.max) this.#misses.delete(this.#misses.keys().next().value as string);
    this.#armSweep();
  }

  /** Drops every entry (fds close as their last response finishes). */
  clear(): void {
    for (const e of [...this.#entries.values()]) this.#drop(e);
    this.#misses.clear();
    if (this.#sweep) clearInterval(this.#sweep);
    this.#sweep = undefined;
  }

  #ref(e: Entry, now: number): OpenedFile {
    e.refs++;
    e.usedAt = now;
    // LRU: most recently used last.
    if (e.cached) {
      this.#entries.delete(e.key);
      this.#entries.set(e.key, e);
    }
    let open = true;
    return {
      fd: e.fd,
      stat: e.stat,
      path: e.path,
      realPath: e.realPath,
      close: () => {
        if (!open) return;
        open = false;
        this.#release(e);
      },
    };
  }

  #drop(e: Entry): void {
    if (!e.cached) return;
    e.cached = false;
    this.counts.dropped++;
    if (this.#entries.get(e.key) === e) this.#entries.delete(e.key);
    this.#release(e);
  }

  #release(e: Entry): void {
    if (--e.refs > 0) return;
    try {
      fs.closeSync(e.fd);
    } catch {
      // EBADF/EIO on close of a read-only fd: nothing to recover.
    }
  }

  #armSweep(): void {
    if (this.#sweep !== undefined) return;
    this.#sweep = setInterval(() => {
      const now = performance.now();
      for (const e of [...this.#entries.values()]) if (now - e.usedAt >= INACTIVE_MS) this.#drop(e);
      for (const [k, m] of [...this.#misses]) if (now - m.at >= this.validMs) this.#misses.delete(k);
      if (this.#entries.size === 0 && this.#misses.size === 0) {
        clearInterval(this.#sweep);
        this.#sweep = undefined;
      }
    }, INACTIVE_MS / 4);
    this.#sweep.unref();
  }
}

function readLink(fd: number): string | undefined {
  try {
    // /proc/self/fd/N: no disk read, cheaper than a thread hop.
    return fs.readlinkSync(PROC_FD + String(fd));
  } catch {
    return undefined;
  }
}

/** @internal Validates the `openFileCache` option: undefined -> defaults, false -> off. */
export function resolveOpenFileCache(v: unknown, invalid: (msg: string) => Error): { max: number; validMs: number } | false {
  if (v === false) return false;
  if (v === undefined || v === true) return { ...DEFAULT_OPEN_FILE_CACHE };
  if (typeof v !== 'object' || v === null) throw invalid('must be false or { max, validMs }');
  const o = v as OpenFileCacheOptions;
  const max = o.max ?? DEFAULT_OPEN_FILE_CACHE.max;
  const validMs = o.validMs ?? DEFAULT_OPEN_FILE_CACHE.validMs;
  if (typeof max !== 'number' || !Number.isSafeInteger(max) || max < 0) throw invalid('max must be an integer >= 0');
  if (typeof validMs !== 'number' || !Number.isFinite(validMs) || validMs < 0) throw invalid('validMs must be a number >= 0');
  return { max, validMs };
}
