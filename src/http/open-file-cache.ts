/**
 * The open-file cache of serveStatic: nginx's `open_file_cache` for Node.
 *
 * A request path under a root maps to an open fd, the verdict of the checks
 * made when it was opened (real path inside the root, not hidden) and the
 * misses of its precompressed siblings. A hit costs no threadpool round
 * trip: instead of open + fstat + readlink + close on the threadpool and the
 * loop, it does an `fstat` of the cached fd, (Linux, with the addon) an
 * `fstat` of the watched root and a `stat` of its path, and a `readlink` of
 * `/proc/self/fd/N` only when those show a change (see #rootGeneration),
 * all on the loop and none reading a disk. The root is checked once per
 * event-loop turn, and a hit sent from the body cache in a turn that
 * already checked its file makes no syscall (see loopTurn):
 *
 *  - the fstat is fresh per response (a hit whose body is cached: per
 *    turn, and the cached body is the bytes it describes), so headers
 *    (Content-Length, ETag, Last-Modified) describe the inode whose bytes
 *    are sent: a file rewritten in place gets its new ETag with its new
 *    bytes (a write landing between the check and a read of the fd is the
 *    race it always was, now up to one turn wide);
 *  - `nlink` 0 means the file was deleted, or replaced by a rename over
 *    it (the atomic way deploy tools write): the entry is dropped at once
 *    and the path opened afresh;
 *  - the fd's real path must still be the one that was judged: a file moved
 *    into a hidden directory or out of the root is dropped at once (a
 *    directory moved two or more levels below the root: at revalidation).
 *
 * Small bodies can be kept with their entry (the body cache, `bodyBytes`):
 * see #offerBody for when one is kept and lookup() for when it is sent.
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
import { native } from '../native.js';
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
  /**
   * Bytes of small file bodies kept in memory with their entries, so a hit
   * sends a buffer without reading the file (0: none). A body is kept only
   * once its file has not changed for {@link bodyCacheTuning} `racyMs`, and
   * is sent only while the fd's fresh fstat still matches the one it was
   * read under (inode, size, mtime, ctime). Default 32 MiB.
   */
  bodyBytes?: number;
}

/**
 * Default open-file cache: 1000 paths, revalidated after 1 s. 1000 fds fit
 * under the usual soft limit Node raises at start (and is what a site's hot
 * set needs); 1 s matches how long the root's real path is trusted, so a
 * file replaced in a way a hit cannot see is served fresh within a second,
 * while a revalidation costs one `stat` per path per second, nothing next
 * to thousands of requests a second.
 */
export const DEFAULT_OPEN_FILE_CACHE: Readonly<Required<OpenFileCacheOptions>> = Object.freeze({ max: 1000, validMs: 1000, bodyBytes: 32 * 1024 * 1024 });

/**
 * @internal The body cache's safety margin. Any write to a file sets its
 * ctime to the (coarse, up to a timer tick late; on some filesystems whole
 * seconds) current time, and a user cannot set ctime back. A body read
 * after `ctime + racyMs` is therefore kept only if no write can have landed
 * during or after the read without changing the ctime a later fstat sees
 * (git's "racily clean" rule). Tests lower it to cache files they just
 * wrote.
 */
export const bodyCacheTuning = { racyMs: 2000 };

/**
 * @internal The event-loop turn: the number of poll phases the loop has
 * entered (the addon's uv_prepare handle adds one just before each poll).
 * Checks of the file system made under one number are reused by the hits
 * under the same number. A request answered under number n was read from
 * its socket in poll phase n or earlier, that is from data that arrived
 * before that phase's `epoll_wait` returned, and so before any check made
 * under n: a client that changed a file and then sent its request is
 * answered after a check that sees the change (read-your-writes), whether
 * the check was made in the poll phase, or in a timer, an immediate or a
 * later callback. Two exceptions, both within one loop iteration: requests
 * pipelined in bulk (libuv reads a socket again in the same callback after
 * a full 64 KiB read), and a poll phase that calls `epoll_wait` again after
 * 1024 ready events. Without the addon every call returns a new number
 * (every hit checks).
 */
export function loopTurn(): number {
  const f = native?.loopTurn;
  return f !== undefined ? f() : --noTurn;
}

/** Without the addon: a number no other call returns. */
let noTurn = -2;

/** How long a claimed body read may take before another response may claim it (a read that failed never offers). */
const FILL_MS = 1000;

/** A cached body is at most this share of the body budget. */
const BODY_SHARE = 4;

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
  /** The root generation when `link` was last confirmed (-1: never). */
  linkGen: number;
  stat: fs.Stats;
  /** fstatId of the fd when `stat` was taken (before it): dev, ino, size, nlink, mtime s/ns, ctime s/ns. */
  id: Float64Array | undefined;
  /** performance.now() of the open or the last path stat that confirmed it. */
  checkedAt: number;
  /** performance.now() until which a claimed read for the body cache is in flight (see claimBody). */
  filling: number;
  /** The loop turn ({@link loopTurn}) of the last hit whose fstat matched the cached body (-1: none). */
  bodyTurn: number;
  usedAt: number;
  /** One for the cache while the entry is in it, one per response holding it. */
  refs: number;
  cached: boolean;
  revalidating: Promise<boolean> | undefined;
  /** The whole file's bytes, read under `bodyStat` (the body cache). */
  body: Buffer | undefined;
  bodyStat: fs.Stats | undefined;
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

/** The same inode with the same size, mtime and ctime: no write since `b` (ctime moves on every one). */
function sameContent(a: fs.Stats, b: fs.Stats): boolean {
  return a.ino === b.ino && a.dev === b.dev && a.size === b.size && a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs;
}

/** fstatId's output, read through a Float64Array view (8-aligned). */
const ID = new Float64Array(8);
const ID_BYTES = new Uint8Array(ID.buffer);

function sameId(a: Float64Array, b: Float64Array): boolean {
  for (let i = 0; i < 8; i++) if (a[i] !== b[i]) return false;
  return true;
}

const O_DIRECTORY = fs.constants.O_DIRECTORY ?? 0;

/** What the body cache adds to an {@link OpenedFile} it hands out. */
export interface CachedBodyAccess {
  /** The file's whole body, valid for this `stat` (a snapshot: never modified). */
  body?: Buffer;
  /**
   * Offers the whole body just read (started at `readStartedAt`, a
   * Date.now() time, under this `stat`) to the body cache; it is kept only
   * if it is safe to (see {@link bodyCacheTuning}) and fits the budget. The
   * buffer must not be modified afterwards.
   */
  offerBody?(buf: Buffer, readStartedAt: number): void;
  /**
   * True when a whole-body read made now would be kept (the file is old
   * enough and no other response is reading it for the cache): the caller
   * then reads the body and gives it to {@link offerBody}. For bodies
   * larger than the buffered threshold, read only to be cached (at most one
   * such read per entry at a time, so concurrent misses never each hold a
   * copy).
   */
  claimBody?(): boolean;
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

  /** Bytes of bodies the cache may hold (0: no body cache). */
  readonly bodyBytes: number;
  #bodyTotal = 0;
  /** Bodies kept and sent from memory. */
  readonly bodyCounts = { stored: 0, served: 0, dropped: 0 };

  /**
   * The root directory the cached files were judged under, watched through
   * an fd of it (held while any entry is cached) so that a hit reads an
   * entry's real path again only when something may have moved it: see
   * {@link #rootGeneration}. Undefined: every hit reads it.
   */
  readonly #root: string | undefined;
  #rootFd = -1;
  readonly #rootId = new Float64Array(8);
  #rootGen = 0;
  /** The loop turn of the last root check (-1: none): the root is checked once per turn. */
  #rootTurn = -1;

  constructor(max: number, validMs: number, bodyBytes = 0, root?: string) {
    this.max = max;
    this.validMs = validMs;
    this.bodyBytes = bodyBytes;
    // Only where both the fd's real path (/proc) and the cheap fstat exist.
    this.#root = PROC_FD !== undefined && typeof native?.fstatId === 'function' ? root : undefined;
  }

  /**
   * A number that changes whenever the root directory may have had an
   * entry added, removed or renamed, was itself renamed or replaced, or its
   * path stopped naming it: one fstat of the root's fd, whose ctime moves on
   * each of the first three, and one `stat` of the root's path, which no
   * longer names that directory once one above it was renamed away (`mv
   * /srv/app /srv/app.old; mkdir -p /srv/app/public`). A cached file can
   * leave the place it was judged in (out of the root, into a hidden
   * directory) only by a rename of itself (its own ctime moves: the hit's
   * fstat sees it), of the root, of a directory above it or of one directly
   * in it (this number moves), or of a deeper directory, which the
   * revalidation after `validMs` sees (the path no longer names the file).
   * Checked once per loop turn ({@link loopTurn}). Undefined when it cannot
   * be watched (then every hit reads the real path).
   */
  #rootGeneration(): number | undefined {
    const root = this.#root;
    if (root === undefined) return undefined;
    const turn = loopTurn();
    if (turn === this.#rootTurn) return this.#rootFd < 0 ? undefined : this.#rootGen;
    this.#rootTurn = turn;
    const fstatId = native!.fstatId!;
    if (this.#rootFd < 0 || fstatId(this.#rootFd, ID_BYTES) !== 0) {
      if (!this.#openRoot()) return undefined;
      return this.#rootGen;
    }
    if (!sameId(ID, this.#rootId)) {
      this.#rootGen++;
      this.#rootId.set(ID);
    }
    // Renamed away (itself or a directory above it), or replaced: watch
    // what the path names now. The entries' real paths are read again,
    // and those no longer under this path are dropped.
    let st: fs.Stats | undefined;
    try {
      st = fs.statSync(root, { throwIfNoEntry: false });
    } catch {
      st = undefined;
    }
    if (st === undefined || st.ino !== this.#rootId[1] || st.dev !== this.#rootId[0]) {
      if (!this.#openRoot()) return undefined;
    }
    return this.#rootGen;
  }

  #openRoot(): boolean {
    this.#closeRoot();
    try {
      this.#rootFd = fs.openSync(this.#root!, fs.constants.O_RDONLY | O_DIRECTORY);
    } catch {
      return false;
    }
    if (native!.fstatId!(this.#rootFd, ID_BYTES) !== 0) {
      this.#closeRoot();
      return false;
    }
    this.#rootId.set(ID);
    this.#rootGen++;
    return true;
  }

  #closeRoot(): void {
    if (this.#rootFd < 0) return;
    try {
      fs.closeSync(this.#rootFd);
    } catch {
      // Nothing to recover.
    }
    this.#rootFd = -1;
  }

  /** Bytes of bodies held. */
  get bodyTotal(): number {
    return this.#bodyTotal;
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
    // A cached body whose file was checked in this loop turn: sent with
    // no syscall (it is the snapshot the headers describe; see loopTurn
    // for why a change made before the request was sent is never missed).
    if (e.body !== undefined && e.bodyTurn === loopTurn() && now - e.checkedAt < this.validMs) {
      this.counts.hits++;
      return { file: this.#ref(e, now) };
    }
    // A fresh fstat per hit. With the addon, its identity fields are
    // compared with the last hit's first: unchanged, the Stats object of
    // that hit is reused (building one costs more than the syscall).
    let st: fs.Stats;
    let changed = true;
    const fstatId = native?.fstatId;
    try {
      if (fstatId !== undefined && fstatId(e.fd, ID_BYTES) === 0) {
        if (e.id !== undefined && sameId(ID, e.id)) {
          st = e.stat;
          changed = false;
        } else {
          // Taken before the Stats: a change in between makes the next
          // hit's identity differ (another fstat), never the reverse.
          if (e.id === undefined) e.id = new Float64Array(ID);
          else e.id.set(ID);
          st = fs.fstatSync(e.fd);
        }
      } else st = fs.fstatSync(e.fd);
    } catch {
      this.#drop(e);
      return undefined;
    }
    // Deleted, or replaced by a rename over it; or moved since it was
    // judged: the fd's real path is read again when the file's ctime or the
    // root's generation moved (or always, without a watched root).
    let moved = st.nlink === 0 || !sameFile(st, e.stat);
    if (!moved && e.link !== undefined) {
      const gen = this.#rootGeneration();
      if (gen === undefined || changed || gen !== e.linkGen) {
        moved = readLink(e.fd) !== e.link;
        e.linkGen = gen ?? -1;
      }
    }
    if (moved) {
      this.#drop(e);
      this.counts.misses++;
      return undefined;
    }
    e.stat = st;
    if (e.body !== undefined) {
      if (sameContent(st, e.bodyStat!)) e.bodyTurn = loopTurn();
      else this.#dropBody(e);
    }
    if (now - e.checkedAt >= this.validMs) return { revalidate: this.#revalidate(e) };
    this.counts.hits++;
    return { file: this.#ref(e, now) };
  }

  async #revalidate(e: Entry): Promise<OpenedFile | undefined> {
    if (e.revalidating === undefined) {
      this.counts.revalidations++;
      const started = performance.now();
      e.refs++; // the fd must outlive the stat even if the entry is evicted meanwhile
      // The path must still name the inode, and the fd's real path must
      // be the one judged: a directory moved into a hidden one with a
      // symlink left in its place passes the first test only.
      e.revalidating = statPath(e.path).then(
        (st) => sameFile(st, e.stat) && (e.link === undefined || readLink(e.fd) === e.link),
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
    // The root's generation before the link it vouches for: a change in
    // between is seen (again) by the next hit, never missed. The identity
    // (`id`) is first taken by the first hit, before a Stats of its own.
    const id: Float64Array | undefined = undefined;
    const linkGen = PROC_FD !== undefined && file.realPath !== undefined ? this.#rootGeneration() ?? -1 : -1;
    const link = PROC_FD !== undefined && file.realPath !== undefined ? readLink(file.fd) : undefined;
    const now = performance.now();
    const e: Entry = { key, fd: file.fd, path: file.path, realPath: file.realPath, link, linkGen, stat: st, id, checkedAt: now, filling: 0, bodyTurn: -1, usedAt: now, refs: 1, cached: true, revalidating: undefined, body: undefined, bodyStat: undefined };
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

  #ref(e: Entry, now: number): OpenedFile & CachedBodyAccess {
    e.refs++;
    e.usedAt = now;
    // LRU: most recently used last.
    if (e.cached) {
      this.#entries.delete(e.key);
      this.#entries.set(e.key, e);
    }
    let open = true;
    const stat = e.stat;
    const file: OpenedFile & CachedBodyAccess = {
      fd: e.fd,
      stat,
      path: e.path,
      realPath: e.realPath,
      close: () => {
        if (!open) return;
        open = false;
        this.#release(e);
      },
    };
    if (this.bodyBytes > 0 && stat.size * BODY_SHARE <= this.bodyBytes) {
      // lookup() dropped a body its fresh fstat does not match.
      if (e.body !== undefined) {
        this.bodyCounts.served++;
        file.body = e.body;
      } else {
        file.offerBody = (buf, readStartedAt) => this.#offerBody(e, stat, buf, readStartedAt);
        file.claimBody = () => {
          // Never evicts other bodies for one read only to be cached (a few
          // hot bodies larger than the budget's share would each be read
          // per request), and one read per file at a time.
          if (!e.cached || e.body !== undefined || e.filling > performance.now() || this.#bodyTotal + stat.size > this.bodyBytes) return false;
          if (!(stat.ctimeMs < Date.now() - bodyCacheTuning.racyMs)) return false;
          e.filling = performance.now() + FILL_MS;
          return true;
        };
      }
    }
    return file;
  }

  /**
   * Keeps `buf` as the body of `e` when it is the whole file as it still is
   * and will stay detectably so: the entry is still cached, a second fstat
   * after the read matches the one the headers came from, and the file's
   * last write (ctime) is older than the read by racyMs, so any write during
   * or after the read moves the ctime a later fstat compares.
   */
  #offerBody(e: Entry, stat: fs.Stats, buf: Buffer, readStartedAt: number): void {
    e.filling = 0;
    if (!e.cached || e.body !== undefined || buf.length !== stat.size) return;
    if (!(stat.ctimeMs < readStartedAt - bodyCacheTuning.racyMs)) return;
    let now: fs.Stats;
    try {
      now = fs.fstatSync(e.fd);
    } catch {
      return;
    }
    if (!sameContent(now, stat)) return;
    // Room: the least recently used bodies go first.
    if (this.#bodyTotal + buf.length > this.bodyBytes) {
      for (const other of this.#entries.values()) {
        if (other.body !== undefined) this.#dropBody(other);
        if (this.#bodyTotal + buf.length <= this.bodyBytes) break;
      }
    }
    e.body = buf;
    e.bodyStat = stat;
    this.#bodyTotal += buf.length;
    this.bodyCounts.stored++;
  }

  #dropBody(e: Entry): void {
    if (e.body === undefined) return;
    this.#bodyTotal -= e.body.length;
    e.body = undefined;
    e.bodyStat = undefined;
    this.bodyCounts.dropped++;
  }

  #drop(e: Entry): void {
    if (!e.cached) return;
    e.cached = false;
    this.counts.dropped++;
    this.#dropBody(e);
    if (this.#entries.get(e.key) === e) this.#entries.delete(e.key);
    if (this.#entries.size === 0) this.#closeRoot();
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
export function resolveOpenFileCache(v: unknown, invalid: (msg: string) => Error): Required<OpenFileCacheOptions> | false {
  if (v === false) return false;
  if (v === undefined || v === true) return { ...DEFAULT_OPEN_FILE_CACHE };
  if (typeof v !== 'object' || v === null) throw invalid('must be false or { max, validMs, bodyBytes }');
  const o = v as OpenFileCacheOptions;
  const max = o.max ?? DEFAULT_OPEN_FILE_CACHE.max;
  const validMs = o.validMs ?? DEFAULT_OPEN_FILE_CACHE.validMs;
  if (typeof max !== 'number' || !Number.isSafeInteger(max) || max < 0) throw invalid('max must be an integer >= 0');
  if (typeof validMs !== 'number' || !Number.isFinite(validMs) || validMs < 0) throw invalid('validMs must be a number >= 0');
  const bodyBytes = o.bodyBytes ?? DEFAULT_OPEN_FILE_CACHE.bodyBytes;
  if (typeof bodyBytes !== 'number' || !Number.isSafeInteger(bodyBytes) || bodyBytes < 0) throw invalid('bodyBytes must be an integer >= 0');
  return { max, validMs, bodyBytes };
}
