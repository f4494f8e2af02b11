/**
 * serveStatic: a folder over HTTP, for node:http, node:https, http2 (compat),
 * and Express/Connect (as middleware).
 *
 * @module
 */
import { realpathSync, statSync, type Stats } from 'node:fs';
import { realpath, stat as statAsync } from 'node:fs/promises';
import { basename, join, relative, resolve, sep } from 'node:path';
import { invalidArgType, invalidArgValue } from './validate.js';
import { acceptedEncodings } from './headers.js';
import { DEFAULT_LISTING_LIMIT, renderListing } from './listing.js';
import { isInside, isOpened, openResolved, type OpenFailure, type OpenedFile } from './open.js';
import { OpenFileCache, loopTurn, resolveOpenFileCache, type CacheLookup, type OpenFileCacheOptions } from './open-file-cache.js';
import { resolveRequestPath, targetPath, type ResolvedPath } from './resolve-path.js';
import { canRespond, safeLocation, sendError, sendHtml, sendRedirect, type AnyRequest, type AnyResponse, type ServeResult } from './response.js';
import { SERVE_FILE_KEYS, normalizeOptions, notServed, resolveServeFileOptions, respondWithFile, type ResolvedServeFileOptions, type ServeFileOptions } from './serve-file.js';
import { responseTurn } from './body.js';

/** Options of {@link serveStatic}. */
export interface ServeStaticOptions extends ServeFileOptions {
  /**
   * Paths with a segment starting with `.` (a dotfile or a hidden directory
   * anywhere in the path): `'ignore'` answers 404 as if absent (default),
   * `'deny'` 403, `'allow'` serves them. Judged on the request path and on
   * the opened file's real path below the root, so a symlink to a dotfile
   * or into a hidden directory is hidden too (outside the root, with
   * `followSymlinks`: the target's own name).
   */
  dotfiles?: 'ignore' | 'deny' | 'allow';
  /** File(s) served for a directory request ending in `/`; `false` for none. Default `'index.html'`. */
  index?: string | string[] | false;
  /** Redirect (301) a directory requested without its trailing slash. Default true. */
  redirect?: boolean;
  /**
   * Serve `name.br` / `name.gz` next to `name` when the client accepts that
   * coding (`true` = both, br first), with `Content-Encoding` and
   * `Vary: Accept-Encoding`. Default false.
   */
  precompressed?: boolean | Array<'br' | 'gzip'>;
  /**
   * Follow symlinks wherever they lead. Default false: a file or directory
   * whose real path leaves the root is refused (403); symlinks that stay
   * inside the root work.
   */
  followSymlinks?: boolean;
  /**
   * Middleware mode only (called with `next`): pass client errors (404, 403,
   * 400) to `next()` so later middleware can answer. Default true; false
   * answers them here. Server errors always go to `next(err)`.
   */
  fallthrough?: boolean;
  /** An HTML listing for a directory without an index file. Default false. */
  listing?: boolean;
  /**
   * A sentence added to the 404 page of a directory that has no index file
   * while `listing` is off (HTML-escaped), e.g. how to turn listing on:
   * `zcopy serve` says "start with --list". Default none (a bare 404).
   */
  directoryHint?: string;
  /**
   * Entries a listing shows at most (in directory order, then sorted), with
   * a note when there are more. Default 1000: each entry costs an `lstat`
   * and a row, about 10 us of CPU per request.
   */
  listingLimit?: number;
  /**
   * The open-file cache (nginx's `open_file_cache`): request paths map to
   * open fds with the verdict of their root and dotfile checks, so a hit
   * costs no threadpool round trip. `{ max, validMs }`: at most `max` paths
   * (and fds), each trusted for `validMs` ms before a `stat` of its path
   * revalidates it (a deleted file, a rename over it, a move out of the
   * root or into a hidden directory are seen at once; a re-pointed symlink
   * or a file renamed away and replaced after `validMs`). `bodyBytes`:
   * bytes of small bodies (those sent buffered) kept in memory with their
   * entries, each sent only while the fd's fresh fstat matches the one it
   * was read under; 0 for none. `false`: off.
   * Default `{ max: 1000, validMs: 1000, bodyBytes: 32 MiB }`.
   */
  openFileCache?: OpenFileCacheOptions | false;
}

/**
 * The option names serveStatic knows (its own and serveFile's), for the
 * unknown-option warning. `logLevel` / `logSerializers` are Fastify's own
 * register options, which reach the plugin with the rest.
 */
const STATIC_KEYS: readonly string[] = [
  ...SERVE_FILE_KEYS,
  'dotfiles', 'index', 'redirect', 'precompressed', 'followSymlinks', 'fallthrough', 'listing', 'listingLimit', 'openFileCache', 'directoryHint',
  'logLevel', 'logSerializers',
];

/** What a handler's open-file cache exposes (`handler.openFileCache`). */
export interface OpenFileCacheView {
  /** Paths cached (each holds one fd). */
  readonly size: number;
  /** Hits, misses, revalidations (path stats) and entries dropped. */
  readonly counts: { hits: number; misses: number; revalidations: number; dropped: number };
  /** Bytes of small bodies held in memory (`bodyBytes`), and how often a body was kept, sent from memory, or dropped (changed file, budget). */
  readonly bodyTotal: number;
  readonly bodyCounts: { stored: number; served: number; dropped: number };
  /** Drops every entry; fds close as the responses using them finish. */
  clear(): void;
}

/** The request handler {@link serveStatic} returns. */
export interface StaticHandler {
  /** node:http / node:https / http2 compat: answers every request (404 when nothing matches). */
  (req: AnyRequest, res: AnyResponse): Promise<ServeResult>;
  /** Express / Connect: calls `next()` when nothing matches (or for methods other than GET/HEAD). */
  (req: AnyRequest, res: AnyResponse, next: (err?: unknown) => void): Promise<ServeResult | undefined>;
  /** The open-file cache, or undefined when `openFileCache: false`. */
  readonly openFileCache: OpenFileCacheView | undefined;
}

/** @internal The {@link StaticRoot} behind a handler {@link serveStatic} made (for the HTTP/1.1 front of `zcopy serve`). */
export const kStaticRoot = Symbol('zcopy.staticRoot');

/** @internal What a request path maps to. */
export type Lookup =
  | { kind: 'error'; status: number; error?: Error; note?: string }
  | { kind: 'redirect'; location: string }
  | { kind: 'listing'; dir: OpenedFile; realRoot: string; urlPath: string; atRoot: boolean }
  | { kind: 'file'; file: OpenedFile; typeName: string; encoding?: string; vary: boolean };

const ENCODING_EXT: Record<string, string> = { br: '.br', gzip: '.gz' };

/**
 * How long a resolved real path of the root is trusted before it is
 * resolved again, so a root that is a symlink switched by a deploy
 * (`current -> releases/vN`) is followed without a restart. A file that is
 * not exactly where its path names it under the cached root (a symlink was
 * followed, or the root moved) triggers a fresh resolve before it is judged.
 */
const ROOT_TTL_MS = 1000;

/** Request targets whose resolved path a root remembers (emptied when full: a flood of distinct URLs costs what it did without it). */
const PATH_MEMO = 1000;
const PATH_MEMO_KEY = 512;

/** @internal A root and its options; serveStatic and the Fastify plugin share it. */
export class StaticRoot {
  readonly root: string;
  readonly options: ResolvedServeFileOptions;
  readonly dotfiles: 'ignore' | 'deny' | 'allow';
  readonly index: string[];
  readonly redirect: boolean;
  readonly encodings: string[];
  readonly followSymlinks: boolean;
  readonly fallthrough: boolean;
  readonly listing: boolean;
  readonly listingLimit: number;
  readonly directoryHint: string | undefined;
  #realRoot: string | undefined;
  /** dev:ino of the root when #realRoot was resolved (stat taken before the realpath). */
  #rootId: string | undefined;
  readonly cache: OpenFileCache | undefined;
  /** performance.now() when the resolve that gave #realRoot started. */
  #resolvedAt = -Infinity;
  #resolving: { started: number; promise: Promise<string | undefined> } | undefined;
  /** Request targets already resolved to a path under the root (the hot path's; see PATH_MEMO). */
  readonly #paths = new Map<string, { p: ResolvedPath; abs: string }>();
  /** The loop turn in which #rootMoved last found the root in place (-1: none). */
  #rootSeenTurn = -1;

  constructor(root: string, options: ServeStaticOptions | undefined) {
    if (typeof root !== 'string') throw invalidArgType('root', 'of type string', root);
    if (root.length === 0 || root.includes('\0')) throw invalidArgValue('root', root, 'must be a non-empty path without null bytes');
    if (options !== undefined && (typeof options !== 'object' || options === null)) throw invalidArgType('options', 'of type object', options);
    const o = normalizeOptions(options ?? {}, 'serveStatic', STATIC_KEYS);
    this.options = resolveServeFileOptions(o);
    this.root = resolve(root);
    const dotfiles = o.dotfiles ?? 'ignore';
    if (dotfiles !== 'ignore' && dotfiles !== 'deny' && dotfiles !== 'allow') throw invalidArgValue('options.dotfiles', dotfiles, "must be 'ignore', 'deny' or 'allow'");
    this.dotfiles = dotfiles;
    const index = o.index === undefined ? ['index.html'] : o.index === false ? [] : Array.isArray(o.index) ? o.index : [o.index];
    for (const name of index) {
      if (typeof name !== 'string' || name.length === 0 || name.includes('/') || name.includes('\0') || name === '..' || name === '.') {
        throw invalidArgValue('options.index', name, 'must be file names (no slashes)');
      }
    }
    this.index = index;
    this.redirect = o.redirect ?? true;
    const pre = o.precompressed === undefined || o.precompressed === false ? [] : o.precompressed === true ? ['br', 'gzip'] : o.precompressed;
    if (!Array.isArray(pre) || pre.some((e) => e !== 'br' && e !== 'gzip')) throw invalidArgValue('options.precompressed', o.precompressed, "must be a boolean or an array of 'br' / 'gzip'");
    this.encodings = pre;
    this.followSymlinks = o.followSymlinks ?? false;
    this.fallthrough = o.fallthrough ?? true;
    this.listing = o.listing ?? false;
    for (const [k, v] of [['redirect', this.redirect], ['followSymlinks', this.followSymlinks], ['fallthrough', this.fallthrough], ['listing', this.listing]] as const) {
      if (typeof v !== 'boolean') throw invalidArgType(`options.${k}`, 'of type boolean', v);
    }
    if (o.directoryHint !== undefined && typeof o.directoryHint !== 'string') throw invalidArgType('options.directoryHint', 'of type string', o.directoryHint);
    this.directoryHint = o.directoryHint;
    this.listingLimit = o.listingLimit ?? DEFAULT_LISTING_LIMIT;
    if (typeof this.listingLimit !== 'number') throw invalidArgType('options.listingLimit', 'of type number', this.listingLimit);
    if (!Number.isSafeInteger(this.listingLimit) || this.listingLimit < 1) throw invalidArgValue('options.listingLimit', this.listingLimit, 'must be a positive integer');
    const ofc = resolveOpenFileCache(o.openFileCache, (msg) => invalidArgValue('options.openFileCache', o.openFileCache, msg));
    this.cache = ofc === false ? undefined : new OpenFileCache(ofc.max, ofc.validMs, ofc.bodyBytes, this.root);
    try {
      const started = performance.now();
      const id = idOf(statSync(this.root));
      this.#realRoot = realpathSync(this.root);
      this.#rootId = id;
      this.#resolvedAt = started;
    } catch {
      // The root may appear later; resolved per request until it does.
    }
  }

  /**
   * The root's real path: cached for ROOT_TTL_MS, or resolved by a realpath
   * that started at or after `notBefore` (a performance.now() time).
   * Concurrent callers share one realpath.
   */
  async #realRootNow(notBefore?: number): Promise<string | undefined> {
    const now = performance.now();
    const fresh = notBefore ?? now - ROOT_TTL_MS;
    if (this.#realRoot !== undefined && this.#resolvedAt >= fresh) return this.#realRoot;
    if (this.#resolving !== undefined && this.#resolving.started >= fresh) return this.#resolving.promise;
    const started = now;
    // The root's identity is taken before its real path: a switch between
    // the two leaves an old identity with the new path, seen as a change
    // (another resolve) by the next request, never the reverse.
    const promise = statAsync(this.root)
      .then(async (st) => ({ id: idOf(st), rp: await realpath(this.root) }))
      .then(
        ({ id, rp }) => {
          if (started >= this.#resolvedAt) {
            this.#realRoot = rp;
            this.#rootId = id;
            this.#rootSeenTurn = -1;
            this.#resolvedAt = started;
          }
          return rp;
        },
        () => {
          if (started >= this.#resolvedAt) {
            this.#realRoot = undefined;
            this.#rootId = undefined;
            this.#rootSeenTurn = -1;
            this.#resolvedAt = -Infinity;
          }
          return undefined;
        },
      );
    const r = { started, promise };
    this.#resolving = r;
    void promise.finally(() => {
      if (this.#resolving === r) this.#resolving = undefined;
    });
    return promise;
  }

  /**
   * True when the root path no longer names the directory whose real path
   * is cached. One `stat` of the root on the loop, only with the open-file
   * cache on and a root whose path has a symlink (a hit would otherwise
   * skip the open that notices a switched root): the root's dentries are
   * the most used of the tree, so the lookup reads no disk, and it keeps
   * item 16 exact (the first request after a deploy's switch is served
   * from the new release).
   */
  #rootMoved(): boolean {
    // A root found in place is trusted for the rest of the loop turn (see
    // loopTurn: a switch made before a request was sent is seen by it).
    const turn = loopTurn();
    if (turn === this.#rootSeenTurn) return false;
    let st: Stats | undefined;
    try {
      st = statSync(this.root, { throwIfNoEntry: false });
    } catch {
      st = undefined;
    }
    const moved = st === undefined || idOf(st) !== this.#rootId;
    this.#rootSeenTurn = moved ? -1 : turn;
    return moved;
  }

  /**
   * True when a file with this real path must be treated as hidden: some
   * segment below the root starts with `.` (outside the root, with
   * followSymlinks: its own name does). Unknown real paths are hidden.
   */
  #hiddenReal(realPath: string | undefined, realRoot: string): boolean {
    if (realPath === undefined) return true;
    if (!isInside(realRoot, realPath)) return basename(realPath).charCodeAt(0) === 46;
    const rel = relative(realRoot, realPath);
    return rel.length > 0 && (rel.charCodeAt(0) === 46 || rel.includes(sep + '.'));
  }

  /** Would a file with this real path be served (inside the root unless following symlinks; not hidden unless allowed)? */
  #servable(realPath: string | undefined, realRoot: string): boolean {
    if (!this.followSymlinks && (realPath === undefined || !isInside(realRoot, realPath))) return false;
    return this.dotfiles === 'allow' || !this.#hiddenReal(realPath, realRoot);
  }

  /**
   * Opens `abs` (a path under `this.root`) and judges the opened fd's real
   * path: outside the root (unless followSymlinks) is 403; hidden below it
   * is the dotfiles answer. The cached real root is trusted only when the fd
   * is exactly where `abs` names it under that root (no symlink followed);
   * otherwise the root is resolved again (a realpath started after this
   * open) before judging, so a root switched by a deploy is followed at once
   * and a symlink into the previous release is judged against the new one.
   */
  async #open(abs: string, realRoot: string, sibling = false, pre?: { c: CacheLookup }): Promise<{ file: OpenedFile; realRoot: string } | OpenFailure> {
    const cache = this.cache;
    if (cache === undefined) return this.#openUncached(abs, realRoot);
    const key = realRoot + '\0' + abs;
    let c = pre !== undefined ? pre.c : cache.lookup(key);
    if (c !== undefined && 'revalidate' in c) {
      const f = await c.revalidate;
      c = f === undefined ? undefined : { file: f };
    }
    if (c !== undefined) {
      if ('file' in c) return { file: c.file, realRoot };
      if ('failure' in c) return c.failure;
    }
    const o = await this.#openUncached(abs, realRoot);
    if (!('file' in o)) {
      // Only a precompressed sibling's absence is remembered (nginx's
      // open_file_cache_errors is off by default too): a file created at
      // a path that was a 404 is served at once.
      if (sibling && o.status === 404 && (o.code === 'ENOENT' || o.code === 'ENOTDIR')) cache.insertMiss(key, o);
      return o;
    }
    return { file: cache.insert(o.realRoot + '\0' + abs, o.file), realRoot: o.realRoot };
  }

  async #openUncached(abs: string, realRoot: string): Promise<{ file: OpenedFile; realRoot: string } | OpenFailure> {
    const started = performance.now();
    const needReal = !this.followSymlinks || this.dotfiles !== 'allow';
    const file = await openResolved(abs, needReal);
    if (!isOpened(file)) return file;
    if (!needReal) return { file, realRoot };
    let root = realRoot;
    if (file.realPath !== join(realRoot, abs.slice(this.root.length))) {
      const fresh = await this.#realRootNow(started);
      if (fresh === undefined) {
        file.close();
        return { status: 404, code: 'ENOENT' };
      }
      root = fresh;
    }
    // Only a directory can be the root itself: a file whose real path is
    // the root's is some other file (e.g. `<root> (deleted)` unlinked in
    // the instant between open and readlink).
    const outside = file.realPath === undefined || !isInside(root, file.realPath) || (file.realPath === root && !file.stat.isDirectory());
    if (!this.followSymlinks && outside) {
      file.close();
      return { status: 403, code: 'ZCOPY_OUTSIDE_ROOT' };
    }
    if (this.dotfiles !== 'allow' && this.#hiddenReal(file.realPath, root)) {
      file.close();
      return { status: this.dotfiles === 'deny' ? 403 : 404, code: 'ZCOPY_HIDDEN' };
    }
    return { file, realRoot: root };
  }

  /**
   * Maps a request target (its path, still encoded) to a file, a directory
   * listing, a redirect or an error. An opened file must be passed to
   * {@link respond} (which closes it) or closed.
   *
   * @param url - the request target relative to this root (`/a/b?x`)
   * @param redirectUrl - the full request target, for redirects (Express's originalUrl)
   */
  lookup(req: AnyRequest, url: string, redirectUrl: string): Lookup | Promise<Lookup> {
    // The hot path, synchronous: the root's real path is fresh and the
    // open-file cache has the file (no thread hop, no promise).
    const cache = this.cache;
    const rr = this.#realRoot;
    if (cache === undefined || rr === undefined || this.#resolvedAt < performance.now() - ROOT_TTL_MS) return this.#lookup(req, url, redirectUrl);
    let m = this.#paths.get(url);
    if (m === undefined) {
      const p = resolveRequestPath(url);
      if (!p.ok) return { kind: 'error', status: p.status };
      m = { p, abs: join(this.root, ...p.segments) };
      // A pure function of the request target: memoized (bounded in
      // count and in key length, so a flood of long distinct targets holds
      // little).
      if (url.length <= PATH_MEMO_KEY) {
        if (this.#paths.size >= PATH_MEMO) this.#paths.clear();
        this.#paths.set(url, m);
      }
    }
    const { p, abs } = m;
    if (p.hidden && this.dotfiles !== 'allow') return { kind: 'error', status: this.dotfiles === 'deny' ? 403 : 404 };
    if (rr !== this.root && this.#rootMoved()) return this.#lookup(req, url, redirectUrl);
    if (!isInside(this.root, abs)) return { kind: 'error', status: 403 };
    const c = cache.lookup(rr + '\0' + abs);
    if (c !== undefined && 'file' in c && this.encodings.length === 0 && c.file.stat.isFile()) {
      if (!p.trailingSlash) return { kind: 'file', file: c.file, typeName: abs, vary: false };
    }
    return this.#lookup(req, url, redirectUrl, { p, realRoot: rr, abs, c });
  }

  async #lookup(req: AnyRequest, url: string, redirectUrl: string, pre?: { p: ResolvedPath; realRoot: string; abs: string; c: CacheLookup }): Promise<Lookup> {
    if (pre !== undefined) return this.#lookupOpened(req, url, redirectUrl, pre.p, pre.abs, await this.#open(pre.abs, pre.realRoot, false, pre));
    const p = resolveRequestPath(url);
    if (!p.ok) return { kind: 'error', status: p.status };
    if (p.hidden && this.dotfiles !== 'allow') return { kind: 'error', status: this.dotfiles === 'deny' ? 403 : 404 };
    let realRoot = await this.#realRootNow();
    // A root reached through a symlink can be switched without any file
    // moving (a deploy's `current -> releases/v2`): a cache hit would not
    // see it, so such a root is stat'ed per request. A root without
    // symlinks cannot: replacing it moves or deletes the cached files,
    // which every hit sees (nlink, the fd's real path).
    if (this.cache !== undefined && realRoot !== undefined && realRoot !== this.root && this.#rootMoved()) {
      // The root was switched or replaced: what the cache judged against
      // the old one is dropped.
      realRoot = await this.#realRootNow(performance.now());
      this.cache.clear();
    }
    if (realRoot === undefined) return { kind: 'error', status: 404 };
    const abs = join(this.root, ...p.segments);
    // Defence in depth: segments hold no '/', '..' or NUL, so this always holds.
    if (!isInside(this.root, abs)) return { kind: 'error', status: 403 };
    return this.#lookupOpened(req, url, redirectUrl, p, abs, await this.#open(abs, realRoot));
  }

  async #lookupOpened(req: AnyRequest, url: string, redirectUrl: string, p: ResolvedPath, abs: string, o: { file: OpenedFile; realRoot: string } | OpenFailure): Promise<Lookup> {
    if (!('file' in o)) return { kind: 'error', status: o.status, error: o.error };
    const opened = o.file;
    const realRoot = o.realRoot;

    if (opened.stat.isDirectory()) {
      // Mounted middleware (`app.use('/assets', h)`): `GET /assets` arrives
      // as url '/' with originalUrl '/assets'. Served as is, the index
      // page's relative links would resolve against '/', so it is
      // redirected to '/assets/' like any directory without its slash (as
      // serve-static does).
      if (!p.trailingSlash || (redirectUrl !== url && !(targetPath(redirectUrl) ?? '/').endsWith('/'))) {
        opened.close();
        if (!this.redirect) return { kind: 'error', status: 404 };
        return { kind: 'redirect', location: redirectLocation(redirectUrl) };
      }
      for (const name of this.index) {
        const f = await this.#open(join(abs, name), realRoot);
        if (!('file' in f)) continue;
        if (f.file.stat.isFile()) {
          opened.close();
          return this.#withEncoding(req, f.file, join(abs, name), f.realRoot);
        }
        f.file.close();
      }
      if (this.listing) {
        // The listing reads this very fd (not the path again): it owns it now.
        return { kind: 'listing', dir: opened, realRoot, urlPath: '/' + p.segments.map((s) => s + '/').join(''), atRoot: p.segments.length === 0 };
      }
      opened.close();
      // As `send` does: 404 when index files are configured but none exists,
      // 403 when the client asked for a directory and there is nothing to show.
      const status = this.index.length > 0 ? 404 : 403;
      return this.directoryHint !== undefined && status === 404 ? { kind: 'error', status, note: this.directoryHint } : { kind: 'error', status };
    }
    if (!opened.stat.isFile() || p.trailingSlash) {
      opened.close();
      return { kind: 'error', status: 404 };
    }
    return this.#withEncoding(req, opened, abs, realRoot);
  }

  async #withEncoding(req: AnyRequest, file: OpenedFile, abs: string, realRoot: string): Promise<Lookup> {
    if (this.encodings.length === 0) return { kind: 'file', file, typeName: abs, vary: false };
    for (const enc of acceptedEncodings(req.headers['accept-encoding'], this.encodings)) {
      const o = await this.#open(abs + ENCODING_EXT[enc]!, realRoot, true);
      if (!('file' in o)) continue;
      const v = o.file;
      if (!v.stat.isFile()) {
        v.close();
        continue;
      }
      file.close();
      return { kind: 'file', file: v, typeName: abs, encoding: enc, vary: true };
    }
    return { kind: 'file', file, typeName: abs, vary: true };
  }

  /** Answers a lookup (closing its file once the response is done). */
  async respond(req: AnyRequest, res: AnyResponse, l: Lookup): Promise<ServeResult> {
    switch (l.kind) {
      case 'error':
        return sendError(req, res, l.status, undefined, l.note);
      case 'redirect':
        return sendRedirect(req, res, l.location);
      case 'listing':
        try {
          const html = await renderListing(l.dir, l.urlPath, {
            showHidden: this.dotfiles === 'allow',
            atRoot: l.atRoot,
            limit: this.listingLimit,
            servable: (realPath) => this.#servable(realPath, l.realRoot),
          });
          return sendHtml(req, res, html);
        } catch (err) {
          return { ...sendError(req, res, 500), error: err as Error };
        } finally {
          l.dir.close();
        }
      case 'file':
        try {
          return await respondWithFile(req, res, l.file, this.options, { typeName: l.typeName, encoding: l.encoding, vary: l.vary });
        } finally {
          l.file.close();
        }
    }
  }

  /** Closes what a lookup opened, when it will not be answered. */
  static discard(l: Lookup): void {
    if (l.kind === 'file') l.file.close();
    else if (l.kind === 'listing') l.dir.close();
  }
}

function idOf(st: Stats): string {
  return `${st.dev}:${st.ino}`;
}

/** The Location for a directory redirect: the request path plus `/`, query kept. */
function redirectLocation(url: string): string {
  const path = targetPath(url) ?? '/';
  const q = url.indexOf('?');
  let query = q >= 0 ? url.slice(q) : '';
  const h = query.indexOf('#');
  if (h >= 0) query = query.slice(0, h);
  return safeLocation(path + '/') + (query ? safeLocation(query) : '');
}

/**
 * Serves the files under `root`. As a node:http handler it answers every
 * request (404 when nothing matches, 405 with `Allow` for methods other than
 * GET and HEAD); as Express/Connect middleware it calls `next()` instead.
 *
 * Request paths are decoded once and refused (400/403) if they could climb
 * out of `root` (`..`, encoded or not, backslashes, NUL, double encoding);
 * files whose real path leaves `root` through a symlink are refused unless
 * `followSymlinks`. Each file is opened once, its headers come from an
 * fstat of that fd, and its body goes out zero-copy (see {@link serveFile}).
 *
 * @example
 * ```ts
 * import http from 'node:http';
 * import express from 'express';
 * import { serveStatic } from 'zcopy/http';
 *
 * http.createServer(serveStatic('./public', { maxAge: '1h' })).listen(8080, '127.0.0.1');
 *
 * const app = express();
 * app.use('/assets', serveStatic('./dist/assets', { maxAge: '1y', immutable: true }));
 * ```
 */
export function serveStatic(root: string, options?: ServeStaticOptions): StaticHandler {
  const s = new StaticRoot(root, options);
  const handler = async (req: AnyRequest, res: AnyResponse, next?: (err?: unknown) => void): Promise<ServeResult | undefined> => {
    const method = req.method ?? 'GET';
    const middleware = typeof next === 'function';
    try {
      if (method !== 'GET' && method !== 'HEAD') {
        if (middleware) {
          next();
          return undefined;
        }
        return sendError(req, res, 405, { Allow: 'GET, HEAD' });
      }
      // A pipelined request opens nothing before its response owns the socket.
      const turn = responseTurn(req, res);
      if (turn !== true && !(await turn)) return notServed();
      const url = req.url ?? '/';
      const original = (req as { originalUrl?: string }).originalUrl ?? url;
      const found = s.lookup(req, url, original);
      const l = 'kind' in found ? found : await found;
      if (middleware && l.kind === 'error') {
        if (l.status >= 500) {
          next(l.error ?? httpError(l.status));
          return undefined;
        }
        if (s.fallthrough) {
          next();
          return undefined;
        }
      }
      return await s.respond(req, res, l);
    } catch (err) {
      // A bug or an unexpected failure: never an unhandled rejection.
      if (middleware && canRespond(res)) {
        next(err);
        return undefined;
      }
      return { ...sendError(req, res, 500), error: err as Error };
    }
  };
  Object.defineProperty(handler, 'openFileCache', { value: s.cache, enumerable: true });
  Object.defineProperty(handler, kStaticRoot, { value: s });
  return handler as StaticHandler;
}

function httpError(status: number): Error & { status: number; statusCode: number; expose: boolean } {
  return Object.assign(new Error(status === 503 ? 'Service Unavailable' : 'Internal Server Error'), { status, statusCode: status, expose: false });
}
