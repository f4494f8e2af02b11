/**
 * serveStatic: a folder over HTTP, for node:http, node:https, http2 (compat),
 * and Express/Connect (as middleware).
 *
 * @module
 */
import { realpathSync } from 'node:fs';
import { realpath } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { invalidArgType, invalidArgValue } from './validate.js';
import { acceptedEncodings } from './headers.js';
import { renderListing } from './listing.js';
import { isInside, isOpened, openChecked, type OpenedFile } from './open.js';
import { resolveRequestPath, targetPath } from './resolve-path.js';
import { canRespond, safeLocation, sendError, sendHtml, sendRedirect, type AnyRequest, type AnyResponse, type ServeResult } from './response.js';
import { resolveServeFileOptions, respondWithFile, type ResolvedServeFileOptions, type ServeFileOptions } from './serve-file.js';

/** Options of {@link serveStatic}. */
export interface ServeStaticOptions extends ServeFileOptions {
  /**
   * Paths with a segment starting with `.` (a dotfile or a hidden directory
   * anywhere in the path): `'ignore'` answers 404 as if absent (default),
   * `'deny'` 403, `'allow'` serves them.
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
}

/** The request handler {@link serveStatic} returns. */
export interface StaticHandler {
  /** node:http / node:https / http2 compat: answers every request (404 when nothing matches). */
  (req: AnyRequest, res: AnyResponse): Promise<ServeResult>;
  /** Express / Connect: calls `next()` when nothing matches (or for methods other than GET/HEAD). */
  (req: AnyRequest, res: AnyResponse, next: (err?: unknown) => void): Promise<ServeResult | undefined>;
}

/** @internal What a request path maps to. */
export type Lookup =
  | { kind: 'error'; status: number; error?: Error }
  | { kind: 'redirect'; location: string }
  | { kind: 'listing'; dir: string; urlPath: string; atRoot: boolean }
  | { kind: 'file'; file: OpenedFile; typeName: string; encoding?: string; vary: boolean };

const ENCODING_EXT: Record<string, string> = { br: '.br', gzip: '.gz' };

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
  #realRoot: string | undefined;

  constructor(root: string, options: ServeStaticOptions | undefined) {
    if (typeof root !== 'string') throw invalidArgType('root', 'of type string', root);
    if (root.length === 0 || root.includes('\0')) throw invalidArgValue('root', root, 'must be a non-empty path without null bytes');
    const o = options ?? {};
    if (typeof o !== 'object' || o === null) throw invalidArgType('options', 'of type object', o);
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
    try {
      this.#realRoot = realpathSync(this.root);
    } catch {
      // The root may appear later; resolved per request until it does.
    }
  }

  async #realRootNow(): Promise<string | undefined> {
    if (this.#realRoot === undefined) {
      try {
        this.#realRoot = await realpath(this.root);
      } catch {
        return undefined;
      }
    }
    return this.#realRoot;
  }

  /**
   * Maps a request target (its path, still encoded) to a file, a directory
   * listing, a redirect or an error. An opened file must be passed to
   * {@link respond} (which closes it) or closed.
   *
   * @param url - the request target relative to this root (`/a/b?x`)
   * @param redirectUrl - the full request target, for redirects (Express's originalUrl)
   */
  async lookup(req: AnyRequest, url: string, redirectUrl: string): Promise<Lookup> {
    const p = resolveRequestPath(url);
    if (!p.ok) return { kind: 'error', status: p.status };
    if (p.hidden && this.dotfiles !== 'allow') return { kind: 'error', status: this.dotfiles === 'deny' ? 403 : 404 };
    const realRoot = await this.#realRootNow();
    if (realRoot === undefined) return { kind: 'error', status: 404 };
    const abs = join(this.root, ...p.segments);
    // Defence in depth: segments hold no '/', '..' or NUL, so this always holds.
    if (!isInside(this.root, abs)) return { kind: 'error', status: 403 };
    const check = this.followSymlinks ? undefined : realRoot;

    const opened = await openChecked(abs, check);
    if (!isOpened(opened)) return { kind: 'error', status: opened.status, error: opened.error };

    if (opened.stat.isDirectory()) {
      opened.close();
      if (!p.trailingSlash) {
        if (!this.redirect) return { kind: 'error', status: 404 };
        return { kind: 'redirect', location: redirectLocation(redirectUrl) };
      }
      for (const name of this.index) {
        const f = await openChecked(join(abs, name), check);
        if (!isOpened(f)) continue;
        if (f.stat.isFile()) return this.#withEncoding(req, f, join(abs, name), check);
        f.close();
      }
      if (this.listing) {
        return { kind: 'listing', dir: opened.realPath ?? abs, urlPath: '/' + p.segments.map((s) => s + '/').join(''), atRoot: p.segments.length === 0 };
      }
      // As `send` does: 404 when index files are configured but none exists,
      // 403 when the client asked for a directory and there is nothing to show.
      return { kind: 'error', status: this.index.length > 0 ? 404 : 403 };
    }
    if (!opened.stat.isFile() || p.trailingSlash) {
      opened.close();
      return { kind: 'error', status: 404 };
    }
    return this.#withEncoding(req, opened, abs, check);
  }

  async #withEncoding(req: AnyRequest, file: OpenedFile, abs: string, check: string | undefined): Promise<Lookup> {
    if (this.encodings.length === 0) return { kind: 'file', file, typeName: abs, vary: false };
    for (const enc of acceptedEncodings(req.headers['accept-encoding'], this.encodings)) {
      const v = await openChecked(abs + ENCODING_EXT[enc]!, check);
      if (!isOpened(v)) continue;
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
        return sendError(req, res, l.status);
      case 'redirect':
        return sendRedirect(req, res, l.location);
      case 'listing':
        try {
          const html = await renderListing(l.dir, l.urlPath, this.dotfiles === 'allow', l.atRoot);
          return sendHtml(req, res, html);
        } catch (err) {
          return { ...sendError(req, res, 500), error: err as Error };
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
  }
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
      const url = req.url ?? '/';
      const original = (req as { originalUrl?: string }).originalUrl ?? url;
      const l = await s.lookup(req, url, original);
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
  return handler as StaticHandler;
}

function httpError(status: number): Error & { status: number; statusCode: number; expose: boolean } {
  return Object.assign(new Error(status === 503 ? 'Service Unavailable' : 'Internal Server Error'), { status, statusCode: status, expose: false });
}
